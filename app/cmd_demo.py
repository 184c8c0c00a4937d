"""``chemlatent demo``: a default synthetic survey, encoded with the bundled model, served.

First run: generates the survey (1,000,000 stars by default) and encodes it; later runs
reuse both and go straight to serving.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from .options import nonneg_int, positive_int

HELP = "generate (first run), encode with the bundled model and serve a demo survey"
DEFAULT_STARS = 1_000_000


def add_arguments(p) -> None:
    p.add_argument("--stars", type=positive_int, default=DEFAULT_STARS,
                   help=f"survey size (default {DEFAULT_STARS:,})")
    p.add_argument("--seed", type=nonneg_int, default=2026, help="survey seed (default 2026)")
    p.add_argument("--dir", default=None, help="where the demo survey lives (default data/demo-N)")
    p.add_argument("--port", type=positive_int, default=5006)
    p.add_argument("--address", default="127.0.0.1")
    p.add_argument("--no-show", action="store_true", help="do not open a browser")
    p.add_argument("--prepare-only", action="store_true", help="generate and encode, do not serve")


def demo_dir(stars: int, seed: int) -> Path:
    return Path("data") / (f"demo-{stars}" if seed == 2026 else f"demo-{stars}-s{seed}")


def prepare(path: Path, stars: int, seed: int, log=print) -> Path:
    """Make sure the demo survey and its latents exist; returns the survey path."""
    from chemlatent.inference import encode_survey
    from chemlatent.modelio import load_model
    from chemlatent.store import Survey
    from chemlatent.synth import generate_survey

    tty = sys.stderr.isatty()
    if not (path / "survey.json").exists():
        log(f"chemlatent demo: generating {stars:,} synthetic stars into {path} (first run only)")
        t0 = time.perf_counter()
        generate_survey(path, stars, seed=seed, progress=tty)
        log(f"chemlatent demo: generated in {time.perf_counter() - t0:.0f} s")
    survey = Survey(path)
    model = load_model(None)
    if not survey.latents_path(model.name).exists():
        from tqdm.auto import tqdm

        log(f"chemlatent demo: encoding with the bundled model {model.name}")
        t0 = time.perf_counter()
        bar = tqdm(total=survey.n_stars, unit="star", disable=not tty, desc="encode")
        encode_survey(survey, model, progress=bar.update)
        bar.close()
        log(f"chemlatent demo: encoded in {time.perf_counter() - t0:.0f} s")
    return path


def run(args) -> int:
    path = Path(args.dir) if args.dir else demo_dir(args.stars, args.seed)
    prepare(path, args.stars, args.seed, log=lambda s: print(s, file=sys.stderr))
    if args.prepare_only:
        print(f"demo survey ready in {path}")
        return 0
    from . import cmd_serve

    args.dir = str(path)
    args.model = None
    args.db = None
    args.who = None
    return cmd_serve.run(args)
