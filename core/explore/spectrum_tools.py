"""Spectrum tools (GUI-free): the line list as markers filtered by element, shifted by a
radial velocity, in vacuum or air wavelengths, and smoothing of the flux.

The survey grid and the line list are vacuum wavelengths; "air" converts what is shown
(:func:`chemlatent.spectra.physics.vacuum_to_air`). A radial velocity ``v`` moves each
marker to ``lambda * (1 + v / c)`` (where the line would appear in a star moving away at v).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import param

from chemlatent.spectra.linelist import BANDS, MOLECULES, load_linelist
from chemlatent.spectra.physics import C_KMS, ELEMENT_GROUP, vacuum_to_air

RV_LIMIT_KMS = 1000.0
MAX_SMOOTH_PIXELS = 25


def element_choices() -> list[str]:
    """Elements of the line list and molecules of the band list, in that order."""
    ll = load_linelist()
    return list(dict.fromkeys(sorted(set(ll.element), key=lambda e: (e != "H", e)))) + sorted(MOLECULES)


def line_markers(elements=None, wave_range: tuple[float, float] | None = None, *, rv_kms: float = 0.0,
                 air: bool = False) -> pd.DataFrame:
    """One row per atomic line or band head of the chosen ``elements`` (elements or
    molecules; None: all): label, element, group, ``rest`` (vacuum) and ``wave`` (as shown:
    shifted by ``rv_kms``, in air when ``air``), within ``wave_range`` of shown wavelengths."""
    ll = load_linelist()
    rows = [(f"{ll.species[i]} {ll.wave[i]:.1f}", ll.element[i], ELEMENT_GROUP.get(ll.element[i], ""),
             float(ll.wave[i])) for i in range(len(ll))]
    rows += [(f"{b.molecule} {b.head:.0f}", b.molecule, ELEMENT_GROUP.get(MOLECULES[b.molecule][0], ""),
              float(b.head)) for b in BANDS]
    df = pd.DataFrame(rows, columns=["label", "element", "group", "rest"])
    if elements is not None:
        df = df[df["element"].isin(list(elements))]
    shown = df["rest"].to_numpy() * (1.0 + float(rv_kms) / C_KMS)
    df = df.assign(wave=vacuum_to_air(shown) if air else shown)
    if wave_range is not None:
        df = df[(df["wave"] >= wave_range[0]) & (df["wave"] <= wave_range[1])]
    return df.sort_values("wave").reset_index(drop=True)


def smooth(flux: np.ndarray, pixels: int) -> np.ndarray:
    """Boxcar smoothing over ``pixels`` pixels that skips bad (NaN) pixels; 0 or 1: as is."""
    flux = np.asarray(flux, np.float64)
    k = int(pixels)
    if k <= 1:
        return flux.copy()
    good = np.isfinite(flux)
    kernel = np.ones(k)
    num = np.convolve(np.where(good, flux, 0.0), kernel, mode="same")
    den = np.convolve(good.astype(np.float64), kernel, mode="same")
    with np.errstate(invalid="ignore", divide="ignore"):
        out = num / den
    out[~good] = np.nan
    return out


@dataclass
class ShownSpectrum:
    """What the spectrum tools draw: wavelengths as shown, smoothed flux and markers."""

    wave: np.ndarray
    flux: np.ndarray
    markers: pd.DataFrame
    air: bool


class SpectrumToolsState(param.Parameterized):
    """Element filter, radial velocity, smoothing and the wavelength medium."""

    elements = param.ListSelector(default=["C", "CH", "C2"], objects=element_choices(),
                                  doc="line list elements shown")
    rv_kms = param.Number(default=0.0, bounds=(-RV_LIMIT_KMS, RV_LIMIT_KMS), step=5.0,
                          doc="radial velocity of the markers (km/s)")
    smoothing = param.Integer(default=0, bounds=(0, MAX_SMOOTH_PIXELS), doc="boxcar width (pixels)")
    air = param.Boolean(default=False, doc="show air wavelengths (the grid is vacuum)")

    def shown(self, wave: np.ndarray, flux: np.ndarray) -> ShownSpectrum:
        """The spectrum and the markers as the tools show them."""
        w = vacuum_to_air(wave) if self.air else np.asarray(wave, np.float64)
        markers = line_markers(self.elements, (float(w[0]), float(w[-1])), rv_kms=self.rv_kms, air=self.air)
        return ShownSpectrum(w, smooth(flux, self.smoothing), markers, self.air)
