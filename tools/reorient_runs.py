"""Re-orient trained screen runs with the per-axis rule and rescore their saved latents:
tools/reorient_runs.py VAL_SURVEY RUN [RUN ...] (runs/RUN/val.parquet from tools/screen.py).

Orientation only flips reported signs, so flipping the saved latents' columns gives exactly
what encoding with the re-oriented model gives."""

import sys
from pathlib import Path

import pandas as pd

from chemlatent.io.store import Survey
from chemlatent.model.modelio import load_model
from chemlatent.model.training import orient_axes

sys.path.insert(0, str(Path(__file__).parent))
from screen import score  # noqa: E402

if __name__ == "__main__":
    cat = Survey(sys.argv[1]).catalog
    for run in sys.argv[2:]:
        model = load_model(f"runs/{run}")
        before = model.orient.clone()
        orient_axes(model)
        flip = (model.orient / before).numpy()
        lat = pd.read_parquet(f"runs/{run}/val.parquet")
        for k, axis in enumerate(("fe", "c", "alpha")):
            lat[f"z_{axis}"] *= flip[k]
        m = score(lat, cat)
        r = " / ".join(f"{v:.3f}" for v in m["pearson_r"].values())
        cemp = m["flags"]["cemp"]
        print(f"{run}: flips {flip.tolist()}, r Fe / C / alpha {r}, "
              f"CEMP {cemp['precision']:.3f} / {cemp['recall']:.3f}")
