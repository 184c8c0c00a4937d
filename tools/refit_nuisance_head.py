"""Refit a trained model's Teff/logg head: tools/refit_nuisance_head.py MODEL TRAIN_SURVEY [STARS].

For a model trained before `train` did this itself (chemlatent.model.refine.refit_nuisance_head,
after the encoder refit): the linear Teff/logg head is fitted by least squares to the labels of
STARS (default 20,000) random training stars, on the encoder trunk's features. The latents do
not change; the predicted Teff/logg and the chi2 that encoding computes at them do. The model's
config records the fit under training.encoder_refit. Re-run the calibration afterwards (its
zero point uses the predicted Teff/logg): tools/build_bundled_model.py --model-dir MODEL.
"""
import json
import sys
from pathlib import Path

import numpy as np
import torch

from chemlatent.io.store import Survey
from chemlatent.model.modelio import load_model, save_model
from chemlatent.model.refine import refit_nuisance_head
from chemlatent.model.training import InMemoryData


def main(model_dir: Path, survey_dir: Path, stars: int = 20_000) -> None:
    model = load_model(model_dir).eval()
    survey = Survey(survey_dir)
    rows = np.sort(np.random.default_rng(0).permutation(survey.n_stars)[:stars])
    data = InMemoryData(survey, rows)
    out = refit_nuisance_head(model, data.batch, torch.arange(len(data)))
    print(f"Teff/logg rms (standardised): {out['nuisance_rms_before']} -> {out['nuisance_rms_after']}")
    cfg = json.loads((model_dir / "config.json").read_text())
    training = cfg.get("training", {})
    refit = training.setdefault("encoder_refit", {})
    refit.update(out, nuisance_head_refit=f"{len(data)} stars of {survey_dir}")
    save_model(model, model_dir, extra_config={"training": training})


if __name__ == "__main__":
    a = sys.argv[1:]
    main(Path(a[0]), Path(a[1]), *(int(v) for v in a[2:3]))
