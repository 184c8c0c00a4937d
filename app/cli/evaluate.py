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
    p.add_argument("--calibration", default="model", choices=["model", "regression", "classical"],
                   help="latent -> dex map for the flags: the model's calibration.json (else a "
                        "regression fit on half the survey), or always fit one on half the survey "
                        "by regression (mean abundance at a given z) or classical (z on the "
                        "abundance, inverted: unbiased tails; docs/flags.md)")
    p.add_argument("--allow-training-survey", action="store_true",
                   help="evaluate even if this is the model's training survey (numbers are then biased)")


def run(args) -> int:
    from chemlatent.model.survey_evaluation import evaluate_survey

    metrics = evaluate_survey(args.dir, args.model, device=args.device, plots=args.plots,
                              allow_training_survey=args.allow_training_survey,
                              calibration=args.calibration)
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
