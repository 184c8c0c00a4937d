"""Leakage of latents mixed from two models: tools/latent_mix.py SURVEY FE_MODEL CA_MODEL.

Reads data/SURVEY/latents/{FE_MODEL,CA_MODEL}.parquet (both encoded on SURVEY) and prints the
excess Teff/logg leakage (chemlatent.model.evaluation.leakage, as `evaluate` scores it) of
each model's own latents and of z_fe taken from FE_MODEL (or a blend of the two models' z_fe)
with z_c and z_alpha from CA_MODEL: whether one model's z_fe errors and the other's z_alpha
errors still cancel in Teff (docs/model.md, "Hydrogen steers no abundance").
"""
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from chemlatent.model.evaluation import leakage

DATA = Path(__file__).resolve().parents[1] / "data"
AXES = ["z_fe", "z_c", "z_alpha"]


def main(survey: str, fe_model: str, ca_model: str) -> None:
    cat = pd.read_parquet(DATA / survey / "catalog.parquet")
    folder = DATA / survey / "latents"
    lat = {m: pd.read_parquet(folder / f"{m}.parquet").set_index("star_id").loc[cat.star_id]
           for m in (fe_model, ca_model)}
    truth = cat[["fe_h", "c_fe", "alpha_fe"]].to_numpy(np.float64)

    def excess(z: np.ndarray) -> str:
        return " / ".join(f"{leakage(z, truth, cat[k].to_numpy())['excess']:.3f}" for k in ("teff", "logg"))

    for m in (fe_model, ca_model):
        print(f"{m}: leakage Teff / logg {excess(lat[m][AXES].to_numpy())}")
    for w in (1.0, 0.75, 0.5, 0.25):
        fe = w * lat[fe_model].z_fe + (1 - w) * lat[ca_model].z_fe
        z = np.c_[fe, lat[ca_model].z_c, lat[ca_model].z_alpha]
        print(f"z_fe {w:.2f} x {fe_model} + {1 - w:.2f} x {ca_model}, z_c and z_alpha {ca_model}: "
              f"leakage {excess(z)}, r(z_fe, [Fe/H]) {np.corrcoef(fe, cat.fe_h)[0, 1]:.3f}")


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit("usage: python tools/latent_mix.py SURVEY FE_MODEL CA_MODEL")
    main(*sys.argv[1:])
