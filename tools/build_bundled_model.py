"""Build the bundled model end to end (documentation of how assets/models/<name> was made).

    python tools/build_bundled_model.py [--epochs 24] [--workdir data] [--name NAME] [--model-dir M]

chemvae-v1: the bare options (``TrainOptions()``), trained here. A model trained with
``chemlatent train`` (e.g. ``chemlatent train data/train200k --out runs/M ...``) is bundled with
``--model-dir runs/M --name NAME``: copied, calibrated and evaluated as below.

1. synthetic surveys: training (seed 1, 200k), calibration (seed 2, 50k), test (seed 3, 50k)
2. train on the training survey (Teff/logg the only labels)
3. encode the calibration survey and fit the latent -> dex calibration (with the Teff/logg
   zero point) on its truth: calibration.json
4. evaluate on the test survey (never seen in training or calibration): metrics.json
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import pandas as pd

from chemlatent.encode.streaming import encode_survey
from chemlatent.io.store import Survey
from chemlatent.model.calibration import fit_calibration, load_calibration
from chemlatent.model.evaluation import evaluate, plot_evaluation
from chemlatent.model.modelio import load_model, write_json
from chemlatent.model.training import TrainOptions, train
from chemlatent.synth.generator import generate_survey

MODELS = Path(__file__).resolve().parents[1] / "assets" / "models"


def survey(path: Path, n: int, seed: int) -> Survey:
    if not (path / "survey.json").exists():
        generate_survey(path, n, seed=seed, progress=False)
    return Survey(path)


def finalize(model_dir: Path, cal_survey: Survey, test_survey: Survey, name: str) -> dict:
    """Calibrate on one survey, evaluate on another, write calibration.json and metrics.json."""
    model = load_model(model_dir)
    lat_cal = pd.read_parquet(encode_survey(cal_survey, model, overwrite=True))
    cal = fit_calibration(lat_cal, cal_survey.catalog, gauge=True,
                          source=f"synthetic validation survey {cal_survey.path.name} (seed "
                                 f"{cal_survey.meta['provenance'].get('seed')})")
    cal.save(model_dir)
    lat_test = pd.read_parquet(encode_survey(test_survey, model, overwrite=True))
    metrics = evaluate(lat_test, test_survey.catalog, load_calibration(model_dir))
    seed = test_survey.meta["provenance"].get("seed")
    metrics["survey"] = (f"{test_survey.path.name} (synthetic, seed {seed}, {test_survey.n_stars} stars, "
                         "never used in training or calibration)")
    metrics["command"] = f"chemlatent evaluate data/test50k --model assets/models/{name} --json"
    write_json(metrics, model_dir / "metrics.json")
    plot_evaluation(lat_test, test_survey.catalog, load_calibration(model_dir), model_dir / "figures")
    return metrics


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=24)
    ap.add_argument("--workdir", default="data")
    ap.add_argument("--model-dir", default=None, help="use an already trained model directory")
    ap.add_argument("--name", default="chemvae-v1", help="the bundled model's name (its directory)")
    args = ap.parse_args()
    out = MODELS / args.name
    wd = Path(args.workdir)
    cal = survey(wd / "val50k", 50_000, 2)
    test = survey(wd / "test50k", 50_000, 3)
    if args.model_dir:
        if Path(args.model_dir).resolve() != out.resolve():
            if out.exists():
                shutil.rmtree(out)
            out.mkdir(parents=True)
            for f in ("config.json", "weights.safetensors", "history.json", "loss.png"):  # the model only
                if (Path(args.model_dir) / f).exists():
                    shutil.copy2(Path(args.model_dir) / f, out / f)
    else:
        tr = survey(wd / "train200k", 200_000, 1)
        train(tr.path, out, TrainOptions(epochs=args.epochs, name=args.name), progress=True)
        shutil.rmtree(out / "checkpoint", ignore_errors=True)
    cfg = json.loads((out / "config.json").read_text())
    cfg["name"] = args.name
    (out / "config.json").write_text(json.dumps(cfg, indent=2))
    print(json.dumps(finalize(out, cal, test, args.name), indent=1))


if __name__ == "__main__":
    main()
