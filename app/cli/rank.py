"""``chemlatent rank DIR [--preset NAME] --out FILE``: the unvetted stars, best first, from
the verdicts stored so far (see :mod:`chemlatent.flags.ranking`), with their score."""

from __future__ import annotations

from chemlatent.app.cli.options import positive_int

HELP = "rank the unvetted stars, best first, learning from the stored accept/reject verdicts"


def add_arguments(p) -> None:
    p.add_argument("dir", help="survey directory (with latents)")
    p.add_argument("--preset", default="cemp", help="the static rule the ranking starts from "
                   "(cemp, apmp, or none for the anomaly score; default cemp)")
    p.add_argument("--out", required=True, help="output file: .csv, .fits/.fit or .vot/.xml")
    p.add_argument("--strategy", choices=["best", "uncertain"], default="best",
                   help="best: most likely accepted first; uncertain: most informative first")
    p.add_argument("--top", type=positive_int, default=None, help="write only the first N stars")
    p.add_argument("--model", help="model name or directory (default: the survey's latents)")
    p.add_argument("--db", default=None, help="annotations database (default DIR/annotations.sqlite)")


def run(args) -> int:
    from chemlatent.errors import ChemlatentError
    from chemlatent.flags.ranking import rank_survey
    from chemlatent.io.export import export_table, format_for

    fmt = format_for(args.out)
    res = rank_survey(args.dir, preset=args.preset, model=args.model, db=args.db,
                      strategy=args.strategy, top=args.top)
    try:
        out = export_table(res.table, args.out, res.meta, fmt)
    except OSError as exc:
        raise ChemlatentError(f"cannot write {args.out} ({exc.strerror or exc})") from None
    print(f"{res.ranking.describe()}: {len(res.table):,} unvetted stars ranked -> {out}")
    return 0
