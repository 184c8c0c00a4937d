"""Real against synthetic line depths: tools/line_depth_ratio.py SURVEY MODEL [TILT [WEAK]].

For the FGK stars (4000-7000 K) of an ingested real survey with literature Teff, logg and
[Fe/H] in its catalogue (e.g. the MILES development half, made by tools/real_stars.py):
renders each star with the generator at its literature parameters (noise-free, [alpha/Fe]
from the usual trend, [C/Fe] = 0; TILT and WEAK: the stand-in's --teff-tilt and
--weak-lines), normalises both spectra by the same running upper envelope and fits
real depth = s * synthetic depth over each element group's windows of MODEL. Prints the
median s per Teff bin for giants and dwarfs and the slope of ln s_fe against Teff: zero
when the generator's lines respond to Teff as the real ones do (docs/model.md, "Real
stars: line depths and the refit").
"""
import sys

import numpy as np
import pandas as pd
import torch
from scipy.ndimage import percentile_filter

from chemlatent.io.store import Survey
from chemlatent.model.modelio import load_model
from chemlatent.model.training import InMemoryData
from chemlatent.synth.generator import Generator
from chemlatent.synth.standins import StandIn

GROUPS = ("fe", "c", "alpha")


def envelope_normalised(flux: np.ndarray, good: np.ndarray) -> np.ndarray:
    """Each spectrum over its running 92nd percentile (61 pixels), bad pixels interpolated."""
    out = np.empty_like(flux)
    for i, f in enumerate(np.where(good, flux, np.nan)):
        filled = pd.Series(f).interpolate(limit_direction="both").to_numpy()
        out[i] = f / percentile_filter(filled, 92, size=61)
    return out


def depth_ratios(real: np.ndarray, synth: np.ndarray, good: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Least-squares s per star with 1 - real = s (1 - synth) over pixels ``idx``."""
    rd, sd = 1.0 - real[:, idx], 1.0 - synth[:, idx]
    ok = np.isfinite(rd) & np.isfinite(sd) & good[:, idx]
    rd, sd = np.where(ok, rd, 0.0), np.where(ok, sd, 0.0)
    return (rd * sd).sum(1) / np.maximum((sd * sd).sum(1), 1e-9)


def main(survey_dir: str, model_dir: str, tilt: float = 0.0, weak_lines: int = 0) -> None:
    sv, model = Survey(survey_dir), load_model(model_dir)
    cat = sv.catalog
    keep = (cat.teff >= 4000) & (cat.teff <= 7000) & cat.fe_h.notna() & cat.logg.notna()
    rows = np.flatnonzero(keep.to_numpy())
    data = InMemoryData(sv, rows)
    flux, ivar, _ = (t.numpy() for t in data.batch(torch.arange(len(data))))
    stars = cat.iloc[rows].reset_index(drop=True)
    gen = Generator(0, grid=sv.grid, standin=StandIn(teff_tilt_dex=tilt, weak_lines=weak_lines))
    lab = gen.labels(np.arange(len(stars))).copy()
    for col in ("teff", "logg", "fe_h"):
        lab[col] = stars[col].to_numpy()
    lab["alpha_fe"] = np.clip(-0.4 * stars.fe_h.to_numpy(), 0.0, 0.4)
    lab["c_fe"], lab["n_fe"], lab["vmicro"], lab["rv_residual"], lab["snr"] = 0.0, 0.0, 1.2, 0.0, 1e4
    good = ivar > 0
    real = envelope_normalised(flux.astype(np.float64), good)
    synth = envelope_normalised(gen.render(lab)[0].astype(np.float64), good)
    for g in GROUPS:
        stars[f"s_{g}"] = depth_ratios(real, synth, good, getattr(model, f"win_{g}").numpy())
    stars["teff_bin"] = pd.cut(stars.teff, [4000, 4500, 5000, 5500, 6000, 6500, 7000])
    stars["class"] = np.where(stars.logg < 3.5, "giant", "dwarf")
    table = stars.groupby(["teff_bin", "class"], observed=True)[[f"s_{g}" for g in GROUPS]].median()
    table["stars"] = stars.groupby(["teff_bin", "class"], observed=True).size()
    print(table.round(2).to_string())
    slope = np.polyfit(stars.teff / 1000, np.log(np.clip(stars.s_fe, 0.05, None)), 1)[0]
    print(f"Teff tilt {tilt:g}, {weak_lines} weak lines: slope of ln s_fe per 1000 K = {slope:+.3f} "
          f"({len(stars)} stars)")


if __name__ == "__main__":
    a = sys.argv[1:]
    main(a[0], a[1], float(a[2]) if len(a) > 2 else 0.0, int(a[3]) if len(a) > 3 else 0)
