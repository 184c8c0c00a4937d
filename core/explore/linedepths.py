"""Deblended line and band depths: how much each known line or molecular band absorbs in a star.

At low resolution neighbouring lines blend and molecular bands cover dozens of atomic lines,
so the flux at one pixel says little about which absorber changed. Here every atomic line of
the generator's line list (:mod:`chemlatent.spectra.linelist`; a Gaussian of the survey's
line-spread width) and every molecular band (its rotational-line template) is one column of a
design matrix ``T`` (pixels x features); a star's absorption ``1 - flux`` is fitted as
``T @ depth`` by ridge-regularised least squares, one shared solve for all stars (masked
pixels are filled with the block's mean flux first). A feature's equivalent width is its
depth times the area of its profile (Angstrom): the quantity astronomers compare between
line strengths, and the one a comparison ranks features by.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from chemlatent.spectra.grid import WavelengthGrid
from chemlatent.spectra.linelist import BANDS, MOLECULES, band_templates, load_linelist, lsf_sigma_pixels
from chemlatent.spectra.physics import ELEMENT_GROUP

DEFAULT_RESOLUTION = 2000.0
RIDGE = 0.1  # in units of a unit-depth profile's squared norm; tested stable from 1e-3 to 1
BAND_NAMES = {("CH", 4315.0): "CH G band", ("C2", 5166.0): "C2 Swan band",
              ("C2", 4738.0): "C2 Swan band", ("C2", 5636.0): "C2 Swan band"}


def band_name(molecule: str, head: float) -> str:
    """The name a molecular band is listed under, e.g. ``"CH G band 4315"``."""
    return f"{BAND_NAMES.get((molecule, head), f'{molecule} band')} {head:.0f}"


@dataclass(frozen=True)
class FeatureBasis:
    """The features on one grid: names, element groups, centres (line or band head, vacuum A),
    unit-depth ``profiles`` (pixels x features), the solver ``solve`` (features x pixels) and
    each profile's area ``ew_per_depth`` (A)."""

    names: np.ndarray
    groups: np.ndarray
    centers: np.ndarray
    profiles: np.ndarray
    solve: np.ndarray
    ew_per_depth: np.ndarray

    def __len__(self) -> int:
        return self.names.size

    def depths(self, flux: np.ndarray, ivar: np.ndarray) -> np.ndarray:
        """Depths (stars x features) of a block of continuum-normalised spectra."""
        flux = np.asarray(flux, np.float64)
        good = (np.asarray(ivar) > 0) & np.isfinite(flux)
        with np.errstate(invalid="ignore"):
            n = good.sum(0)
            fill = np.where(n > 0, np.where(good, flux, 0.0).sum(0) / np.maximum(n, 1), 1.0)
        filled = np.where(good, flux, fill[None, :])
        return (1.0 - filled) @ self.solve.T


@lru_cache(maxsize=4)
def feature_basis(grid: WavelengthGrid, resolution: float = DEFAULT_RESOLUTION) -> FeatureBasis:
    """Every line and band of the generator's line list that falls on ``grid``."""
    pix = np.arange(grid.npix, dtype=np.float64)
    sig = lsf_sigma_pixels(grid, resolution)
    ll = load_linelist()
    names, groups, centers, cols = [], [], [], []
    for i in range(len(ll)):
        p = float(grid.pixel_of(ll.wave[i]))
        if 3 <= p <= grid.npix - 4:
            names.append(f"{ll.species[i]} {ll.wave[i]:.1f}")
            groups.append(ELEMENT_GROUP.get(ll.element[i], ""))
            centers.append(ll.wave[i])
            cols.append(np.exp(-0.5 * ((pix - p) / sig) ** 2))
    templates = band_templates(grid, resolution)
    for k, band in enumerate(BANDS):
        if templates[k].max() > 0:
            names.append(band_name(band.molecule, band.head))
            groups.append(ELEMENT_GROUP.get(MOLECULES[band.molecule][0], ""))
            centers.append(band.head)
            cols.append(templates[k])
    t = np.asarray(cols, np.float64).T
    gram = t.T @ t
    scale = float(np.mean(np.diag(gram)))
    solve = np.linalg.solve(gram + RIDGE * scale * np.eye(gram.shape[0]), t.T)
    ew = (t * np.gradient(grid.wave)[:, None]).sum(0)
    return FeatureBasis(np.asarray(names, object), np.asarray(groups, object), np.asarray(centers),
                        t, solve, ew)
