"""Rule re-evaluation benchmark on simulated latents."""

from __future__ import annotations

import os
import time

import numpy as np
import pandas as pd

from chemlatent.flags.engine import RuleEngine
from chemlatent.flags.presets import preset
from chemlatent.flags.statistics import truth_mask
from chemlatent.flags.tree import Cut, Node, Rule
from chemlatent.synth.latents import SIM_CALIBRATION, simulate_latents


def bench_rules(n_stars: int, repeats: int = 7, seed: int = 0) -> dict:
    """Time re-evaluating rules and their counts on ``n_stars`` simulated stars.

    Setup (simulation, reference fit, conditional scores, histograms) is timed apart; the
    reported per-rule times are mask + flag count + expected-by-chance + precision/recall.
    """
    t0 = time.perf_counter()
    z, truth = simulate_latents(n_stars, seed)
    t_sim = time.perf_counter() - t0
    t0 = time.perf_counter()
    eng = RuleEngine(z, calibration=SIM_CALIBRATION)
    rules = {"cemp_dex": preset("cemp"), "cemp_sigma3": preset("cemp", sigma=3.0,
                                                               calibration=SIM_CALIBRATION),
             "apmp_dex": preset("apmp")}
    truths = {}
    for name, r in rules.items():
        truths[name] = truth_mask(r, pd.DataFrame(truth))[0]
        eng.counts(r, truth=truths[name])  # warm the caches
    t_setup = time.perf_counter() - t0
    out: dict = {"n_stars": int(n_stars), "cpu_count": os.cpu_count(), "repeats": repeats,
                 "simulate_s": round(t_sim, 3), "setup_s": round(t_setup, 3), "rules": {}}
    for name, r in rules.items():
        times = []
        res = None
        for i in range(repeats):
            # move the threshold a little each time so that nothing is reused
            rr = Rule(_shift(r.expr, 0.01 * i), r.condition, r.name, r.truth)
            t = time.perf_counter()
            res = eng.counts(rr, truth=truths[name])
            times.append(time.perf_counter() - t)
        out["rules"][name] = {"best_ms": round(1e3 * min(times), 2),
                              "median_ms": round(1e3 * float(np.median(times)), 2),
                              "n_flagged": res.n_flagged, "expected": round(res.expected, 2),
                              "precision": round(res.metrics["precision"], 4),
                              "recall": round(res.metrics["recall"], 4)}
    return out


def _shift(node: Node, d: float) -> Node:
    if isinstance(node, Cut):
        return Cut(node.axis, node.direction, node.threshold + d, node.unit, node.frame)
    return type(node)(tuple(_shift(i, d) for i in node.items))
