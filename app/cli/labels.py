"""``chemlatent labels DIR TABLE [--on star_id|source_file|radec]``: attach table columns.

Adds columns of an external table (CSV, FITS, VOTable, Parquet) to ``DIR/catalog.parquet``:
Teff/logg for training a real survey, reference abundances for calibration. Stars without a
match keep their row with missing values. Prints one summary line; see ``docs/labels.md``.
"""

from __future__ import annotations

import argparse
import sys

from chemlatent.app.cli.options import positive_float

HELP = "attach columns of an external table (Teff/logg, reference abundances) to a survey's catalog"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``chemlatent labels``."""
    p.add_argument("dir", metavar="DIR", help="survey directory")
    p.add_argument("table", metavar="TABLE",
                   help="table to attach: .csv/.txt, .fits/.fit/.fits.gz, .vot/.xml/.votable, .parquet")
    p.add_argument("--on", choices=("star_id", "source_file", "radec"), default=None,
                   help="match key (default: star_id if the table has it, else source_file if both "
                        "have file names, else radec if both have coordinates)")
    p.add_argument("--radius", type=positive_float, default=None, metavar="ARCSEC",
                   help="--on radec: largest separation in arcsec (default 1.5, at most 60)")
    p.add_argument("--columns", default=None, metavar="A,B,C",
                   help="table columns to attach (default: all but the key and identifier columns)")
    p.add_argument("--rename", default=None, metavar="OLD=NEW,...",
                   help="rename table columns first (e.g. ALPHA_M=alpha_fe, or ID=star_id to "
                        "declare the key)")
    p.add_argument("--prefix", default="", metavar="P",
                   help="put P in front of every attached column name (e.g. ref_)")
    p.add_argument("--overwrite-columns", action="store_true",
                   help="replace catalog columns of the same name instead of refusing")
    p.add_argument("--dry-run", action="store_true",
                   help="match and report, but write nothing")


def run(args: argparse.Namespace) -> int:
    """Attach the columns and print a one-line summary."""
    from chemlatent.io.labels import attach_labels, parse_columns, parse_rename

    result = attach_labels(
        args.dir, args.table, on=args.on, radius_arcsec=args.radius,
        columns=parse_columns(args.columns), rename=parse_rename(args.rename),
        prefix=args.prefix, overwrite_columns=args.overwrite_columns, dry_run=args.dry_run,
    )
    for note in result.notes:
        print(f"chemlatent labels: note: {note}", file=sys.stderr)
    if args.radius is not None and result.on != "radec":
        print(f"chemlatent labels: note: --radius ignored (matched on {result.on})", file=sys.stderr)
    print(result.summary())
    return 0
