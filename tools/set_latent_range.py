"""Record the latent range of a model trained before ranges existed:
tools/set_latent_range.py MODEL_DIR TRAIN_SURVEY [STARS]

Encodes STARS (default 20,000) random stars of the survey the model was trained on, fits the
range (chemlatent.model.latent_range) and writes it into MODEL_DIR/config.json, as training
now does itself. Latents the model encoded before stay unbounded: re-encode them with
`chemlatent encode DIR --model MODEL_DIR --overwrite`.
"""
import json
import sys
from pathlib import Path

import torch

from chemlatent.io.store import Survey
from chemlatent.model.latent_range import encoded_means, fit_latent_range
from chemlatent.model.modelio import load_model
from chemlatent.model.training import InMemoryData

if __name__ == "__main__":
    model_dir, survey = Path(sys.argv[1]), Survey(sys.argv[2])
    stars = int(sys.argv[3]) if len(sys.argv) > 3 else 20_000
    model = load_model(model_dir)
    n = len(survey.catalog)
    rows = torch.randperm(n, generator=torch.Generator().manual_seed(7))[:stars].sort().values.numpy()
    data = InMemoryData(survey, rows)
    rng = fit_latent_range(encoded_means(model, data.batch, torch.arange(len(data))))
    cfg_path = model_dir / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["latent_range"] = rng
    cfg_path.write_text(json.dumps(cfg, indent=2))
    print(model_dir, rng)
