"""Statistics of flagging: Benjamini-Hochberg FDR, precision/recall against truth labels
and the exact expected-by-chance probability of a rule tree under independent normal axes."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
from scipy import special

from chemlatent.errors import ChemlatentError
from chemlatent.flags.tree import All, Cut, Node, Rule, iter_cuts
from chemlatent.model.calibration import DEFAULT_TARGETS


def benjamini_hochberg(p: np.ndarray, q: float) -> tuple[np.ndarray, float]:
    """BH step-up at level q: (rejected mask, p cutoff; 0.0 when nothing is rejected).

    NaN p-values are not tests. Only p <= q can be rejected, so only those are sorted.
    """
    if not 0 < q < 1:
        raise ChemlatentError(f"FDR level must be between 0 and 1, got {q}")
    p = np.asarray(p, dtype=np.float64)
    finite = np.isfinite(p)
    m = int(np.count_nonzero(finite))
    cand = np.sort(p[finite & (p <= q)])
    if cand.size == 0:
        return np.zeros(p.shape, bool), 0.0
    k = np.arange(1, cand.size + 1)
    ok = np.nonzero(cand <= k * q / m)[0]
    if ok.size == 0:
        return np.zeros(p.shape, bool), 0.0
    pstar = float(cand[ok[-1]])
    return finite & (p <= pstar), pstar


def bh_qvalues(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg q-values (adjusted p-values; NaN stays NaN): the smallest FDR
    level at which each test would be rejected."""
    p = np.asarray(p, dtype=np.float64)
    q = np.full(p.shape, np.nan)
    finite = np.flatnonzero(np.isfinite(p))
    m = finite.size
    if m == 0:
        return q
    order = finite[np.argsort(p[finite], kind="stable")]
    ranked = p[order] * m / np.arange(1, m + 1)
    q[order] = np.minimum(1.0, np.minimum.accumulate(ranked[::-1])[::-1])
    return q


def precision_recall(flagged: np.ndarray, truth: np.ndarray,
                     known: np.ndarray | None = None) -> dict:
    """Precision, recall, F1 and the confusion counts over stars with known truth."""
    flagged = np.asarray(flagged, bool)
    truth = np.asarray(truth, bool)
    if known is not None:
        known = np.asarray(known, bool)
        flagged, truth = flagged & known, truth & known
    tp = int(np.count_nonzero(flagged & truth))
    nf = int(np.count_nonzero(flagged))
    nt = int(np.count_nonzero(truth))
    precision = tp / nf if nf else float("nan")
    recall = tp / nt if nt else float("nan")
    f1 = (2 * precision * recall / (precision + recall)
          if nf and nt and (precision + recall) > 0 else float("nan"))
    return {"precision": precision, "recall": recall, "f1": f1, "tp": tp, "fp": nf - tp,
            "fn": nt - tp, "n_true": nt,
            "n_known": int(np.count_nonzero(known)) if known is not None else int(truth.size)}


def truth_mask(rule: Rule | Node, catalog: pd.DataFrame,
               columns: dict[str, str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(truth, known) for the rule's dex definition on truth label columns of ``catalog``.

    ``catalog`` must be row-aligned with the stars evaluated. Raises when the rule has no
    dex definition or the catalog lacks a needed column.
    """
    node = rule.truth_definition() if isinstance(rule, Rule) else rule
    if node is None:
        raise ChemlatentError("this rule has no definition in dex, so truth labels cannot score it")
    cols = dict(DEFAULT_TARGETS if columns is None else columns)
    need = {c.axis for c in iter_cuts(node)}
    missing = [cols[a] for a in need if cols[a] not in catalog.columns]
    if missing:
        raise ChemlatentError(f"the catalog has no truth column {', '.join(missing)}")
    vals = {a: pd.to_numeric(catalog[cols[a]], errors="coerce").to_numpy(np.float64) for a in need}
    known = np.ones(len(catalog), bool)
    for v in vals.values():
        known &= np.isfinite(v)

    def ev(n: Node) -> np.ndarray:
        if isinstance(n, Cut):
            if n.unit != "dex":
                raise ChemlatentError("truth definitions must use dex thresholds")
            v = vals[n.axis]
            return v > n.threshold if n.greater else v < n.threshold
        parts = [ev(i) for i in n.items]
        return np.logical_and.reduce(parts) if isinstance(n, All) else np.logical_or.reduce(parts)

    return ev(node) & known, known


def tree_probability(comp: tuple, leaves: list, raw: dict, mu: dict, sd: dict,
                      g: int) -> np.ndarray:
    """Exact probability of an and/or tree of half-line cuts on independent normal axes.

    Each axis is split into cells at its thresholds (per context); every combination of
    cells across axes is either inside or outside the tree, so the probability is the sum
    of the products of cell probabilities over the combinations inside.
    """
    by_axis: dict[str, list] = {}
    for lf in leaves:
        by_axis.setdefault(lf.cut.axis, []).append(lf)
    axes = sorted(by_axis)
    cells = {}
    for a in axes:
        t = np.sort(np.stack([raw[id(lf)] for lf in by_axis[a]]), axis=0)  # (k, g)
        cdf = special.ndtr((t - mu[a]) / sd[a])
        bounds = np.vstack([np.zeros(g), cdf, np.ones(g)])
        prob = np.diff(bounds, axis=0)  # (k+1, g)
        rep = np.vstack([t[:1] - 1.0, 0.5 * (t[1:] + t[:-1]), t[-1:] + 1.0])
        cells[a] = (prob, rep)

    def ev(c: tuple, point: dict) -> np.ndarray:
        if c[0] == "cut":
            lf = c[1]
            x = point[lf.cut.axis]
            return x > raw[id(lf)] if lf.greater else x < raw[id(lf)]
        parts = [ev(i, point) for i in c[1]]
        return np.logical_and.reduce(parts) if c[0] == "all" else np.logical_or.reduce(parts)

    total = np.zeros(g)
    for combo in itertools.product(*[range(cells[a][0].shape[0]) for a in axes]):
        point = {a: cells[a][1][j] for a, j in zip(axes, combo)}
        inside = ev(comp, point)
        if not inside.any():
            continue
        pr = np.ones(g)
        for a, j in zip(axes, combo):
            pr = pr * cells[a][0][j]
        total += np.where(inside, pr, 0.0)
    return total
