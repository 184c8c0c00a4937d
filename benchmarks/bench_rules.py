"""Time re-evaluating a threshold rule and its counts on 1M and 10M simulated stars.

    python benchmarks/bench_rules.py                 # 1M and 10M stars
    python benchmarks/bench_rules.py --stars 1000000 # one size

Prints one JSON object: per survey size, the setup time (simulation, reference frame,
conditional scores, caches) and per rule the best and median time of mask + flag count +
expected-by-chance + precision/recall (float32 columns, plain numpy). Target: < 100 ms for
10M stars on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import platform

import numpy as np

from chemlatent import __version__
from chemlatent.bench.rules import bench_rules


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--stars", type=int, nargs="+", default=[1_000_000, 10_000_000])
    p.add_argument("--repeats", type=int, default=7)
    args = p.parse_args(argv)
    out = {"benchmark": "rules", "chemlatent": __version__, "numpy": np.__version__,
           "machine": platform.machine(), "python": platform.python_version(),
           "target_ms_10M": 100, "results": []}
    for n in args.stars:
        out["results"].append(bench_rules(n, repeats=args.repeats))
    worst = max(r["best_ms"] for res in out["results"] for r in res["rules"].values())
    out["worst_best_ms"] = worst
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
