"""``chemlatent annotate DIR --ids FILE --verdict accept|reject|candidate [--note TEXT]``:
bulk import of verdicts (from a colleague's list, a paper's table, another tool) into the
survey's annotations database, where the page and ``chemlatent rank`` find them."""

from __future__ import annotations

HELP = "record verdicts (accept, reject, candidate) for the stars in a file of star_ids"


def add_arguments(p) -> None:
    p.add_argument("dir", help="survey directory")
    p.add_argument("--ids", required=True, help="file of star_ids (text, one per line, or a table "
                   "with a star_id column: CSV, FITS, VOTable, Parquet)")
    p.add_argument("--verdict", required=True, choices=["accept", "reject", "candidate"])
    p.add_argument("--note", default="", help="a note stored with each verdict")
    p.add_argument("--db", default=None, help="annotations database (default DIR/annotations.sqlite)")
    p.add_argument("--user", default=None, help="who gives the verdicts (default: you)")


def run(args) -> int:
    from chemlatent.flags.ranking import import_verdicts

    res = import_verdicts(args.dir, args.ids, args.verdict, note=args.note, db=args.db, who=args.user)
    print(f"{res['verdict']}: {res['n_recorded']:,} stars recorded by {res['who']}"
          + (f"; {res['n_unknown']:,} star_ids not in the survey were skipped" if res["n_unknown"] else ""))
    return 0
