"""train's label-free axis checks for a trained model on any survey:
tools/axes_diagnostics.py MODEL SURVEY [STARS]

Encodes STARS (default 3,000) random stars of SURVEY with MODEL's encoder and prints what
``chemlatent train`` prints and stores at its end (chemlatent.model.identifiability): how well
the three axes together predict Teff/logg, each axis's Teff/logg R^2, and the warnings."""

import sys

import numpy as np
import torch

from chemlatent.io.store import Survey
from chemlatent.model.modelio import load_model
from chemlatent.model.training import InMemoryData, validation_diagnostics

if __name__ == "__main__":
    model_dir, survey_dir = sys.argv[1], sys.argv[2]
    stars = int(sys.argv[3]) if len(sys.argv) > 3 else 3000
    survey = Survey(survey_dir)
    rows = np.random.default_rng(0).choice(survey.n_stars, min(stars, survey.n_stars), replace=False)
    diag = validation_diagnostics(load_model(model_dir, device="cpu"), InMemoryData(survey, rows),
                                  torch.device("cpu"))
    r2 = diag.get("labels_from_axes_r2", {})
    print(f"{model_dir} on {survey_dir} ({diag['n']} stars): Teff / logg from the axes together "
          f"{r2.get('teff', float('nan')):.3f} / {r2.get('logg', float('nan')):.3f}; per axis "
          + ", ".join(f"{k} {v['teff_logg_r2']:.3f}" for k, v in diag["axes"].items()))
    for w in diag["warnings"]:
        print(f"warning: {w}")
