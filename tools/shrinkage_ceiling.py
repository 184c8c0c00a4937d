"""What a posterior mean could add to a model's axes: tools/shrinkage_ceiling.py SURVEY LATENTS.

A point estimate fitted star by star (the refinement, and the encoder refitted to it) is
unbiased but as noisy as each star's spectrum; the posterior mean under the survey's own
population would shrink the noisy stars toward the stars like them and could raise r. This
bounds that gain from above for the latents data/SURVEY/latents/LATENTS.parquet: each star's
error variance is taken from the truth (the mean squared residual of the axis about its linear
map from the abundance, in bins of S/N, [Fe/H] and Teff), the population's mean and spread of
the axis at the star's z_fe from the truth's linear image, and every axis is shrunk as a
Gaussian posterior mean would be. A label-free shrinkage can only do worse than this oracle
(docs/model.md, "A posterior mean cannot close the gap").
"""
import sys
from pathlib import Path

import numpy as np
import pandas as pd

DATA = Path(__file__).resolve().parents[1] / "data"
AXES = (("z_fe", "fe_h"), ("z_c", "c_fe"), ("z_alpha", "alpha_fe"))
SNR_BINS = (0, 15, 25, 40, 70, np.inf)


def r(a, b) -> float:
    return float(np.corrcoef(a, b)[0, 1])


def oracle_shrunk(d: pd.DataFrame, axis: str, truth: str) -> np.ndarray:
    """The axis shrunk toward the population at each star's z_fe with oracle variances."""
    slope, icpt = np.polyfit(d[truth], d[axis], 1)
    image = slope * d[truth] + icpt  # the truth on the axis's scale
    cells = [pd.qcut(d.snr, 6, labels=False), pd.cut(d.fe_h, [-9, -2, -1.5, -1, -0.5, 0, 9], labels=False),
             pd.qcut(d.teff, 4, labels=False)]
    noise = ((d[axis] - image) ** 2).groupby(cells).transform("mean")
    at_fe = pd.cut(d.z_fe, 40)
    mean = image.groupby(at_fe, observed=True).transform("mean")
    spread = image.groupby(at_fe, observed=True).transform("var").fillna(0.0)
    return (mean + spread / (spread + noise) * (d[axis] - mean)).to_numpy()


def main(survey: str, latents: str) -> None:
    d = pd.read_parquet(DATA / survey / "catalog.parquet").merge(
        pd.read_parquet(DATA / survey / "latents" / f"{latents}.parquet"), on="star_id")
    snr_bin = pd.cut(d.snr, SNR_BINS)
    print(f"{latents} on {survey} ({len(d)} stars); S/N bins {list(SNR_BINS[1:-1])}")
    for axis, truth in AXES:
        per_bin = " / ".join(f"{r(g[axis], g[truth]):.3f}" for _, g in d.groupby(snr_bin, observed=True))
        print(f"{axis}: raw r {r(d[axis], d[truth]):.3f}, per S/N bin {per_bin}, "
              f"oracle posterior mean {r(oracle_shrunk(d, axis, truth), d[truth]):.3f}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python tools/shrinkage_ceiling.py SURVEY LATENTS")
    main(*sys.argv[1:])
