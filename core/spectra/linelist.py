"""The generator's line list (real atomic lines) and molecular band templates."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import numpy as np

from chemlatent.spectra.grid import WavelengthGrid
from chemlatent.spectra.physics import air_to_vacuum


@dataclass(frozen=True)
class LineList:
    """Atomic lines, vacuum wavelengths."""

    species: tuple[str, ...]
    element: tuple[str, ...]
    ion: np.ndarray  # 1 or 2
    wave: np.ndarray  # vacuum, Angstrom
    chi_exc: np.ndarray
    log_tau_sun: np.ndarray
    log_a_sun: np.ndarray
    wings: np.ndarray  # bool

    def __len__(self) -> int:
        return self.wave.size


@lru_cache(maxsize=1)
def load_linelist() -> LineList:
    rows = []
    with resources.files("chemlatent.assets").joinpath("linelist.csv").open("r") as fh:
        rows = list(csv.DictReader(fh))
    species = tuple(r["species"] for r in rows)
    element = tuple(s.split()[0] for s in species)
    ion = np.array([2 if s.split()[1] == "II" else 1 for s in species])
    f = lambda k: np.array([float(r[k]) for r in rows])  # noqa: E731
    return LineList(species, element, ion, air_to_vacuum(f("wave_air")), f("chi_exc"),
                    f("log_tau_sun"), f("log_a_sun"), f("wings") > 0)


@dataclass(frozen=True)
class Band:
    """A molecular band: head (vacuum A), extent (A, negative = degraded to the blue)."""

    molecule: str
    head: float
    extent: float
    log_tau_sun: float


# molecule: (element A, element B, dissociation energy D0 in eV)
MOLECULES = {
    "CH": ("C", "H", 3.47), "C2": ("C", "C", 6.21), "CN": ("C", "N", 7.72),
    "MgH": ("Mg", "H", 1.34), "TiO": ("Ti", "O", 6.87),
}

BANDS = (
    Band("CH", 4315.0, -45.0, -0.55), Band("CH", 4367.0, -25.0, -1.4),
    Band("C2", 5166.0, -55.0, -2.6), Band("C2", 4738.0, -45.0, -2.8),
    Band("C2", 5636.0, -50.0, -3.0),
    Band("CN", 4216.0, -70.0, -2.0), Band("CN", 7875.0, 110.0, -3.2),
    Band("CN", 8060.0, 120.0, -3.3), Band("CN", 9150.0, 150.0, -3.4),
    Band("MgH", 5212.0, -160.0, -1.0), Band("MgH", 4845.0, -80.0, -1.6),
    Band("TiO", 4955.0, 90.0, -4.6), Band("TiO", 5168.0, 80.0, -4.8),
    Band("TiO", 5448.0, 100.0, -4.5), Band("TiO", 5847.0, 120.0, -4.4),
    Band("TiO", 6159.0, 120.0, -4.2), Band("TiO", 6651.0, 130.0, -4.3),
    Band("TiO", 7054.0, 150.0, -4.0), Band("TiO", 7589.0, 150.0, -4.2),
    Band("TiO", 8432.0, 120.0, -4.5),
)


def lsf_sigma_pixels(grid: WavelengthGrid, resolution: float = 2000.0) -> float:
    """Gaussian line-spread sigma in pixels for resolving power R on a log-linear grid."""
    fwhm_kms = 299792.458 / resolution
    return fwhm_kms / 2.3548 / grid.velocity_per_pixel


@lru_cache(maxsize=4)
def band_templates(grid: WavelengthGrid, resolution: float = 2000.0) -> np.ndarray:
    """Band absorption templates (n_bands, npix), peak 1, already convolved with the LSF.

    Each band is a forest of rotational lines whose strength decays away from the head
    (fixed pseudo-random line positions, so templates are identical on every machine).
    """
    wave = grid.wave
    sig = lsf_sigma_pixels(grid, resolution)
    pix = np.arange(grid.npix, dtype=np.float64)
    rng = np.random.default_rng(20250101)
    out = np.zeros((len(BANDS), grid.npix))
    for b, band in enumerate(BANDS):
        n_sub = int(abs(band.extent) / 0.35)
        dist = np.sort(rng.exponential(abs(band.extent) / 2.5, n_sub))
        dist = dist[dist < abs(band.extent)]
        pos = band.head + np.sign(band.extent) * dist
        amp = np.exp(-dist / (abs(band.extent) / 2.0)) * rng.uniform(0.4, 1.0, dist.size)
        p = grid.pixel_of(pos)
        ok = (p > 5) & (p < grid.npix - 5)
        prof = np.zeros(grid.npix)
        for pc, a in zip(p[ok], amp[ok]):
            lo, hi = int(pc) - 6, int(pc) + 7
            prof[lo:hi] += a * np.exp(-0.5 * ((pix[lo:hi] - pc) / sig) ** 2)
        if prof.max() > 0:
            out[b] = prof / prof.max()
    del wave
    return out
