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
    p.add_argument("--null", choices=["frame", "prior", "empirical"], default="frame",
                   help="null model for the expected-by-chance count: frame (default: each axis "
                        "drawn in its cut's frame, the survey's median/MAD for sigma cuts), prior "
                        "(N(0,1) in raw z) or empirical (the survey's median/MAD on every axis)")
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
    p.add_argument("--calibrate-method", default="regression", choices=["regression", "classical"],
                   help="with --calibrate: regress the abundance on z (default; the mean abundance "
                        "at a given z) or z on the abundance, inverted (unbiased tails; docs/flags.md)")
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


def _note(text: str) -> None:
    print(f"chemlatent flag: note: {text}", file=sys.stderr)


def run(args) -> int:
    import numpy as np

    from chemlatent.errors import ChemlatentError
    from chemlatent.flags.pipeline import FlagRequest, flag_survey
    from chemlatent.io.export import export_table, format_for, send_table_samp

    fmt = format_for(args.out)  # fail early on a bad extension
    req = FlagRequest(survey=args.dir, preset=args.preset, rule=args.rule, sigma=args.sigma,
                      fe_sigma=args.fe_sigma, fdr=args.fdr, null=args.null, model=args.model,
                      calibrate=args.calibrate,
                      calibrate_columns=_columns(args.calibrate_columns) if args.calibrate else None,
                      calibrate_method=args.calibrate_method,
                      db=args.db, save_list=args.save_list)
    res, store = flag_survey(req, note=_note)
    try:
        out = export_table(res.frame, args.out, res.meta, fmt)
    except OSError as exc:
        raise ChemlatentError(f"cannot write {args.out} ({exc.strerror or exc}); choose a writable "
                              "place for --out") from None
    print(f"{res.rule.name}: {res.counts.summary()} -> {out}")
    if args.save_list:
        store.save_list(args.save_list, res.frame["star_id"].to_numpy(np.int64), res.applied.to_json())
        _note(f"saved list {args.save_list!r} ({len(res.frame)} stars)")
    if args.samp:
        sent = send_table_samp(res.frame, f"{res.rule.name} candidates", meta=res.meta)
        _note(f"sent to SAMP ({len(sent['loaded_by'])} client(s))")
    if store is not None:
        store.close()
    return 0
