"""``chemlatent compare DIR A B --out FILE.csv|.fits|.vot``: the differential spectrum of two
star sets, one row per pixel, most significant first (see :mod:`chemlatent.explore.compare`).

A and B are files of star_ids (text, one per line, or a table with a star_id column) or the
names of saved selections or candidate lists; B may also be ``rest`` (every other star) or
``control`` (survey stars at A's predicted Teff/logg).
"""

from __future__ import annotations

from chemlatent.app.cli.options import positive_int

HELP = "differential spectrum of two star sets (mean spectra, Welch t, BH q, top features)"


def add_arguments(p) -> None:
    p.add_argument("dir", help="survey directory")
    p.add_argument("a", metavar="A", help="file of star_ids, or a saved selection or list name")
    p.add_argument("b", metavar="B", help="file of star_ids, a saved name, 'rest' or 'control'")
    p.add_argument("--out", required=True, help="output file: .csv, .fits/.fit or .vot/.xml")
    p.add_argument("--max-stars", type=positive_int, default=5000,
                   help="use at most this many stars of each set (a seeded random subset; default 5000)")
    p.add_argument("--top", type=positive_int, default=10, help="features to print (default 10)")
    p.add_argument("--model", help="model name or directory whose latents give Teff/logg for 'control'")
    p.add_argument("--db", default=None, help="annotations database (default DIR/annotations.sqlite)")
    p.add_argument("--user", default=None, help="whose saved selections to look up (default: you)")


def run(args) -> int:
    from chemlatent.errors import ChemlatentError
    from chemlatent.explore.compare import compare_survey
    from chemlatent.io.export import export_table, format_for

    fmt = format_for(args.out)
    res = compare_survey(args.dir, args.a, args.b, model=args.model, db=args.db, who=args.user,
                         max_stars=args.max_stars)
    try:
        out = export_table(res.table, args.out, res.meta, fmt)
    except OSError as exc:
        raise ChemlatentError(f"cannot write {args.out} ({exc.strerror or exc})") from None
    c = res.comparison
    print(f"{c.label_a} ({c.n_stars_a:,} stars) vs {c.label_b} ({c.n_stars_b:,} stars): "
          f"{int((res.table['q'] < 0.05).sum()):,} pixels at q < 0.05 -> {out}")
    for r in c.features(args.top).itertuples():
        print(f"  {r.wavelength:9.2f} A  {r.feature:24s} {r.group or '-':6s} "
              f"EW A-B {r.d_ew:+.3f} A  t {r.t:+8.1f}  q {r.q:.2g}")
    for n in c.notes:
        print(f"chemlatent compare: note: {n}")
    return 0
