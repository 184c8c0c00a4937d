"""Time re-encoding random subsets of an encoded survey, with and without posterior samples.

    python benchmarks/bench_reencode.py data/bench1m --stars 2000 20000 --samples 0 8
    python benchmarks/bench_reencode.py data/bench1m --device cuda --stars 100000

Prints one JSON object: per subset size and number of samples, the seconds of the whole
re-encoding (model load and catalog lookup included, as ``chemlatent encode --ids`` prints
it), the encoding seconds alone and spectra/s. Runs are written under the survey's
``latents/runs/`` like any re-encoding; ``--keep`` leaves them there, otherwise they are
deleted.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from chemlatent.bench.runner import machine
from chemlatent.encode.runs import encode_subset, star_ids_of
from chemlatent.io.store import Survey


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("survey", help="an encoded survey directory")
    p.add_argument("--stars", type=int, nargs="+", default=[2000, 20000])
    p.add_argument("--samples", type=int, nargs="+", default=[0, 8])
    p.add_argument("--device", default="cpu")
    p.add_argument("--model", default=None)
    p.add_argument("--seed", type=int, default=42, help="which random stars")
    p.add_argument("--keep", action="store_true", help="keep the runs written")
    args = p.parse_args(argv)
    survey = Survey(args.survey)
    ids = star_ids_of(survey)[0]
    rng = np.random.default_rng(args.seed)
    out: dict = {"benchmark": "reencode", "survey": str(survey.path), "n_stars": survey.n_stars,
                 "device": args.device, "machine": machine(), "runs": []}
    for n in args.stars:
        pick = rng.choice(ids, min(n, ids.size), replace=False)
        for k in args.samples:
            t0 = time.perf_counter()
            info = encode_subset(survey.path, pick, args.model, samples=k, device=args.device)
            dt = time.perf_counter() - t0
            out["runs"].append({"stars": int(pick.size), "samples": k, "seconds": round(dt, 2),
                                "spectra_per_s": round(pick.size / dt),
                                "encode_seconds": round(info.seconds, 2), "median_std": info.median_std})
            if not args.keep:
                info.path.unlink()
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
