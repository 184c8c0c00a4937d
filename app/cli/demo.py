"""``chemlatent demo``: a default synthetic survey, encoded with the bundled model, served.

First run: generates the survey (1,000,000 stars by default) and encodes it; later runs
reuse both and go straight to serving.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

from chemlatent.app.cli.options import nonneg_int, port, positive_int
from chemlatent.app.cli.serve import add_security_arguments

HELP = "generate (first run), encode with the bundled model and serve a demo survey"
DEFAULT_STARS = 1_000_000
_SERVING_DONE = threading.Event()  # set when serve returns (the watcher stops interrupting)
FAILED_GRACE_S = 20.0  # a failed first run keeps serving its failure page this long, then exits 2


def add_arguments(p) -> None:
    p.add_argument("--stars", type=positive_int, default=DEFAULT_STARS,
                   help=f"survey size (default {DEFAULT_STARS:,})")
    p.add_argument("--seed", type=nonneg_int, default=2026, help="survey seed (default 2026)")
    p.add_argument("--dir", default=None, help="where the demo survey lives (default data/demo-N)")
    p.add_argument("--port", type=port, default=5006)
    p.add_argument("--address", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--no-show", action="store_true", help="do not open a browser")
    p.add_argument("--prepare-only", action="store_true", help="generate and encode, do not serve")
    add_security_arguments(p)


def demo_dir(stars: int, seed: int) -> Path:
    return Path("data") / (f"demo-{stars}" if seed == 2026 else f"demo-{stars}-s{seed}")


def _load(path: Path):
    """The explorer's shared data for a prepared survey, compiled and warmed up."""
    from chemlatent.app.dashboard.server import warm_up
    from chemlatent.explore.survey import SurveyData

    data = SurveyData(path)
    warm_up(data)
    return data


def _report(prep, log, every: float = 10.0) -> None:
    """Print the preparation's steps and progress to the terminal until it ends."""
    shown = 0
    while True:
        finished = prep.wait(timeout=every) or prep.error is not None
        for line in prep.log[shown:]:
            log(f"chemlatent demo: {line}")
        shown = len(prep.log)
        st = prep.status()
        if finished or st.stage in ("failed", "ready"):
            if prep.error:
                log(f"chemlatent demo: first run failed: {prep.error}")
            return
        if st.total:
            eta = f", ~{st.eta_s:.0f} s left" if st.eta_s is not None else ""
            log(f"chemlatent demo: {st.stage} {st.done:,}/{st.total:,} ({st.rate:,.0f}/s{eta})")


def run(args) -> int:
    from chemlatent.app.cli.serve import access_options
    from chemlatent.errors import ChemlatentError
    from chemlatent.jobs.preparation import Preparation

    if not args.prepare_only:
        access_options(args, warn=lambda s: None)  # bad access flags fail before any work starts
    path = Path(args.dir) if args.dir else demo_dir(args.stars, args.seed)
    log = lambda s: print(s, file=sys.stderr)  # noqa: E731
    prep = Preparation(path, args.stars, args.seed, load=_load if not args.prepare_only else Path)
    args.dir = str(path)
    args.model = None
    args.db = None
    args.who = None
    t0 = time.perf_counter()
    if args.prepare_only:
        prep.start()
        _report(prep, log)
        if prep.error:
            raise ChemlatentError(prep.error)
        print(f"demo survey ready in {path} ({time.perf_counter() - t0:.0f} s)")
        return 0
    from chemlatent.app.cli import serve as cmd_serve

    log(f"chemlatent demo: survey {path} ({args.stars:,} stars requested)")
    prep.start()
    threading.Thread(target=_watch, args=(prep, log), daemon=True).start()
    try:
        code = cmd_serve.run(args, source=prep)
    except KeyboardInterrupt:
        if prep.error is None:
            raise
        code = 0
    finally:
        _SERVING_DONE.set()
    if prep.error is not None:  # the page showed the failure; the command says it too, and fails
        raise ChemlatentError(f"first run failed: {prep.error}")
    return code


def _watch(prep, log) -> None:
    """Report progress; after a failed first run, give open pages time to show the failure,
    then stop the server (the main thread gets SIGINT) so the command exits with status 2."""
    _report(prep, log)
    if prep.error is not None:
        log(f"chemlatent demo: stopping in {FAILED_GRACE_S:.0f} s")
        time.sleep(FAILED_GRACE_S)
        # again until serving has stopped: an interrupt that lands while the server is still
        # starting (a slow, loaded machine) can be swallowed by its start-up
        while not _SERVING_DONE.is_set():
            os.kill(os.getpid(), signal.SIGINT)
            _SERVING_DONE.wait(10.0)
