"""Screen one variant (docs/model.md protocol): tools/screen.py NAME [JSON TrainOptions] [NOTE].

Trains 8 epochs on 100k of train200k into runs/NAME, encodes val50k, scores (runs/NAME/score.json)
and prints the docs/model-screens.md row; NAME=ref rescores the bundled latents of val50k.
SCREEN_FROM=RUN continues RUN's checkpoint (a copy) with the given options up to their epochs.
"""
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from chemlatent.encode.streaming import encode_survey
from chemlatent.io.store import Survey
from chemlatent.model.evaluation import evaluate, pearson
from chemlatent.model.modelio import load_model
from chemlatent.model.training import TrainOptions, train

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data"  # data/train200k (seed 1) and data/val50k (seed 2), see docs/model.md
TRAIN = Path(os.environ.get("SCREEN_TRAIN", DATA / "train200k"))  # other surveys: these two variables
VAL = Path(os.environ.get("SCREEN_VAL", DATA / "val50k"))


def score(lat: pd.DataFrame, cat: pd.DataFrame) -> dict:
    m = evaluate(lat, cat, None)
    df = lat.merge(cat, on="star_id", suffixes=("", "_cat"))
    mp = df["fe_h"] < -1
    vmp = df["fe_h"] < -1.5
    m["extra"] = {
        "corr_zalpha_feh": pearson(df.z_alpha.values, df.fe_h.values),
        "corr_zc_feh": pearson(df.z_c.values, df.fe_h.values),
        "corr_zfe_teff": pearson(df.z_fe.values, df.teff.values),
        "corr_feh_teff": pearson(df.fe_h.values, df.teff.values),
        "r_mp": {t: pearson(df.loc[mp, f"z_{a}"].values, df.loc[mp, t].values)
                 for a, t in (("fe", "fe_h"), ("c", "c_fe"), ("alpha", "alpha_fe"))},
        "r_alpha_vmp": pearson(df.loc[vmp, "z_alpha"].values, df.loc[vmp, "alpha_fe"].values),
        "n_mp": int(mp.sum()),
    }
    return m


def row(name: str, m: dict, note: str = "") -> str:
    r, rc, f, lk, x = m["pearson_r"], m["pearson_r_calibrated"], m["flags"], m["leakage_r2"], m["extra"]
    t = ("fe_h", "c_fe", "alpha_fe")

    def pr(d):
        p, q = d["precision"], d["recall"]
        fp = "-" if p is None or (isinstance(p, float) and np.isnan(p)) else f"{p:.3g}"
        return f"{fp} / {q:.3g}"
    mps = " / ".join(format(x["r_mp"][k], ".3f") for k in t)
    return (f"| {name} | {' / '.join(f'{r[k]:.3f}' for k in t)} | {' / '.join(f'{rc[k]:.3f}' for k in t)} | "
            f"{pr(f['cemp'])} | {pr(f['apmp'])} | {lk['teff']:.3f} / {lk['logg']:.3f} | "
            f"{x['corr_zalpha_feh']:+.2f} | {mps} | "
            f"{x['corr_zfe_teff']:+.2f} | {note} |")


if __name__ == "__main__":
    name = sys.argv[1]
    out = ROOT / "runs" / name
    val = Survey(VAL)
    if name == "ref":
        lat = pd.read_parquet(VAL / "latents/chemvae-v1.parquet")
    else:
        kw = json.loads(sys.argv[2]) if len(sys.argv) > 2 else {}
        kw.setdefault("max_stars", 100_000)
        kw.setdefault("epochs", 8)
        t0 = time.time()
        start = os.environ.get("SCREEN_FROM")  # continue another run's checkpoint with these options
        if start:
            import shutil

            shutil.copytree(ROOT / "runs" / start, out, dirs_exist_ok=True)
        train(TRAIN, out, TrainOptions(**kw), resume=bool(start), progress=False,
              log=lambda s: print(s, flush=True))
        print(f"trained in {time.time() - t0:.0f} s", flush=True)
        p = out / "val.parquet"
        if p.exists():
            p.unlink()
        lat = pd.read_parquet(encode_survey(val, load_model(out), out_path=p))
    out.mkdir(parents=True, exist_ok=True)
    m = score(lat, val.catalog)
    (out / "score.json").write_text(json.dumps(m, indent=1, default=str))
    print(json.dumps({k: m[k] for k in ("pearson_r", "pearson_r_calibrated", "flags", "leakage_r2", "extra")},
                     default=str))
    print(row(name, m, sys.argv[3] if len(sys.argv) > 3 else ""), flush=True)
