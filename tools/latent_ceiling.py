"""How much of each abundance a run's latents hold linearly: tools/latent_ceiling.py VAL RUN ...

Fits each truth on (z_fe, z_c, z_alpha) by least squares on half of the validation survey and
prints Pearson r on the other half (all stars, and [Fe/H] < -1). A diagnostic that uses the
truth: it says whether an axis is mixed (high r here, low raw r) or missing (low r here)."""

import sys

import numpy as np
import pandas as pd

from chemlatent.io.store import Survey

if __name__ == "__main__":
    cat = Survey(sys.argv[1]).catalog
    for run in sys.argv[2:]:
        lat = pd.read_parquet(f"runs/{run}/val.parquet").merge(cat, on="star_id", suffixes=("", "_cat"))
        n = len(lat)
        fit = np.arange(n) % 2 == 0
        X = np.column_stack([np.ones(n), lat.z_fe, lat.z_c, lat.z_alpha])
        cells = []
        for truth in ("fe_h", "c_fe", "alpha_fe"):
            y = lat[truth].to_numpy()
            b = np.linalg.lstsq(X[fit], y[fit], rcond=None)[0]
            pred = X @ b
            test = ~fit
            mp = test & (lat.fe_h.to_numpy() < -1)
            cells.append(f"{truth} {np.corrcoef(pred[test], y[test])[0, 1]:.3f} "
                         f"(below -1: {np.corrcoef(pred[mp], y[mp])[0, 1]:.2f})")
        print(f"{run}: " + " | ".join(cells))
