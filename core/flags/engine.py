"""Threshold rules on the chemical latent axes, their counts, FDR control and metrics.

A rule is a small tree: :class:`Cut` leaves combined with :class:`All` (and) and
:class:`AnyOf` (or), plus an optional metallicity ``condition`` (itself a tree, usually one
Fe cut), all JSON-serialisable (:meth:`Rule.to_json` / :func:`rule_from_json`).

Thresholds are signed values in their unit: an ``enhanced`` cut passes when the value is
above the threshold, a ``depleted`` cut when it is below. Units:

- ``sigma``: the standardised position in a frame (see :mod:`chemlatent.flags.anomaly`):
  ``empirical`` (survey median/MAD), ``prior`` (N(0, 1), i.e. z itself) or ``cond``
  (metallicity-conditional, element axes only). Default frame: ``cond`` for c and alpha,
  ``empirical`` for fe.
- ``latent``: raw z.
- ``dex``: calibrated abundance, mapped to a z threshold through the inverse of the linear
  calibration (a negative slope turns "enhanced" into "below" in z). Needs a calibration.

:class:`RuleEngine` holds the survey's columns as contiguous float32 arrays and the
threshold-independent work (reference frame, conditional scores, a z_fe histogram) so that
re-evaluating a rule and its counts is a few vectorised comparisons: well under 100 ms for
10 million stars on 2 cores (see :func:`bench_rules`).

Expected by chance: the sum over stars of the probability that the star would pass the
rule if its chemistry were unremarkable, i.e. if its three latents were an independent
draw from a null distribution, thresholds held at the values they take for that star (they
differ between stars only for metallicity-conditional cuts, whose threshold depends on the
star's z_fe). The null (:data:`NULLS`, described by :func:`null_text`):

- ``"frame"`` (the default): each axis is drawn in the frame its cuts are made in. An axis
  with a sigma cut in the survey frames (``empirical``/``cond``) is drawn from the survey's
  robust Gaussian (median, 1.4826*MAD; the metallicity-conditional one for ``cond`` cuts),
  so "3 sigma" has the tail probability of 3 sigma; an axis cut in raw z, dex or the prior
  frame is drawn from the model prior N(0, 1).
- ``"prior"``: every axis from the model prior N(0, 1) in raw z (with survey-frame sigma cuts
  this overstates the expectation many times: the survey's spread of z is ~0.5).
- ``"empirical"``: every axis from the survey's robust Gaussian.

The probability of any and/or tree is computed exactly for independent axes by splitting
each axis at its thresholds.

FDR (Benjamini-Hochberg at level q): the condition is applied as a filter; each cut of the
expression gives a one-sided normal tail p-value in its frame (latent and dex cuts use the
axis's default frame), ``All`` combines by the maximum (intersection-union test) and
``AnyOf`` by Bonferroni (k * minimum). BH over the stars passing the condition picks the
cutoff p*; the rule actually applied is the same tree with each cut at the sigma level of p*
(``RuleCounts.effective_rule``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import special

from chemlatent.errors import ChemlatentError
from chemlatent.flags.anomaly import AXES, Reference, fit_reference, latent_matrix
from chemlatent.flags.statistics import benjamini_hochberg, precision_recall, tree_probability
from chemlatent.flags.tree import (
    All,
    AnyOf,
    Cut,
    Node,
    Rule,
    iter_cuts,
)
from chemlatent.model.calibration import LABELS, AxisCalibration, Calibration

NULLS: tuple[str, ...] = ("frame", "prior", "empirical")
DEFAULT_NULL = "frame"
NULL_TEXT: dict[str, str] = {
    "frame": "each axis in its cut's frame (survey median/MAD for sigma cuts, prior N(0,1) otherwise)",
    "prior": "model prior N(0,1) on every axis",
    "empirical": "survey median/MAD on every axis",
}


def null_text(null: str) -> str:
    """What a null draws from, in words (for the page and for exports)."""
    return NULL_TEXT[null]
_HIST_BINS = 512


@dataclass
class RuleCounts:
    """What a rule does on a survey."""

    rule: str
    n_stars: int
    n_valid: int
    n_flagged: int
    expected: float
    null: str = DEFAULT_NULL
    fdr: float | None = None
    p_threshold: float | None = None
    fdr_bound: float | None = None
    effective_rule: Rule | None = None
    metrics: dict | None = None
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = {k: getattr(self, k) for k in ("rule", "n_stars", "n_valid", "n_flagged", "expected",
                                            "null", "fdr", "p_threshold", "fdr_bound", "seconds")}
        d["effective_rule"] = self.effective_rule.to_dict() if self.effective_rule else None
        d["metrics"] = self.metrics
        return d

    def summary(self) -> str:
        """One line: flagged N of M, expected by chance E, precision/recall when known."""
        parts = [f"flagged {self.n_flagged:,} of {self.n_stars:,}",
                 f"expected by chance {self.expected:,.1f} (null: {null_text(self.null)})"]
        if self.fdr is not None:
            parts.append(f"FDR q={self.fdr:g} (p <= {self.p_threshold:.3g}, "
                         f"false discoveries <= {self.fdr_bound:,.1f})")
        if self.metrics:
            m = self.metrics
            parts.append(f"precision {m['precision']:.3f}, recall {m['recall']:.3f}, "
                         f"F1 {m['f1']:.3f} against truth ({m['n_true']:,} true)")
        return "; ".join(parts)


@dataclass
class _Leaf:
    """A compiled cut: compare ``values`` with ``thr`` (``greater``: values > thr)."""

    cut: Cut
    values: np.ndarray
    thr: float
    greater: bool
    axes: frozenset


class RuleEngine:
    """Fast repeated rule evaluation over one survey's latents.

    ``z``: (n, 3) posterior means (fe, c, alpha). The reference frame is fitted once (or
    given) and the metallicity-conditional scores are computed on first use.
    """

    def __init__(self, z: np.ndarray, *, reference: Reference | None = None,
                 calibration: Calibration | None = None,
                 star_id: np.ndarray | None = None) -> None:
        z = np.asarray(z)
        if z.ndim != 2 or z.shape[1] != 3:
            raise ValueError(f"z must be (n, 3), got {z.shape}")
        self.z = {a: np.ascontiguousarray(z[:, k], dtype=np.float32) for k, a in enumerate(AXES)}
        self.n = z.shape[0]
        self.ref = reference if reference is not None else fit_reference(z)
        self.calibration = calibration
        self.star_id = None if star_id is None else np.asarray(star_id)
        self._cond: dict[str, np.ndarray] = {}
        self._score: dict[tuple[str, str], np.ndarray] = {}
        self._nvalid: dict[frozenset, int] = {}
        self._hist: dict[frozenset, tuple[np.ndarray, np.ndarray]] = {}

    @classmethod
    def from_latents(cls, latents: pd.DataFrame, *, reference: Reference | None = None,
                     calibration: Calibration | None = None) -> RuleEngine:
        sid = latents["star_id"].to_numpy() if "star_id" in latents.columns else None
        if calibration is not None:
            latents = calibration.corrected_latents(latents)
        return cls(latent_matrix(latents), reference=reference, calibration=calibration,
                   star_id=sid)

    # -- columns -------------------------------------------------------------
    def cond_score(self, axis: str) -> np.ndarray:
        """Metallicity-conditional standardised position of an element axis (cached)."""
        if axis not in self._cond:
            c, s = self.ref.cond_curve(axis, self.z["fe"])
            self._cond[axis] = ((self.z[axis] - c) / s).astype(np.float32)
        return self._cond[axis]

    def score(self, axis: str, frame: str) -> np.ndarray:
        """Standardised position of an axis in a frame (float32)."""
        if frame == "cond":
            return self.cond_score(axis)
        if frame == "prior":
            return self.z[axis]
        key = (axis, frame)
        if key not in self._score:
            k = AXES.index(axis)
            self._score[key] = ((self.z[axis] - np.float32(self.ref.center[k]))
                                / np.float32(self.ref.scale[k])).astype(np.float32)
        return self._score[key]

    def _axis_cal(self, cut: Cut, rule_name: str = "") -> AxisCalibration:
        if self.calibration is None or not self.calibration.has(cut.axis):
            what = f"rule {rule_name!r}" if rule_name else "this rule"
            raise ChemlatentError(
                f"{what} has a threshold in dex on {LABELS[cut.axis]} but the model has no "
                "calibration for it: fit one (chemlatent flag --calibrate, needs reference "
                "abundances) or use sigma thresholds (--sigma S)")
        return self.calibration.axis(cut.axis)

    def _leaf(self, cut: Cut, name: str = "") -> _Leaf:
        axes = frozenset({cut.axis})
        if cut.unit == "latent":
            return _Leaf(cut, self.z[cut.axis], cut.threshold, cut.greater, axes)
        if cut.unit == "dex":
            cal = self._axis_cal(cut, name)
            return _Leaf(cut, self.z[cut.axis], float(cal.to_latent(cut.threshold)),
                         cut.greater == (cal.slope > 0), axes)
        frame = cut.resolved_frame()
        if frame == "prior":
            return _Leaf(cut, self.z[cut.axis], cut.threshold, cut.greater, axes)
        if frame == "empirical":
            k = AXES.index(cut.axis)
            thr = float(self.ref.center[k] + cut.threshold * self.ref.scale[k])
            return _Leaf(cut, self.z[cut.axis], thr, cut.greater, axes)
        return _Leaf(cut, self.cond_score(cut.axis), cut.threshold, cut.greater,
                     axes | {"fe"})

    def _compile(self, node: Node, name: str = "") -> tuple:
        if isinstance(node, Cut):
            return ("cut", self._leaf(node, name))
        kind = "all" if isinstance(node, All) else "any"
        return (kind, [self._compile(i, name) for i in node.items])

    @staticmethod
    def _leaves(c: tuple) -> list[_Leaf]:
        return [c[1]] if c[0] == "cut" else [x for i in c[1] for x in RuleEngine._leaves(i)]

    def _eval(self, c: tuple, override: dict | None = None) -> np.ndarray:
        if c[0] == "cut":
            leaf = c[1]
            if override and id(leaf) in override:
                return np.full(self.n, override[id(leaf)], bool)
            v = leaf.values
            return v > np.float32(leaf.thr) if leaf.greater else v < np.float32(leaf.thr)
        out = self._eval(c[1][0], override)
        op = np.logical_and if c[0] == "all" else np.logical_or
        for item in c[1][1:]:
            op(out, self._eval(item, override), out=out)
        return out

    def n_valid(self, axes: frozenset) -> int:
        """Stars with finite latents on all the given axes (cached)."""
        if axes not in self._nvalid:
            ok = np.ones(self.n, bool)
            for a in axes:
                ok &= np.isfinite(self.z[a])
            self._nvalid[axes] = int(np.count_nonzero(ok))
        return self._nvalid[axes]

    def _fe_hist(self, axes: frozenset) -> tuple[np.ndarray, np.ndarray]:
        """Counts of valid stars in fine z_fe bins and the bin centres (cached)."""
        if axes not in self._hist:
            zf = self.z["fe"]
            ok = np.ones(self.n, bool)
            for a in axes:
                ok &= np.isfinite(self.z[a])
            v = zf[ok]
            if v.size == 0:
                self._hist[axes] = (np.zeros(1), np.zeros(1))
            else:
                lo, hi = float(v.min()), float(v.max())
                hi = hi if hi > lo else lo + 1e-6
                counts, edges = np.histogram(v, bins=_HIST_BINS, range=(lo, hi))
                self._hist[axes] = (counts.astype(np.float64), 0.5 * (edges[1:] + edges[:-1]))
        return self._hist[axes]

    # -- public --------------------------------------------------------------
    def mask(self, rule: Rule | Node) -> np.ndarray:
        """Boolean mask of stars passing the rule (NaN latents never pass a cut)."""
        if isinstance(rule, Rule):
            return self._eval(self._compile(rule.full(), rule.name))
        return self._eval(self._compile(rule))

    def expected(self, rule: Rule | Node, null: str = DEFAULT_NULL) -> float:
        """Number of stars expected to pass by chance (see the module docstring)."""
        if null not in NULLS:
            raise ChemlatentError(f"null must be one of {', '.join(NULLS)}, got {null!r}")
        node = rule.full() if isinstance(rule, Rule) else rule
        comp = self._compile(node, getattr(rule, "name", ""))
        leaves = self._leaves(comp)
        axes = frozenset().union(*[lf.axes for lf in leaves])
        cond_axes = {lf.cut.axis for lf in leaves
                     if lf.cut.unit == "sigma" and lf.cut.resolved_frame() == "cond"}
        survey_axes = {lf.cut.axis for lf in leaves
                       if lf.cut.unit == "sigma" and lf.cut.resolved_frame() in ("cond", "empirical")}
        if cond_axes:
            weights, ctx = self._fe_hist(axes)
        else:
            weights, ctx = np.array([float(self.n_valid(axes))]), np.zeros(1)
        g = ctx.size
        # null distribution of each axis per context (raw z units)
        null_mu, null_sd = {}, {}
        for a in {lf.cut.axis for lf in leaves}:
            k = AXES.index(a)
            if null == "prior" or (null == "frame" and a not in survey_axes):
                null_mu[a], null_sd[a] = np.zeros(g), np.ones(g)
            elif a in cond_axes:
                null_mu[a], null_sd[a] = self.ref.cond_curve(a, ctx)
            else:
                null_mu[a] = np.full(g, self.ref.center[k])
                null_sd[a] = np.full(g, self.ref.scale[k])
        # raw threshold of each leaf per context
        raw = {}
        for lf in leaves:
            if lf.cut.unit == "sigma" and lf.cut.resolved_frame() == "cond":
                c, s = self.ref.cond_curve(lf.cut.axis, ctx)
                raw[id(lf)] = c + lf.thr * s
            else:
                raw[id(lf)] = np.full(g, lf.thr)
        p = tree_probability(comp, leaves, raw, null_mu, null_sd, g)
        return float(np.sum(weights * p))

    def pvalues(self, node: Node, rows: np.ndarray | None = None) -> np.ndarray:
        """Combined one-sided p-value of each star (or of ``rows``) for an expression."""
        if isinstance(node, Cut):
            greater = node.greater
            if node.unit == "dex":
                greater = node.greater == (self._axis_cal(node).slope > 0)
            s = self.score(node.axis, node.resolved_frame())
            s = (s if rows is None else s[rows]).astype(np.float64)
            return special.ndtr(-s) if greater else special.ndtr(s)
        ps = [self.pvalues(i, rows) for i in node.items]
        if isinstance(node, All):
            return np.maximum.reduce(ps)
        return np.minimum(1.0, len(ps) * np.minimum.reduce(ps))

    def fdr_mask(self, rule: Rule, q: float) -> tuple[np.ndarray, float, Rule | None]:
        """Stars passing the condition whose combined p-value survives BH at level q.

        Returns (mask, p cutoff, the equivalent rule with sigma cuts at that cutoff).
        """
        if rule.condition is not None:
            base = self._eval(self._compile(rule.condition, rule.name))
        else:
            base = np.ones(self.n, bool)
        for lf in self._leaves(self._compile(rule.expr, rule.name)):
            base &= np.isfinite(lf.values)
        rows = np.nonzero(base)[0]
        p = self.pvalues(rule.expr, rows)
        rej, pstar = benjamini_hochberg(p, q)
        out = np.zeros(self.n, bool)
        out[rows[rej]] = True
        if pstar <= 0:
            return out, 0.0, None
        eff = Rule(_fdr_node(rule.expr, pstar, self), rule.condition,
                   f"{rule.name} FDR q={q:g}", rule.truth_definition(), rule.description)
        return out, pstar, eff

    def counts(self, rule: Rule, *, fdr: float | None = None, null: str = DEFAULT_NULL,
               truth: np.ndarray | None = None, known: np.ndarray | None = None) -> RuleCounts:
        """Flag count, expected by chance, FDR details and (with truth) precision/recall."""
        t0 = time.perf_counter()
        if fdr is None:
            flagged = self.mask(rule)
            pstar, eff = None, None
            expected = self.expected(rule, null)
        else:
            flagged, pstar, eff = self.fdr_mask(rule, fdr)
            expected = self.expected(eff, null) if eff is not None else 0.0
        nf = int(np.count_nonzero(flagged))
        axes = frozenset().union(*[{c.axis} for c in rule.cuts()])
        metrics = precision_recall(flagged, truth, known) if truth is not None else None
        res = RuleCounts(rule.describe(), self.n, self.n_valid(axes), nf, expected, null, fdr,
                         pstar, None if fdr is None else fdr * nf, eff, metrics,
                         time.perf_counter() - t0)
        res.extra["mask"] = flagged
        return res

    def pr_curve(self, rule: Rule, truth: np.ndarray, known: np.ndarray | None = None,
                 cut: int | None = None, max_points: int = 200) -> dict:
        """Precision-recall as the threshold of one cut moves, the rest of the rule fixed.

        ``cut`` indexes ``rule.cuts()`` (default: the first cut of ``rule.expr``). Sort-based:
        the stars whose verdict depends on that cut are sorted once by its value and the
        confusion counts of every threshold come from cumulative sums. Returns arrays
        ``threshold`` (in the cut's unit; a point flags values >= threshold for enhanced,
        <= for depleted), ``precision``, ``recall``, ``f1``, ``n_flagged``.
        """
        cuts = rule.cuts()
        idx = len(iter_cuts(rule.condition)) if cut is None else int(cut)
        if not 0 <= idx < len(cuts):
            raise ChemlatentError(f"cut index {idx} out of range 0..{len(cuts) - 1}")
        comp = self._compile(rule.full(), rule.name)
        leaf = self._leaves(comp)[idx]
        truth = np.asarray(truth, bool)
        known = np.ones(self.n, bool) if known is None else np.asarray(known, bool)
        r1 = self._eval(comp, {id(leaf): True}) & known
        r0 = self._eval(comp, {id(leaf): False}) & known
        c = leaf.cut
        if c.unit == "dex":
            vals = self._axis_cal(c).to_dex(self.z[c.axis].astype(np.float64))
        elif c.unit == "latent":
            vals = self.z[c.axis].astype(np.float64)
        else:
            vals = self.score(c.axis, c.resolved_frame()).astype(np.float64)
        var = r1 & ~r0 & np.isfinite(vals)
        v, tv = vals[var], truth[var]
        order = np.argsort(-v if c.greater else v, kind="stable")
        v, tv = v[order], tv[order]
        n_fixed = int(np.count_nonzero(r0))
        tp_fixed = int(np.count_nonzero(r0 & truth))
        n_true = int(np.count_nonzero(truth & known))
        tp = tp_fixed + np.cumsum(tv)
        nflag = n_fixed + np.arange(1, v.size + 1)
        # keep the last point of runs of equal values (a threshold flags all ties)
        last = np.ones(v.size, bool)
        last[:-1] = v[1:] != v[:-1]
        tp, nflag, v = tp[last], nflag[last], v[last]
        if v.size > max_points:
            pick = np.unique(np.linspace(0, v.size - 1, max_points).round().astype(int))
            tp, nflag, v = tp[pick], nflag[pick], v[pick]
        precision = tp / np.maximum(nflag, 1)
        recall = tp / n_true if n_true else np.full(tp.shape, np.nan)
        with np.errstate(invalid="ignore", divide="ignore"):
            f1 = 2 * precision * recall / (precision + recall)
        return {"cut": c.to_dict(), "threshold": v, "precision": precision, "recall": recall,
                "f1": f1, "n_flagged": nflag, "n_true": n_true}


def _fdr_node(node: Node, alpha: float, eng: RuleEngine) -> Node:
    """The tree with each cut at the sigma level where its p-value equals its share of alpha."""
    if isinstance(node, Cut):
        greater = node.greater
        if node.unit == "dex":
            greater = node.greater == (eng._axis_cal(node).slope > 0)
        s = float(special.ndtri(1.0 - alpha)) if alpha < 0.5 else -float(special.ndtri(alpha))
        s = float(np.clip(s, -38.0, 38.0))
        return Cut(node.axis, "enhanced" if greater else "depleted", s if greater else -s,
                   "sigma", node.resolved_frame())
    if isinstance(node, All):
        return All(tuple(_fdr_node(i, alpha, eng) for i in node.items))
    return AnyOf(tuple(_fdr_node(i, alpha / len(node.items), eng) for i in node.items))


# --------------------------------------------------------------------------- convenience


def evaluate_rule(latents: pd.DataFrame, rule: Rule, *, calibration: Calibration | None = None,
                  reference: Reference | None = None, fdr: float | None = None,
                  null: str = DEFAULT_NULL, truth: np.ndarray | None = None,
                  known: np.ndarray | None = None) -> RuleCounts:
    """One-shot: build a RuleEngine on ``latents`` and count ``rule`` (mask in .extra)."""
    eng = RuleEngine.from_latents(latents, reference=reference, calibration=calibration)
    return eng.counts(rule, fdr=fdr, null=null, truth=truth, known=known)
