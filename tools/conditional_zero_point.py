"""A label-free zero point for z_alpha: tools/conditional_zero_point.py FIT TEST LATENTS.

Fits each axis on survey FIT (its latents file data/FIT/latents/LATENTS.parquet) as a cubic in
the survey's Teff/logg plus a cubic in z_fe and z_fe x Teff/logg terms, removes the Teff/logg
part (with its cross terms) from the same axis on survey TEST and prints r with the truth
before and after. No abundance is used in the fit: it assumes an axis does not depend on a
star's Teff/logg at fixed [Fe/H] (docs/model.md, "What the decoders' best fit still misses").
"""
import sys
from pathlib import Path

import numpy as np
import pandas as pd

DATA = Path(__file__).resolve().parents[1] / "data"


def load(survey: str, latents: str) -> pd.DataFrame:
    cat = pd.read_parquet(DATA / survey / "catalog.parquet")
    return cat.merge(pd.read_parquet(DATA / survey / "latents" / f"{latents}.parquet"), on="star_id")


def design(d: pd.DataFrame) -> tuple[np.ndarray, slice]:
    """Columns 1, z_fe, z_fe^2, z_fe^3, then the Teff/logg part (the slice)."""
    t, g, f = (d.teff.to_numpy() - 5000) / 1000, (d.logg.to_numpy() - 3) / 1.5, d.z_fe.to_numpy()
    cols = [np.ones_like(t), f, f * f, f ** 3, t, g, t * t, g * g, t * g, t ** 3, g ** 3, t * t * g,
            t * g * g, f * t, f * g]
    return np.stack(cols, 1), slice(4, len(cols))


def main(fit: str, test: str, latents: str) -> None:
    a, b = load(fit, latents), load(test, latents)
    xa, part = design(a)
    xb, _ = design(b)
    for axis, truth in (("z_alpha", "alpha_fe"), ("z_c", "c_fe")):
        y = a[axis].to_numpy()
        ok = np.isfinite(y)
        coef, *_ = np.linalg.lstsq(xa[ok], y[ok], rcond=None)
        corrected = b[axis].to_numpy() - xb[:, part] @ coef[part]
        print(f"{axis}: r with {truth} on {test} {np.corrcoef(b[axis], b[truth])[0, 1]:.3f}, "
              f"without its Teff/logg part at fixed z_fe {np.corrcoef(corrected, b[truth])[0, 1]:.3f}")


if __name__ == "__main__":
    main(*sys.argv[1:4])
