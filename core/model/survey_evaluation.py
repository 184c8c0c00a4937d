"""``chemlatent evaluate`` as one core step: encode a fresh survey when needed, score the
latents against its truth labels and draw the figures."""

from __future__ import annotations

import hashlib
from pathlib import Path

from chemlatent.encode.whole import encode_whole
from chemlatent.errors import ChemlatentError
from chemlatent.io.latents import latents_metadata, read_latents
from chemlatent.io.store import Survey
from chemlatent.model.calibration import METHODS, load_calibration
from chemlatent.model.device import pick_device
from chemlatent.model.evaluation import evaluate, plot_evaluation
from chemlatent.model.modelio import check_grid, json_safe, load_config, load_model


def check_latents_model(lat_path, model_dir, survey_dir) -> None:
    """Refuse latents that another model of the same name wrote (they would be scored as this one's)."""
    text = latents_metadata(lat_path).get("model_dir")
    if not text:
        return
    made_by = next((c for c in (Path(str(text)), Path(survey_dir) / str(text))
                    if (c / "weights.safetensors").is_file()), None)
    if made_by is None or made_by.resolve() == Path(model_dir).resolve():
        return

    def digest(d):
        return hashlib.sha256((Path(d) / "weights.safetensors").read_bytes()).hexdigest()

    if digest(made_by) != digest(model_dir):
        raise ChemlatentError(f"{lat_path} was written by the model in {made_by}, not {model_dir}; "
                              f"re-encode with chemlatent encode {survey_dir} --model {model_dir} "
                              "--overwrite")


def evaluate_survey(survey_dir, model: str | None = None, *, device: str = "auto",
                    plots: str | None = None, allow_training_survey: bool = False,
                    calibration: str = "model") -> dict:
    """Metrics (JSON-safe) of ``model`` on a survey it was not trained on, with the paths of
    the figures written under ``plots`` (default ``DIR/evaluation/<model>``). ``calibration``:
    "model" uses the model's calibration.json when it has one (else a regression fit on half
    the survey); "regression" or "classical" always fit one on half the survey that way."""
    if calibration not in ("model", *METHODS):
        raise ChemlatentError(f"unknown calibration {calibration!r}: use model, {' or '.join(METHODS)}")
    survey = Survey(survey_dir)
    model_dir, cfg = load_config(model)
    trained_on = (cfg.get("training") or {}).get("survey")
    if trained_on and Path(trained_on).resolve() == survey.path.resolve() and not allow_training_survey:
        raise ChemlatentError(f"{survey.path} is the survey this model was trained on; evaluate on "
                              "a fresh survey (chemlatent generate ... --seed OTHER)")
    name = cfg.get("name") or model_dir.name
    plots_dir = Path(plots) if plots else survey.path / "evaluation" / name
    if plots_dir.exists() and not plots_dir.is_dir():
        raise ChemlatentError(f"--plots {plots_dir} is a file; give a directory for the figures")
    dev = pick_device(device)
    loaded = load_model(model_dir, device=str(dev))
    check_grid(loaded, survey.grid)
    lat_path = survey.latents_path(name)
    if lat_path.exists():
        check_latents_model(lat_path, model_dir, survey.path)
    else:
        encode_whole(survey, loaded, device=str(dev))  # as `chemlatent encode DIR` would
    latents = read_latents(lat_path)
    cal = load_calibration(model_dir) if calibration == "model" else None
    method = "regression" if calibration == "model" else calibration
    metrics = evaluate(latents, survey.catalog, cal, calibration_method=method)
    metrics["model"] = name
    metrics["survey"] = str(survey.path)
    figures = plot_evaluation(latents, survey.catalog, cal, plots_dir)
    metrics["plots"] = [str(p) for p in figures]
    return json_safe(metrics)
