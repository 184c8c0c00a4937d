"""``chemlatent bench [--stars N] --json``: measure the speed targets on this machine."""

from __future__ import annotations

import json
from pathlib import Path

from chemlatent.app.cli.options import bounded_int

HELP = "measure generator, store, encoder and rule speeds on this machine"
PARTS = ["generate", "store", "encode", "rules", "dashboard"]


def add_arguments(p) -> None:
    p.add_argument("--stars", type=bounded_int(1, 10_000_000), default=100_000,
                   help="survey size to generate (default 100k, at most 10M: ~85 GB on disk)")
    p.add_argument("--model", default=None, help="model directory (default: the bundled model)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--only", default=",".join(PARTS), help=f"comma-separated subset of {','.join(PARTS)}")
    p.add_argument("--survey", default=None,
                   help="time the dashboard on this encoded survey instead of the generated one")
    p.add_argument("--copies", type=bounded_int(1, 100), default=1,
                   help="with --survey: time a session of this many jittered copies of every star "
                        "(10 turns a 1M-star survey into a 10M-star session)")
    p.add_argument("--workdir", default=None, help="where to put the temporary survey (default: system temp)")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def run(args) -> int:
    from chemlatent.bench.runner import run_benchmarks
    from chemlatent.errors import ChemlatentError

    only = [p.strip() for p in args.only.split(",") if p.strip()]
    bad = [p for p in only if p not in PARTS]
    if bad or not only:
        raise ChemlatentError(f"unknown benchmark {(bad or [args.only])[0]!r}: "
                              f"choose from {', '.join(PARTS)}")
    if args.workdir and Path(args.workdir).exists() and not Path(args.workdir).is_dir():
        raise ChemlatentError(f"--workdir {args.workdir} is a file; give a directory")
    if args.copies > 1 and not args.survey:
        raise ChemlatentError("--copies applies with --survey only")
    if args.survey:
        from chemlatent.bench.runner import bench_dashboard, machine

        res = {"machine": machine(), "dashboard": bench_dashboard(args.survey, copies=args.copies)}
    else:
        res = run_benchmarks(args.stars, args.model, args.workdir, args.device, only)
    if args.json:
        print(json.dumps(res))
    else:
        for k, v in res.items():
            print(f"{k}: {v}")
    return 0
