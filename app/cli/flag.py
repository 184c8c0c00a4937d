"""``chemlatent flag DIR --preset cemp|apmp|NAME [--sigma S] [--fdr Q] --out FILE [--samp]``.

Flags chemically peculiar stars in a survey's latents with a threshold rule, prints a
one-line summary (flagged N of M, expected by chance, precision/recall when the catalog has
truth labels) and writes the candidates to CSV, FITS or VOTable (by extension).
"""

from __future__ import annotations

import argparse
import sys

from chemlatent.app.cli.options import positive_float

HELP = "flag chemically peculiar stars (CEMP, alpha-poor metal-poor, saved rules) and export them"


def _fdr(text: str) -> float:
    value = positive_float(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def add_arguments(p) -> None:
    p.add_argument("dir", help="survey directory (with latents/ from chemlatent encode)")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--preset", help="cemp, apmp, or the name of a saved preset")
    what.add_argument("--rule", help="a rule as JSON or an expression, e.g. "
                      "'fe < -1 dex and c > 3 sigma(cond)'")
    p.add_argument("--sigma", type=positive_float, default=None,
                   help="built-in presets: cut the element axis at S sigma in the "
                        "metallicity-conditional frame instead of dex (see docs/flags.md)")
    p.add_argument("--fe-sigma", type=positive_float, default=1.0,
                   help="with --sigma and no Fe calibration: metal-poor means z_fe below "
                        "the survey median by this many sigma (default 1)")
    p.add_argument("--fdr", type=_fdr, default=None, metavar="Q",
                   help="flag by Benjamini-Hochberg at false-discovery rate Q instead of "
                        "the thresholds (the condition stays a filter)")
    p.add_argument("--null", choices=["prior", "empirical"], default="prior",
                   help="null model for the expected-by-chance count (default prior)")
    p.add_argument("--model", help="model name or model directory (default: the only or "
                   "newest latents of the survey)")
    p.add_argument("--out", required=True, help="output file: .csv, .fits/.fit or .vot/.xml")
    p.add_argument("--samp", action="store_true",
                   help="also send the table to TOPCAT/Aladin over SAMP")
    p.add_argument("--calibrate", action="store_true",
                   help="fit the latent -> dex calibration from the catalog's reference "
                        "columns first (saved in the model directory when known)")
    p.add_argument("--calibrate-columns", default=None, metavar="AXIS=COL,...",
                   help="reference columns for --calibrate (default fe=fe_h,c=c_fe,alpha=alpha_fe)")
    p.add_argument("--db", default=None,
                   help="annotations database (SQLAlchemy URL; default DIR/annotations.sqlite)")
    p.add_argument("--save-list", default=None, metavar="NAME",
                   help="also save the candidates as a named list in the annotations database")


def _columns(text: str | None) -> dict[str, str] | None:
    from chemlatent.errors import ChemlatentError

    if not text:
        return None
    out = {}
    for part in text.split(","):
        if "=" not in part:
            raise ChemlatentError(f"--calibrate-columns wants AXIS=COLUMN pairs, got {part!r}")
        k, v = (s.strip() for s in part.split("=", 1))
        out[k] = v
    return out


def run(args) -> int:
    from pathlib import Path

    import numpy as np
    import pandas as pd

    from chemlatent.errors import ChemlatentError
    from chemlatent.flags.anomaly import compute_scores
    from chemlatent.flags.engine import RuleEngine
    from chemlatent.flags.parser import parse_rule
    from chemlatent.flags.presets import PRESETS, preset
    from chemlatent.flags.statistics import truth_mask
    from chemlatent.flags.tree import rule_from_json
    from chemlatent.io.annotations import DB_NAME
    from chemlatent.io.export import (
        build_export_frame,
        export_table,
        format_for,
        provenance,
        send_table_samp,
    )
    from chemlatent.io.latents import find_latents, read_latents
    from chemlatent.model.calibration import fit_calibration, load_calibration

    survey = Path(args.dir)
    fmt = format_for(args.out)  # fail early on a bad extension
    info = find_latents(survey, args.model)
    if info.note:
        print(f"chemlatent flag: note: {info.note}", file=sys.stderr)
    latents = read_latents(info.path)
    catalog = None
    cat_path = survey / "catalog.parquet"
    if cat_path.exists():
        try:
            catalog = pd.read_parquet(cat_path)
        except Exception as exc:
            raise ChemlatentError(f"{cat_path} is unreadable ({exc})") from None
    calibration = load_calibration(info.model_dir)
    if args.calibrate:
        if catalog is None:
            raise ChemlatentError(f"--calibrate needs {cat_path} with reference abundances")
        calibration = fit_calibration(latents, catalog, _columns(args.calibrate_columns),
                                      source=f"{cat_path}")
        if info.model_dir is not None:
            saved = calibration.save(info.model_dir)
            print(f"chemlatent flag: note: calibration saved to {saved}", file=sys.stderr)
        else:
            print("chemlatent flag: note: model directory unknown: calibration used for this "
                  "run only (pass --model MODEL_DIR to keep it)", file=sys.stderr)

    store = None
    saved_preset = args.preset and args.preset.lower() not in PRESETS
    if saved_preset and not (args.db or args.save_list) and not (survey / DB_NAME).exists():
        raise ChemlatentError(f"unknown preset {args.preset!r}: built in are {', '.join(PRESETS)} "
                              "(this survey has no saved presets)")
    if args.db or args.save_list or saved_preset:
        from chemlatent.io.annotations import open_annotations

        store = open_annotations(args.db or survey)
    if args.rule:
        if args.sigma is not None:
            raise ChemlatentError("--sigma applies to the built-in presets (cemp, apmp)")
        rule = parse_rule(args.rule)
    elif args.preset.lower() in PRESETS:
        rule = preset(args.preset, sigma=args.sigma, calibration=calibration,
                            fe_sigma=args.fe_sigma)
    else:
        text = store.get_preset(args.preset)
        if text is None:
            saved = store.presets()["name"].tolist()
            raise ChemlatentError(
                f"unknown preset {args.preset!r}: built in are {', '.join(PRESETS)}"
                + (f"; saved: {', '.join(saved)}" if saved else ""))
        if args.sigma is not None:
            raise ChemlatentError("--sigma applies to the built-in presets (cemp, apmp)")
        rule = rule_from_json(text)

    engine = RuleEngine.from_latents(latents, calibration=calibration)
    truth = known = None
    if catalog is not None and rule.truth_definition() is not None:
        aligned = latents[["star_id"]].merge(catalog, on="star_id", how="left")
        try:
            truth, known = truth_mask(rule, aligned)
        except ChemlatentError:
            truth = known = None  # no truth labels: no precision/recall
        if known is not None and not known.any():
            truth = known = None
    counts = engine.counts(rule, fdr=args.fdr, null=args.null, truth=truth, known=known)
    mask = counts.extra["mask"]
    applied = counts.effective_rule or rule
    chosen = latents[mask].reset_index(drop=True)
    scores = compute_scores(chosen, engine.ref)
    frame = build_export_frame(chosen, scores=scores, catalog=catalog, calibration=calibration)
    extra = {"n_stars": counts.n_stars, "n_flagged": counts.n_flagged,
             "expected": round(counts.expected, 4), "null": counts.null}
    if args.fdr is not None:
        extra.update(fdr=args.fdr, p_threshold=counts.p_threshold,
                     requested_rule=rule.describe())
    if counts.metrics:
        extra.update(precision=round(counts.metrics["precision"], 6),
                     recall=round(counts.metrics["recall"], 6))
    if calibration is not None:
        extra["calibration"] = ", ".join(
            f"{c.target} = {c.intercept:+.4f} {c.slope:+.4f} z (scatter {c.scatter:.3f})"
            for c in calibration.axes.values())
    meta = provenance(survey_path=survey, model_name=info.model_name,
                      model_dir=str(info.model_dir) if info.model_dir else None,
                      rule=applied, extra=extra)
    try:
        out = export_table(frame, args.out, meta, fmt)
    except OSError as exc:
        raise ChemlatentError(f"cannot write {args.out} ({exc.strerror or exc}); choose a writable "
                              "place for --out") from None
    print(f"{rule.name}: {counts.summary()} -> {out}")
    if args.save_list:
        store.save_list(args.save_list, frame["star_id"].to_numpy(np.int64), applied.to_json())
        print(f"chemlatent flag: note: saved list {args.save_list!r} "
              f"({len(frame)} stars)", file=sys.stderr)
    if args.samp:
        res = send_table_samp(frame, f"{rule.name} candidates", meta=meta)
        print(f"chemlatent flag: note: sent to SAMP ({len(res['loaded_by'])} client(s))",
              file=sys.stderr)
    if store is not None:
        store.close()
    return 0
