"""``chemlatent generate DIR --stars N [--seed S]``: write a synthetic survey."""

from __future__ import annotations

import sys
import time

from chemlatent.app.cli.options import nonneg_int, positive_int

HELP = "generate a synthetic survey with true labels (deterministic from the seed)"


def add_arguments(p) -> None:
    p.add_argument("dir", help="survey directory to create")
    p.add_argument("--stars", type=positive_int, required=True, help="number of stars")
    p.add_argument("--seed", type=nonneg_int, default=0, help="random seed (default 0)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing survey")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args) -> int:
    from chemlatent.synth.generator import generate_survey

    if args.stars > 200_000_000:
        from chemlatent.errors import ChemlatentError

        raise ChemlatentError(f"--stars {args.stars} is beyond what one survey directory supports (200M)")
    t0 = time.perf_counter()
    survey = generate_survey(args.dir, args.stars, args.seed, overwrite=args.overwrite,
                             progress=not args.quiet and sys.stderr.isatty())
    dt = time.perf_counter() - t0
    print(f"wrote {survey.n_stars} stars to {survey.path} in {dt:.1f} s "
          f"({survey.n_stars / dt:,.0f} spectra/s)")
    return 0
