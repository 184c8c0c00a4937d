"""Stand-in surveys: the generator with other physics, resolution, grid and populations.

Defaults must work on surveys whose physics differs from the generator's. A ``StandIn``
changes what a model can otherwise learn by heart: every line's strength shifted by its
own random offset (a different line list's oscillator strengths), every molecular band's
too, a steeper or shallower temperature response of the lines, another resolving power,
another wavelength range, and another mix of Galactic components. ``chemlatent generate
--line-scatter 0.3 --resolution 1800 ...`` writes one (docs/model.md, "Stand-in surveys").
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from chemlatent.errors import ChemlatentError
from chemlatent.spectra.grid import DEFAULT_GRID, WavelengthGrid
from chemlatent.spectra.physics import TEFF_SUN
from chemlatent.synth.populations import SNR_SHAPES

DEFAULT_MIX = (0.42, 0.25, 0.33)  # thin disc, thick disc, halo (a metal-poor-targeted survey)
DEFAULT_SNR_RANGE = (10.0, 90.0)


@dataclass(frozen=True)
class StandIn:
    """How a stand-in survey departs from the default generator (all zero: no change)."""

    line_scatter_dex: float = 0.0  # sd of each atomic line's log strength offset
    band_scatter_dex: float = 0.0  # sd of each molecular band's log strength offset
    resolution: float = 2000.0
    mix: tuple[float, float, float] = DEFAULT_MIX
    physics_seed: int = 1  # draws the offsets (not the stars: those follow the survey seed)
    # atomic lines' log strength falls by this much per 1000 K of Teff above the Sun's (rises
    # below it): a steeper (or shallower) temperature response than the generator's own
    teff_tilt_dex: float = 0.0
    # this many weak Fe I lines (solar line-centre optical depth 0.03-3, random wavelengths
    # denser to the blue, excitation 0-5 eV) added to the line list: the forest of weak lines
    # real spectra have and the generator's ~400 strong lines lack (all but 5 % of them are
    # saturated in the Sun), which respond to Teff and [Fe/H] on the linear curve of growth
    weak_lines: int = 0
    # the stars' S/N: its range and shape ("beta" peaked mid-range, "log" uniform in log S/N,
    # most stars faint as in a magnitude-limited survey; chemlatent.synth.populations)
    snr_range: tuple[float, float] = DEFAULT_SNR_RANGE
    snr_shape: str = "beta"

    def __post_init__(self) -> None:
        if not 0 <= self.line_scatter_dex <= 2 or not 0 <= self.band_scatter_dex <= 2:
            raise ChemlatentError("line and band scatter must be between 0 and 2 dex")
        if not -2 <= self.teff_tilt_dex <= 2:
            raise ChemlatentError(
                f"Teff tilt must be between -2 and 2 dex per 1000 K, not {self.teff_tilt_dex:g}")
        if not 0 <= self.weak_lines <= 20_000:
            raise ChemlatentError(f"weak lines must number 0 to 20000, not {self.weak_lines}")
        if not 200 <= self.resolution <= 100_000:
            raise ChemlatentError(f"resolution must be between 200 and 100000, not {self.resolution:g}")
        mix = tuple(float(m) for m in self.mix)
        if len(mix) != 3 or min(mix) < 0 or sum(mix) <= 0:
            raise ChemlatentError("mix needs three non-negative fractions: thin disc, thick disc, halo")
        object.__setattr__(self, "mix", tuple(m / sum(mix) for m in mix))
        lo, hi = (float(v) for v in self.snr_range)
        if not 1 <= lo < hi <= 10_000:
            raise ChemlatentError(f"S/N range {lo:g}-{hi:g} must satisfy 1 <= low < high <= 10000")
        object.__setattr__(self, "snr_range", (lo, hi))
        if self.snr_shape not in SNR_SHAPES:
            raise ChemlatentError(f"S/N shape must be one of {', '.join(SNR_SHAPES)}, not {self.snr_shape!r}")

    @property
    def is_default(self) -> bool:
        return self == StandIn()

    @property
    def snr(self) -> tuple[float, float, str]:
        """(low, high, shape) of the stars' S/N (``sample_labels``'s ``snr``)."""
        return (*self.snr_range, self.snr_shape)

    def line_offsets(self, n_lines: int) -> np.ndarray:
        """Per-line log strength offsets (dex)."""
        if self.line_scatter_dex == 0:
            return np.zeros(n_lines)
        return np.random.default_rng([self.physics_seed, 1]).normal(0.0, self.line_scatter_dex, n_lines)

    def band_offsets(self, n_bands: int) -> np.ndarray:
        """Per-band log optical-depth offsets (dex)."""
        if self.band_scatter_dex == 0:
            return np.zeros(n_bands)
        return np.random.default_rng([self.physics_seed, 2]).normal(0.0, self.band_scatter_dex, n_bands)

    def apply_to_linelist(self, ll, grid: WavelengthGrid = DEFAULT_GRID):
        """The line list with this stand-in's strength offsets, then its weak lines (on ``grid``)."""
        if self.line_scatter_dex:
            ll = dataclasses.replace(ll, log_tau_sun=ll.log_tau_sun + self.line_offsets(len(ll)))
        if self.weak_lines:
            ll = _with_weak_lines(ll, self.weak_lines, grid, self.physics_seed)
        return ll

    def tilt(self, teff: np.ndarray) -> np.ndarray:
        """Per-star log strength offset (dex) of every atomic line from ``teff_tilt_dex``."""
        return -self.teff_tilt_dex * (np.asarray(teff, dtype=np.float64) - TEFF_SUN) / 1000.0

    def to_dict(self) -> dict:
        return {"line_scatter_dex": self.line_scatter_dex, "band_scatter_dex": self.band_scatter_dex,
                "resolution": self.resolution, "mix": list(self.mix), "physics_seed": self.physics_seed,
                "teff_tilt_dex": self.teff_tilt_dex, "weak_lines": self.weak_lines,
                "snr_range": list(self.snr_range), "snr_shape": self.snr_shape}


