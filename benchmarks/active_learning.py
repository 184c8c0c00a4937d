"""Do the user's verdicts make the next candidates better than the static rule's?

A simulated user on an encoded synthetic survey with truth labels: show the 20 best unvetted
stars, vet them by the truth definition of the preset (CEMP: [Fe/H] < -1 and [C/Fe] > +0.7;
APMP: [Fe/H] < -1 and [alpha/Fe] < 0), re-rank, repeat. After each round, the precision of the
next 100 stars of the learned ranking is printed next to the static rule's: the same user
vetting the rule's own order (flagged stars first, then the element score), 100 stars further
down that order.

    python benchmarks/active_learning.py SURVEY [--preset cemp|apmp] [--rounds 10] [--batch 20] [--seeds 3]

The ranking averages bootstrap fits, so each simulated user (``--seeds``) draws other bags;
the learned column is their mean (the "accepted" column is the first user's).

The survey needs latents (``chemlatent encode``) and truth columns (``chemlatent generate``).
Prints a Markdown table (docs/discovery.md has one).
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np


def simulate(survey: str, preset: str, rounds: int, batch: int, next_n: int = 100,
             seed: int = 0) -> tuple[list[dict], dict]:
    from chemlatent.explore.state import ExplorerState
    from chemlatent.explore.survey import SurveyData
    from chemlatent.flags.presets import preset as preset_rule
    from chemlatent.flags.ranking import rank_stars, static_score
    from chemlatent.flags.statistics import truth_mask

    data = SurveyData(survey, load_model=False, db="sqlite://")
    state = ExplorerState(data, preset=preset)  # the page's default thresholds
    frame = data.frame
    truth, known = truth_mask(preset_rule(preset), frame)
    prior = static_score(frame, preset, state.flagged)
    static_order = np.argsort(-prior, kind="stable")
    labels = np.full(len(frame), np.nan)
    rows = []
    for r in range(rounds + 1):
        t0 = time.perf_counter()
        ranking = rank_stars(frame, labels, prior, seed=seed)
        seconds = time.perf_counter() - t0
        n = int(np.isfinite(labels).sum())
        nxt = ranking.order[:next_n]
        static_next = static_order[n:n + next_n]
        rows.append({"verdicts": n, "accepted": int(np.nansum(labels)), "method": ranking.method,
                     "learned": float(truth[nxt].mean()), "static": float(truth[static_next].mean()),
                     "seconds": seconds})
        if r < rounds:
            shown = ranking.order[:batch]
            labels[shown] = truth[shown].astype(float)
    meta = {"stars": len(frame), "true": int(truth.sum()), "flagged": int(state.flagged.sum()),
            "rule_precision": float(truth[state.flagged].mean()) if state.flagged.any() else float("nan"),
            "rule": state.rule.describe()}
    return rows, meta


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("survey")
    p.add_argument("--preset", default="cemp", choices=["cemp", "apmp"])
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--batch", type=int, default=20)
    p.add_argument("--seeds", type=int, default=3,
                   help="simulated users, each with its own bootstrap seed; the table gives the mean")
    args = p.parse_args(argv)
    runs = [simulate(args.survey, args.preset, args.rounds, args.batch, seed=s) for s in range(args.seeds)]
    meta = runs[0][1]
    rows = [dict(r, learned=float(np.mean([run[0][i]["learned"] for run in runs])))
            for i, r in enumerate(runs[0][0])]
    late = [r for r in rows if r["verdicts"] >= 100]
    gain = np.mean([r["learned"] - r["static"] for r in late]) if late else float("nan")
    print(f"{args.preset}: {meta['stars']:,} stars, {meta['true']:,} true by the definition; "
          f"static rule `{meta['rule']}` flags {meta['flagged']:,} (precision {meta['rule_precision']:.2f})")
    print()
    print("| verdicts | accepted | ranking | precision of next 100: learned | static rule |")
    print("| ---: | ---: | --- | ---: | ---: |")
    for r in rows:
        print(f"| {r['verdicts']} | {r['accepted']} | {r['method']} | {r['learned']:.2f} "
              f"| {r['static']:.2f} |")
    print()
    print(f"from 100 verdicts on: learned minus static, mean over rounds: {gain:+.3f} "
          f"(mean of {args.seeds} simulated users)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
