"""How a ratio axis responds across its range: tools/ratio_response.py VAL_DIR RUN... [--axis c|alpha].

For the metal-poor stars ([Fe/H] < -1) of VAL_DIR, the mean and spread of RUN's z_c (or
z_alpha) per bin of the true [C/Fe] (or [alpha/Fe]), and the slope of z against the truth
among the normal stars (truth < 0.5): a flat slope with a jump at the tail is a threshold-like
axis, a steady slope one that also reads the normal stars (and whose linear calibration then
shrinks the tail).
"""
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from chemlatent.io.store import Survey

BINS = {"c": [-1, 0, 0.35, 0.7, 1.0, 1.5, 2.0, 3.5], "alpha": [-0.5, -0.1, 0.0, 0.1, 0.2, 0.3, 0.7]}
TRUTH = {"c": "c_fe", "alpha": "alpha_fe"}

if __name__ == "__main__":
    args = sys.argv[1:]
    axis = "c"
    if "--axis" in args:
        i = args.index("--axis")
        axis = args[i + 1]
        del args[i:i + 2]
    cat = Survey(args[0]).catalog
    t = TRUTH[axis]
    for run in map(Path, args[1:]):
        d = pd.read_parquet(run / "val.parquet").merge(cat, on="star_id", suffixes=("", "_cat"))
        mp = d[d.fe_h < -1]
        g = mp.groupby(pd.cut(mp[t], BINS[axis]), observed=True)[f"z_{axis}"].agg(["mean", "std"])
        normal = mp[mp[t] < 0.5]
        slope = np.polyfit(normal[t], normal[f"z_{axis}"], 1)[0]
        cells = " ".join(f"{iv.left:+.2f}: {r['mean']:.2f}+-{r['std']:.2f}" for iv, r in g.iterrows())
        print(f"{run.name}: slope among normal stars {slope:.2f}; per bin of {t} (from): {cells}")