def _with_weak_lines(ll, n: int, grid: WavelengthGrid, seed: int):
    """``ll`` and ``n`` weak Fe I lines after it (drawn from ``seed``, uniform in 1/wavelength
    over ``grid``: denser to the blue, as real line lists are)."""
    rng = np.random.default_rng([seed, 3])
    lo, hi = float(grid.wave[0]), float(grid.wave[-1])
    wave = 1.0 / (1.0 / lo - rng.uniform(0.0, 1.0, n) * (1.0 / lo - 1.0 / hi))
    return dataclasses.replace(
        ll, species=ll.species + ("Fe I",) * n, element=ll.element + ("Fe",) * n,
        ion=np.concatenate([ll.ion, np.ones(n, ll.ion.dtype)]), wave=np.concatenate([ll.wave, wave]),
        chi_exc=np.concatenate([ll.chi_exc, rng.uniform(0.0, 5.0, n)]),
        log_tau_sun=np.concatenate([ll.log_tau_sun, rng.uniform(-1.5, 0.5, n)]),
        log_a_sun=np.concatenate([ll.log_a_sun, np.full(n, -2.0)]),
        wings=np.concatenate([ll.wings, np.zeros(n, bool)]))


def grid_for_range(lo: float, hi: float, dloglam: float = DEFAULT_GRID.dloglam) -> WavelengthGrid:
    """A log-linear grid from ``lo`` to ``hi`` Angstrom (vacuum)."""
    if not 3000 <= lo < hi <= 12000:
        raise ChemlatentError(f"wavelength range {lo:g}-{hi:g} A must lie within 3000-12000 A")
    loglam0 = round(float(np.log10(lo)), 6)
    npix = int(np.floor((np.log10(hi) - loglam0) / dloglam)) + 1
    return WavelengthGrid(loglam0, dloglam, npix)
