"""``chemlatent evaluate DIR [--model MODEL_DIR] --json``: the model's science metrics."""

from __future__ import annotations

import json

HELP = "score a model's latents against a survey's truth labels (a survey it was not trained on)"


def add_arguments(p) -> None:
    p.add_argument("dir", help="survey directory with truth labels")
    p.add_argument("--model", default=None, help="model directory (default: the bundled model)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--plots", default=None, help="directory for figures (default DIR/evaluation/MODEL)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--allow-training-survey", action="store_true",
                   help="evaluate even if this is the model's training survey (numbers are then biased)")


def _check_latents_model(lat_path, model_dir, survey_dir) -> None:
    """Refuse latents that another model of the same name wrote (they would be scored as this one's)."""
    import hashlib
    from pathlib import Path

    from chemlatent.errors import ChemlatentError
    from chemlatent.io.latents import latents_metadata

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


def run(args) -> int:
    from pathlib import Path

    from chemlatent.encode.streaming import encode_survey
    from chemlatent.errors import ChemlatentError
    from chemlatent.io.latents import read_latents
    from chemlatent.io.store import Survey
    from chemlatent.model.calibration import load_calibration
    from chemlatent.model.device import pick_device
    from chemlatent.model.evaluation import evaluate, plot_evaluation
    from chemlatent.model.modelio import check_grid, json_safe, load_config, load_model

    survey = Survey(args.dir)
    model_dir, cfg = load_config(args.model)
    trained_on = (cfg.get("training") or {}).get("survey")
    if trained_on and Path(trained_on).resolve() == survey.path.resolve() and not args.allow_training_survey:
        raise ChemlatentError(f"{survey.path} is the survey this model was trained on; evaluate on "
                              "a fresh survey (chemlatent generate ... --seed OTHER)")
    name = cfg.get("name") or model_dir.name
    plots_dir = Path(args.plots) if args.plots else survey.path / "evaluation" / name
    if plots_dir.exists() and not plots_dir.is_dir():
        raise ChemlatentError(f"--plots {plots_dir} is a file; give a directory for the figures")
    device = pick_device(args.device)
    model = load_model(model_dir, device=str(device))
    check_grid(model, survey.grid)
    lat_path = survey.latents_path(name)
    if lat_path.exists():
        _check_latents_model(lat_path, model_dir, survey.path)
    else:
        encode_survey(survey, model, device=str(device))
    latents = read_latents(lat_path)
    cal = load_calibration(model_dir)
    metrics = evaluate(latents, survey.catalog, cal)
    metrics["model"] = name
    metrics["survey"] = str(survey.path)
    plots = plot_evaluation(latents, survey.catalog, cal, plots_dir)
    metrics["plots"] = [str(p) for p in plots]
    metrics = json_safe(metrics)
    if args.json:
        print(json.dumps(metrics))
    else:
        r = metrics["pearson_r"]
        print(f"r(z_fe,[Fe/H]) {r['fe_h']:.3f}  r(z_c,[C/Fe]) {r['c_fe']:.3f}  "
              f"r(z_alpha,[alpha/Fe]) {r['alpha_fe']:.3f}")
        lk = metrics["leakage_r2"]
        print(f"excess leakage R^2: Teff {lk['teff']:.3f}, logg {lk['logg']:.3f}")
        def fmt(x):
            return "n/a" if x is None else f"{x:.3f}"

        for k, v in metrics["flags"].items():
            print(f"{k}: precision {fmt(v['precision'])}, recall {fmt(v['recall'])} "
                  f"({v['n_flagged']} flagged, {v['n_true']} true)")
        print("plots: " + ", ".join(metrics["plots"]))
    return 0
