"""``chemlatent ingest DIR FILES...``: real survey spectrum files into a survey directory.

Exit status: 0 when every file went in, 1 when some were skipped but a survey was written,
2 when nothing could be ingested (no survey written) or the options are wrong.
"""

from __future__ import annotations

import argparse
import sys

HELP = "ingest real spectrum files (SDSS, LAMOST, 1-D FITS, FITS/HDF5/Parquet tables)"

FORMAT_CHOICES = ("sdss", "lamost", "wcs1d", "table")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``chemlatent ingest``."""
    parser.add_argument("dir", metavar="DIR", help="survey directory to create")
    parser.add_argument("files", metavar="FILES", nargs="+",
                        help="spectrum files, glob patterns or directories (a directory means "
                             "its *.fits, *.fits.gz, *.fit, *.h5, *.hdf5, *.parquet files)")
    parser.add_argument("--format", choices=FORMAT_CHOICES, default=None,
                        help="file layout; detected from each file's content when omitted")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace DIR if it already holds a survey")
    parser.add_argument("--medium", choices=("vacuum", "air"), default=None,
                        help="wavelength medium of wcs1d/table files that do not declare one "
                             "(default vacuum; SDSS and LAMOST are always vacuum)")


def run(args: argparse.Namespace) -> int:
    """Ingest the files; per-file problems are one line each on stderr."""
    from tqdm import tqdm

    from chemlatent.io.ingest import ingest_files

    def on_error(name: str, message: str) -> None:
        tqdm.write(f"chemlatent ingest: skipped {name}: {message}", file=sys.stderr)

    survey, problems = ingest_files(
        args.dir, args.files, fmt=args.format, overwrite=args.overwrite, on_error=on_error,
        medium=args.medium, progress=True, debug=bool(getattr(args, "debug", False)),
    )
    if survey is None:
        print(f"chemlatent ingest: error: nothing could be ingested ({len(problems)} "
              f"problem{'s' if len(problems) != 1 else ''}); no survey written", file=sys.stderr)
        return 2
    n_files = len(survey.meta.get("provenance", {}).get("files", []))
    print(f"ingested {len(survey)} spectra from {n_files} file{'s' if n_files != 1 else ''} "
          f"into {survey.path}" + (f"; skipped {len(problems)}" if problems else ""))
    return 1 if problems else 0
