"""The survey's own information limit on each abundance:
tools/information_limit.py [STARS [SEED | SURVEY_DIR]]

For STARS stars drawn like a generator survey of seed SEED (default 2000 stars of the
evaluation survey's seed 424242), or like the generated survey in SURVEY_DIR (its seed, grid
and stand-in physics), the Cramer-Rao bound on [Fe/H], [C/Fe] and [alpha/Fe] at
each star's own S/N: the Fisher matrix of the generator's normalised flux in Teff, logg,
[Fe/H], [C/Fe], [alpha/Fe], [N/Fe], microturbulence and radial velocity (central
differences of noise-free spectra), inverted, so every other parameter is marginalised. Over
all pixels (what the encoder sees) and over the element windows (what the decoders model).
Then the Pearson r an estimator at that bound would reach on the survey (truth plus Gaussian
noise of each star's bound; unbiased, and shrunk toward the population mean as a posterior
mean is), overall and by metallicity: the ceiling of the raw r `chemlatent evaluate`
reports, for a model that knows the generator exactly.
"""
import json
import sys
from pathlib import Path

import numpy as np

from chemlatent.io.store import Survey
from chemlatent.spectra.grid import default_windows, window_masks
from chemlatent.synth.generator import Generator
from chemlatent.synth.standins import StandIn

PARAMS = (("teff", 40.0), ("logg", 0.08), ("fe_h", 0.08), ("c_fe", 0.08), ("alpha_fe", 0.08),
          ("n_fe", 0.08), ("vmicro", 0.15), ("rv_residual", 1.0))
TARGETS = ("fe_h", "c_fe", "alpha_fe")


def jacobian(gen: Generator, lab) -> np.ndarray:
    """d flux / d parameter (n, P, len(PARAMS)) from noise-free central differences."""
    cols = []
    for name, step in PARAMS:
        up, dn = lab.copy(), lab.copy()
        up[name] += step
        dn[name] -= step
        fu = gen.render(up)[0].astype(np.float64)
        fd = gen.render(dn)[0].astype(np.float64)
        cols.append((fu - fd) / (2 * step))
    return np.stack(cols, -1)


def bounds(jac: np.ndarray, ivar: np.ndarray, pixels: np.ndarray) -> np.ndarray:
    """Cramer-Rao standard deviations of TARGETS (n, 3) from the pixels selected."""
    j = jac[:, pixels]
    fisher = np.einsum("npi,np,npj->nij", j, ivar[:, pixels], j)
    cov = np.linalg.pinv(fisher)
    idx = [[p for p, _ in PARAMS].index(t) for t in TARGETS]
    return np.sqrt(np.clip(cov[:, idx, idx], 0.0, None))


def ceiling_r(truth: np.ndarray, sd: np.ndarray, rng: np.random.Generator) -> tuple[float, float]:
    """r of an unbiased estimator at the bound and of its posterior-mean shrinkage."""
    est = truth + sd * rng.standard_normal(truth.size)
    var = truth.var()
    shrunk = truth.mean() + var / (var + sd**2) * (est - truth.mean())
    return float(np.corrcoef(est, truth)[0, 1]), float(np.corrcoef(shrunk, truth)[0, 1])


def generator(arg: str) -> Generator:
    """The generator of a seed, or of the generated survey in a directory."""
    if not Path(arg).is_dir():
        return Generator(int(arg))
    prov = json.loads((Path(arg) / "survey.json").read_text())["provenance"]
    standin = prov.get("standin")
    return Generator(int(prov["seed"]), Survey(arg).grid, StandIn(**standin) if standin else None)


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    gen = generator(sys.argv[2] if len(sys.argv) > 2 else "424242")
    lab = gen.labels(np.arange(n)).copy()
    snr = lab["snr"].to_numpy(np.float64)
    quiet = lab.copy()
    quiet["snr"] = 1e5  # noise-free differences; the bound uses each star's own S/N
    jac = jacobian(gen, quiet)
    ivar = snr[:, None] ** 2 * gen.ivar_profile[None, :].astype(np.float64)
    masks = window_masks(gen.grid, default_windows())
    windows = np.zeros(gen.grid.npix, bool)
    for m in masks.values():
        windows |= m
    rng = np.random.default_rng(0)
    fe = lab["fe_h"].to_numpy()
    print(f"{n} stars of seed {gen.seed}: S/N {np.median(snr):.0f} median ({snr.min():.0f}-{snr.max():.0f})")
    for name, pix in (("all pixels", np.ones(gen.grid.npix, bool)), ("element windows", windows)):
        sd = bounds(jac, ivar, pix)
        print(f"{name} ({pix.sum()}):")
        for k, t in enumerate(TARGETS):
            truth = lab[t].to_numpy(np.float64)
            r_u, r_s = ceiling_r(truth, sd[:, k], rng)
            line = (f"  {t:9s} bound median {np.median(sd[:, k]):.3f} dex; "
                    f"ceiling r {r_u:.3f} (shrunk {r_s:.3f})")
            for lo, hi in ((-4.0, -2.0), (-2.0, -1.0), (-1.0, 1.0)):
                m = (fe >= lo) & (fe < hi)
                if m.sum() > 20:
                    line += f"; [Fe/H] {lo:g}..{hi:g}: {np.median(sd[m, k]):.3f} dex"
            print(line)


if __name__ == "__main__":
    main()
