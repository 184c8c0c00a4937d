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

DEFAULT_MIX = (0.42, 0.25, 0.33)  # thin disc, thick disc, halo (a metal-poor-targeted survey)


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

    def __post_init__(self) -> None:
        if not 0 <= self.line_scatter_dex <= 2 or not 0 <= self.band_scatter_dex <= 2:
            raise ChemlatentError("line and band scatter must be between 0 and 2 dex")
        if not -2 <= self.teff_tilt_dex <= 2:
            raise ChemlatentError(
                f"Teff tilt must be between -2 and 2 dex per 1000 K, not {self.teff_tilt_dex:g}")
        if not 200 <= self.resolution <= 100_000:
            raise ChemlatentError(f"resolution must be between 200 and 100000, not {self.resolution:g}")
        mix = tuple(float(m) for m in self.mix)
        if len(mix) != 3 or min(mix) < 0 or sum(mix) <= 0:
            raise ChemlatentError("mix needs three non-negative fractions: thin disc, thick disc, halo")
        object.__setattr__(self, "mix", tuple(m / sum(mix) for m in mix))

    @property
    def is_default(self) -> bool:
        return self == StandIn()

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

    def apply_to_linelist(self, ll):
        """The line list with this stand-in's strength offsets."""
        if self.line_scatter_dex == 0:
            return ll
        return dataclasses.replace(ll, log_tau_sun=ll.log_tau_sun + self.line_offsets(len(ll)))

    def tilt(self, teff: np.ndarray) -> np.ndarray:
        """Per-star log strength offset (dex) of every atomic line from ``teff_tilt_dex``."""
        return -self.teff_tilt_dex * (np.asarray(teff, dtype=np.float64) - TEFF_SUN) / 1000.0

    def to_dict(self) -> dict:
        return {"line_scatter_dex": self.line_scatter_dex, "band_scatter_dex": self.band_scatter_dex,
                "resolution": self.resolution, "mix": list(self.mix), "physics_seed": self.physics_seed,
                "teff_tilt_dex": self.teff_tilt_dex}


def grid_for_range(lo: float, hi: float, dloglam: float = DEFAULT_GRID.dloglam) -> WavelengthGrid:
    """A log-linear grid from ``lo`` to ``hi`` Angstrom (vacuum)."""
    if not 3000 <= lo < hi <= 12000:
        raise ChemlatentError(f"wavelength range {lo:g}-{hi:g} A must lie within 3000-12000 A")
    loglam0 = round(float(np.log10(lo)), 6)
    npix = int(np.floor((np.log10(hi) - loglam0) / dloglam)) + 1
    return WavelengthGrid(loglam0, dloglam, npix)
