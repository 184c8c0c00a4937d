"""Fit a reconstruction surrogate to a trained line model (chemlatent.model.surrogate), as
training now does: tools/add_surrogate.py MODEL_DIR TRAIN_SURVEY_DIR [STARS]

Rewrites MODEL_DIR's weights and config (the surrogate's summary under training.surrogate).
Re-encode surveys afterwards (--overwrite) for chi2 from the surrogate.
"""
import sys

import torch

from chemlatent.io.store import Survey
from chemlatent.model.modelio import load_config, load_model, save_model
from chemlatent.model.star_noise import star_noise
from chemlatent.model.surrogate import fit_surrogate
from chemlatent.model.training import InMemoryData

if __name__ == "__main__":
    torch.set_num_threads(2)
    path, cfg = load_config(sys.argv[1])
    model = load_model(path)
    if getattr(model, "form", None) != "lines":
        sys.exit(f"{path} has no line decoders: its chi2 is already as fast as a surrogate's")
    stars = int(sys.argv[3]) if len(sys.argv) > 3 else 30_000
    survey = Survey(sys.argv[2])
    n = min(len(survey.catalog), stars)
    rows = torch.randperm(len(survey.catalog), generator=torch.Generator().manual_seed(0))[:n].sort().values
    data = InMemoryData(survey, rows.numpy())
    summary = fit_surrogate(model, data.batch, len(data), star_noise, stars=stars)
    training = dict(cfg.get("training", {}), surrogate=summary)
    save_model(model, path, extra_config={"training": training})
    print(f"{path}: surrogate written")
