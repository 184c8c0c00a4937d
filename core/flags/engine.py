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

Expected by chance (``null="prior"``, the default): the sum over stars of the probability
that the star would pass the rule if its chemistry were unremarkable, i.e. if its three
latents were an independent draw from the model prior N(0, I), thresholds held at the
values they take for that star (they differ between stars only for metallicity-conditional
cuts, whose threshold depends on the star's z_fe). ``null="empirical"`` draws instead from
the survey's robust Gaussian (median, 1.4826*MAD per axis; the conditional one on element
axes that carry conditional cuts). The probability of any and/or tree is computed exactly
for independent axes by splitting each axis at its thresholds.

FDR (Benjamini-Hochberg at level q): the condition is applied as a filter; each cut of the
expression gives a one-sided normal tail p-value in its frame (latent and dex cuts use the
axis's default frame), ``All`` combines by the maximum (intersection-union test) and
``AnyOf`` by Bonferroni (k * minimum). BH over the stars passing the condition picks the
cutoff p*; the rule actually applied is the same tree with each cut at the sigma level of p*
(``RuleCounts.effective_rule``).
"""

from __future__ import annotations

import itertools
import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Union

import numpy as np
import pandas as pd
from scipy import special

from chemlatent.errors import ChemlatentError
from chemlatent.flags.anomaly import AXES, ELEMENT_AXES, Reference, fit_reference, latent_matrix
from chemlatent.model.calibration import DEFAULT_TARGETS, LABELS, AxisCalibration, Calibration

UNITS: tuple[str, ...] = ("sigma", "latent", "dex")
DIRECTIONS: tuple[str, ...] = ("enhanced", "depleted")
NULLS: tuple[str, ...] = ("prior", "empirical")
DEFAULT_FRAME: dict[str, str] = {"fe": "empirical", "c": "cond", "alpha": "cond"}
_HIST_BINS = 512


# --------------------------------------------------------------------------- rule tree


@dataclass(frozen=True)
class Cut:
    """One threshold: ``axis`` (fe, c, alpha) ``direction`` (enhanced: value > threshold,
    depleted: value < threshold) in ``unit`` (sigma, latent, dex); ``frame`` for sigma."""

    axis: str
    direction: str
    threshold: float
    unit: str = "sigma"
    frame: str | None = None

    def __post_init__(self) -> None:
        if self.axis not in AXES:
            raise ChemlatentError(f"unknown axis {self.axis!r}: use fe, c or alpha")
        if self.direction not in DIRECTIONS:
            raise ChemlatentError(f"unknown direction {self.direction!r}: use enhanced or depleted")
        if self.unit not in UNITS:
            raise ChemlatentError(f"unknown unit {self.unit!r}: use sigma, latent or dex")
        try:
            t = float(self.threshold)
        except (TypeError, ValueError):
            raise ChemlatentError(f"threshold must be a number, got {self.threshold!r}") from None
        if not np.isfinite(t):
            raise ChemlatentError(f"threshold must be finite, got {self.threshold!r}")
        object.__setattr__(self, "threshold", t)
        if self.frame is not None:
            if self.unit != "sigma":
                raise ChemlatentError(f"a frame applies to sigma cuts only (got unit {self.unit})")
            if self.frame not in ("empirical", "prior", "cond"):
                raise ChemlatentError(f"unknown frame {self.frame!r}: use empirical, prior or cond")
            if self.frame == "cond" and self.axis not in ELEMENT_AXES:
                raise ChemlatentError("the metallicity-conditional frame applies to c and alpha only")

    @property
    def greater(self) -> bool:
        return self.direction == "enhanced"

    def resolved_frame(self) -> str:
        """The frame of a sigma cut, or the frame used for its p-value otherwise."""
        return self.frame or DEFAULT_FRAME[self.axis]

    def describe(self) -> str:
        op = ">" if self.greater else "<"
        if self.unit == "dex":
            return f"{LABELS[self.axis]} {op} {self.threshold:+g}"
        if self.unit == "latent":
            return f"z_{self.axis} {op} {self.threshold:+g}"
        frame = self.resolved_frame()
        what = {"empirical": "survey", "prior": "prior", "cond": "at its z_fe"}[frame]
        return f"z_{self.axis} {op} {self.threshold:+g} sigma ({what})"

    def to_dict(self) -> dict:
        d = {"type": "cut", "axis": self.axis, "direction": self.direction,
             "threshold": self.threshold, "unit": self.unit}
        if self.frame is not None:
            d["frame"] = self.frame
        return d


@dataclass(frozen=True)
class All:
    """All items pass (and)."""

    items: tuple

    def __post_init__(self) -> None:
        object.__setattr__(self, "items", tuple(self.items))
        if not self.items:
            raise ChemlatentError("an 'all' combination needs at least one item")

    def describe(self) -> str:
        return " and ".join(_paren(i) for i in self.items)

    def to_dict(self) -> dict:
        return {"type": "all", "items": [i.to_dict() for i in self.items]}


@dataclass(frozen=True)
class AnyOf:
    """At least one item passes (or)."""

    items: tuple

    def __post_init__(self) -> None:
        object.__setattr__(self, "items", tuple(self.items))
        if not self.items:
            raise ChemlatentError("an 'any' combination needs at least one item")

    def describe(self) -> str:
        return " or ".join(_paren(i) for i in self.items)

    def to_dict(self) -> dict:
        return {"type": "any", "items": [i.to_dict() for i in self.items]}


Any = AnyOf  # the "All/Any" spelling; AnyOf avoids shadowing typing.Any in user code
Node = Union[Cut, All, AnyOf]  # noqa: UP007 (isinstance-friendly on 3.10)


def _paren(node: Node) -> str:
    return node.describe() if isinstance(node, Cut) else f"({node.describe()})"


def node_from_dict(d: dict) -> Node:
    """Inverse of ``to_dict`` for Cut / All / AnyOf."""
    if not isinstance(d, dict):
        raise ChemlatentError(f"rule node must be an object, got {type(d).__name__}")
    kind = d.get("type", "cut" if "axis" in d else None)
    if kind == "cut":
        unknown = set(d) - {"type", "axis", "direction", "threshold", "unit", "frame"}
        if unknown:
            raise ChemlatentError(f"unknown key(s) in cut: {', '.join(sorted(unknown))}")
        try:
            return Cut(d["axis"], d["direction"], d["threshold"], d.get("unit", "sigma"),
                       d.get("frame"))
        except KeyError as exc:
            raise ChemlatentError(f"cut lacks {exc.args[0]!r}") from None
    if kind in ("all", "any"):
        items = d.get("items")
        if not isinstance(items, list):
            raise ChemlatentError(f"'{kind}' needs a list of items")
        cls = All if kind == "all" else AnyOf
        return cls(tuple(node_from_dict(i) for i in items))
    raise ChemlatentError(f"unknown rule node type {kind!r}: use cut, all or any")


def iter_cuts(node: Node | None) -> list[Cut]:
    """The cuts of a tree, depth first."""
    if node is None:
        return []
    if isinstance(node, Cut):
        return [node]
    return [c for i in node.items for c in iter_cuts(i)]


@dataclass(frozen=True)
class Rule:
    """A named selection: ``condition`` (filter, e.g. the metallicity condition) and
    ``expr`` (the tested cuts). ``truth``: a dex definition evaluated on truth labels for
    precision/recall (presets carry the paper's definition)."""

    expr: Node
    condition: Node | None = None
    name: str = "custom"
    truth: Node | None = None
    description: str = ""

    def full(self) -> Node:
        """Condition and expression as one tree."""
        return self.expr if self.condition is None else All((self.condition, self.expr))

    def cuts(self) -> list[Cut]:
        """Condition cuts first, then expression cuts (the index used by ``pr_curve``)."""
        return iter_cuts(self.condition) + iter_cuts(self.expr)

    def describe(self) -> str:
        text = self.full().describe()
        return f"{self.name}: {text}" if self.name else text

    def truth_definition(self) -> Node | None:
        """What the rule means on truth labels: ``truth``, else the rule if all in dex."""
        if self.truth is not None:
            return self.truth
        full = self.full()
        return full if all(c.unit == "dex" for c in iter_cuts(full)) else None

    def to_dict(self) -> dict:
        d: dict = {"type": "rule", "version": 1, "name": self.name, "expr": self.expr.to_dict()}
        if self.condition is not None:
            d["condition"] = self.condition.to_dict()
        if self.truth is not None:
            d["truth"] = self.truth.to_dict()
        if self.description:
            d["description"] = self.description
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> Rule:
        if not isinstance(d, dict):
            raise ChemlatentError("a rule must be a JSON object")
        if d.get("type", "rule") != "rule" or "expr" not in d:
            # a bare node is accepted as a rule without condition
            return cls(node_from_dict(d))
        return cls(
            expr=node_from_dict(d["expr"]),
            condition=node_from_dict(d["condition"]) if d.get("condition") else None,
            name=str(d.get("name", "custom")),
            truth=node_from_dict(d["truth"]) if d.get("truth") else None,
            description=str(d.get("description", "")),
        )


def rule_from_json(text: str | dict) -> Rule:
    """A Rule from its JSON text (or the decoded dict)."""
    if isinstance(text, dict):
        return Rule.from_dict(text)
    try:
        data = json.loads(text)
    except (TypeError, ValueError) as exc:
        raise ChemlatentError(f"rule is not valid JSON ({exc})") from None
    return Rule.from_dict(data)


_TOKEN = re.compile(r"\s*(\(|\)|&|\||\band\b|\bor\b|[a-z_]+\s*[<>]\s*[-+]?[0-9.]+(?:e[-+]?\d+)?"
                    r"\s*(?:dex|sigma|latent)?(?:\s*\(\s*(?:empirical|prior|cond)\s*\))?)",
                    re.IGNORECASE)
_CUT = re.compile(r"(?P<axis>[a-z_]+)\s*(?P<op>[<>])\s*(?P<t>[-+]?[0-9.]+(?:e[-+]?\d+)?)\s*"
                  r"(?P<unit>dex|sigma|latent)?(?:\s*\(\s*(?P<frame>empirical|prior|cond)\s*\))?",
                  re.IGNORECASE)
_AXIS_NAMES = {"fe": "fe", "z_fe": "fe", "fe_h": "fe", "feh": "fe", "c": "c", "z_c": "c",
               "c_fe": "c", "cfe": "c", "alpha": "alpha", "z_alpha": "alpha",
               "alpha_fe": "alpha", "afe": "alpha"}


def parse_rule(text: str, name: str = "custom") -> Rule:
    """A Rule from JSON or a short expression such as ``fe < -1 dex and c > 3 sigma(cond)``.

    Cuts: ``AXIS OP NUMBER [dex|sigma|latent] [(empirical|prior|cond)]`` (unit default
    sigma); combine with ``and``/``&``, ``or``/``|`` and parentheses (and binds tighter).
    """
    text = text.strip()
    if text.startswith("{"):
        return rule_from_json(text)
    pos, tokens = 0, []
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or not m.group(1):
            if text[pos:].strip() == "":
                break
            raise ChemlatentError(f"cannot read rule at {text[pos:pos + 20]!r}")
        tokens.append(m.group(1).strip())
        pos = m.end()

    def cut(tok: str) -> Cut:
        m = _CUT.fullmatch(tok)
        axis = _AXIS_NAMES.get(m.group("axis").lower())
        if axis is None:
            raise ChemlatentError(f"unknown axis {m.group('axis')!r}: use fe, c or alpha")
        return Cut(axis, "enhanced" if m.group("op") == ">" else "depleted", float(m.group("t")),
                   (m.group("unit") or "sigma").lower(),
                   m.group("frame").lower() if m.group("frame") else None)

    def parse_or(i: int) -> tuple[Node, int]:
        items = []
        node, i = parse_and(i)
        items.append(node)
        while i < len(tokens) and tokens[i].lower() in ("or", "|"):
            node, i = parse_and(i + 1)
            items.append(node)
        return (items[0] if len(items) == 1 else AnyOf(tuple(items))), i

    def parse_and(i: int) -> tuple[Node, int]:
        items = []
        node, i = parse_atom(i)
        items.append(node)
        while i < len(tokens) and tokens[i].lower() in ("and", "&"):
            node, i = parse_atom(i + 1)
            items.append(node)
        return (items[0] if len(items) == 1 else All(tuple(items))), i

    def parse_atom(i: int) -> tuple[Node, int]:
        if i >= len(tokens):
            raise ChemlatentError("rule ends too early")
        if tokens[i] == "(":
            node, i = parse_or(i + 1)
            if i >= len(tokens) or tokens[i] != ")":
                raise ChemlatentError("unbalanced parentheses in rule")
            return node, i + 1
        if _CUT.fullmatch(tokens[i]):
            return cut(tokens[i]), i + 1
        raise ChemlatentError(f"expected a cut, got {tokens[i]!r}")

    if not tokens:
        raise ChemlatentError("empty rule")
    node, i = parse_or(0)
    if i != len(tokens):
        raise ChemlatentError(f"unexpected {tokens[i]!r} in rule")
    return Rule(node, name=name)


# --------------------------------------------------------------------------- presets

PRESETS: dict[str, dict] = {
    "cemp": {
        "element": Cut("c", "enhanced", 0.7, "dex"),
        "description": "carbon-enhanced metal-poor: [Fe/H] < -1 and [C/Fe] > +0.7",
    },
    "apmp": {
        "element": Cut("alpha", "depleted", 0.0, "dex"),
        "description": "alpha-poor metal-poor: [Fe/H] < -1 and [alpha/Fe] < 0",
    },
}
METAL_POOR = Cut("fe", "depleted", -1.0, "dex")


def preset(name: str, *, sigma: float | None = None, calibration: Calibration | None = None,
           fe_sigma: float = 1.0) -> Rule:
    """The paper's CEMP / APMP definitions as a Rule.

    Without ``sigma``: the dex cuts (need a calibration to evaluate). With ``sigma`` S:
    the element cut becomes ``S`` sigma in the metallicity-conditional frame (enhanced: >
    +S, depleted: < -S); the Fe condition stays [Fe/H] < -1 dex when ``calibration`` has an
    fe axis, else becomes z_fe < -``fe_sigma`` sigma in the survey frame. ``truth`` is
    always the dex definition.
    """
    key = name.lower()
    if key not in PRESETS:
        raise ChemlatentError(f"unknown preset {name!r}: built in are {', '.join(PRESETS)}")
    spec = PRESETS[key]
    element: Cut = spec["element"]
    truth = All((METAL_POOR, element))
    if sigma is None:
        return Rule(element, METAL_POOR, key, truth, spec["description"])
    s = float(sigma)
    if not (s > 0 and np.isfinite(s)):
        raise ChemlatentError(f"--sigma must be a positive number, got {sigma}")
    cut = Cut(element.axis, element.direction, s if element.greater else -s, "sigma", "cond")
    if calibration is not None and calibration.has("fe"):
        cond = METAL_POOR
    else:
        cond = Cut("fe", "depleted", -abs(float(fe_sigma)), "sigma", "empirical")
    return Rule(cut, cond, key, truth, spec["description"] + f" (element cut at {s:g} sigma)")


# --------------------------------------------------------------------------- metrics


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


# --------------------------------------------------------------------------- engine


@dataclass
class RuleCounts:
    """What a rule does on a survey."""

    rule: str
    n_stars: int
    n_valid: int
    n_flagged: int
    expected: float
    null: str = "prior"
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
                 f"expected by chance {self.expected:,.1f} (under the {self.null})"]
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

    def expected(self, rule: Rule | Node, null: str = "prior") -> float:
        """Number of stars expected to pass by chance (see the module docstring)."""
        if null not in NULLS:
            raise ChemlatentError(f"null must be one of {', '.join(NULLS)}, got {null!r}")
        node = rule.full() if isinstance(rule, Rule) else rule
        comp = self._compile(node, getattr(rule, "name", ""))
        leaves = self._leaves(comp)
        axes = frozenset().union(*[lf.axes for lf in leaves])
        cond_axes = {lf.cut.axis for lf in leaves
                     if lf.cut.unit == "sigma" and lf.cut.resolved_frame() == "cond"}
        if cond_axes:
            weights, ctx = self._fe_hist(axes)
        else:
            weights, ctx = np.array([float(self.n_valid(axes))]), np.zeros(1)
        g = ctx.size
        # null distribution of each axis per context (raw z units)
        null_mu, null_sd = {}, {}
        for a in {lf.cut.axis for lf in leaves}:
            k = AXES.index(a)
            if null == "prior":
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
        p = _tree_probability(comp, leaves, raw, null_mu, null_sd, g)
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

    def counts(self, rule: Rule, *, fdr: float | None = None, null: str = "prior",
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


def _tree_probability(comp: tuple, leaves: list[_Leaf], raw: dict, mu: dict, sd: dict,
                      g: int) -> np.ndarray:
    """Exact probability of an and/or tree of half-line cuts on independent normal axes.

    Each axis is split into cells at its thresholds (per context); every combination of
    cells across axes is either inside or outside the tree, so the probability is the sum
    of the products of cell probabilities over the combinations inside.
    """
    by_axis: dict[str, list[_Leaf]] = {}
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


# --------------------------------------------------------------------------- convenience


def evaluate_rule(latents: pd.DataFrame, rule: Rule, *, calibration: Calibration | None = None,
                  reference: Reference | None = None, fdr: float | None = None,
                  null: str = "prior", truth: np.ndarray | None = None,
                  known: np.ndarray | None = None) -> RuleCounts:
    """One-shot: build a RuleEngine on ``latents`` and count ``rule`` (mask in .extra)."""
    eng = RuleEngine.from_latents(latents, reference=reference, calibration=calibration)
    return eng.counts(rule, fdr=fdr, null=null, truth=truth, known=known)


def simulate_latents(n_stars: int, seed: int = 0, cemp_fraction: float = 0.02
                     ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Seeded simulated survey: (z (n, 3) float32, truth dict fe_h/c_fe/alpha_fe float32).

    A disc/halo mixture in [Fe/H] with alpha enhancement at low metallicity and a planted
    carbon-enhanced metal-poor population; z = (dex - mean) / scale + posterior noise.
    """
    rng = np.random.default_rng(seed)
    n = int(n_stars)
    halo = rng.random(n) < 0.35
    fe = np.where(halo, rng.normal(-1.6, 0.5, n), rng.normal(-0.3, 0.3, n)).astype(np.float32)
    alpha = np.where(fe < -1, 0.3, 0.3 * np.clip(-fe, 0, 1)) + rng.normal(0, 0.08, n)
    alpha[halo & (rng.random(n) < 0.05)] -= 0.4  # alpha-poor metal-poor minority
    c = rng.normal(0.0, 0.2, n)
    cemp = (fe < -1.0) & (rng.random(n) < cemp_fraction / 0.3)
    c[cemp] = rng.uniform(0.8, 2.5, int(cemp.sum()))
    truth = {"fe_h": fe, "c_fe": c.astype(np.float32), "alpha_fe": alpha.astype(np.float32)}
    z = np.empty((n, 3), np.float32)
    # roughly N(0, 1) aggregate, like a trained VAE's posterior means
    z[:, 0] = (fe + 0.75) / 0.73 + rng.normal(0, 0.15, n)
    z[:, 1] = c / 0.2 + rng.normal(0, 0.2, n)
    z[:, 2] = (alpha - 0.15) / 0.15 + rng.normal(0, 0.3, n)
    return z, truth


def simulate_tables(n_stars: int, seed: int = 0, cemp_fraction: float = 0.02
                    ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(latents, catalog) DataFrames in the survey contract from :func:`simulate_latents`."""
    z, truth = simulate_latents(n_stars, seed, cemp_fraction)
    rng = np.random.default_rng(seed + 1)
    n = z.shape[0]
    sid = np.arange(1, n + 1, dtype=np.int64) * 7
    lat = pd.DataFrame({"star_id": sid, "z_fe": z[:, 0], "z_c": z[:, 1], "z_alpha": z[:, 2]})
    for a, s in (("fe", 0.15), ("c", 0.2), ("alpha", 0.3)):
        lat[f"z_{a}_std"] = np.float32(s) * rng.uniform(0.8, 1.2, n).astype(np.float32)
    lat["w_0"] = rng.normal(0, 1, n).astype(np.float32)
    lat["w_1"] = rng.normal(0, 1, n).astype(np.float32)
    lat["teff_pred"] = rng.normal(5000, 600, n).astype(np.float32)
    lat["logg_pred"] = rng.normal(3.0, 1.0, n).astype(np.float32)
    lat["chi2"] = rng.gamma(20, 1 / 20, n).astype(np.float32)
    lat["run"] = "sim-0"
    pop = np.where(truth["c_fe"] > 0.7, "cemp", np.where(truth["fe_h"] < -1, "halo", "disc"))
    cat = pd.DataFrame({"star_id": sid, "snr": rng.uniform(10, 90, n).astype(np.float32),
                        "ra": rng.uniform(0, 360, n), "dec": np.degrees(np.arcsin(rng.uniform(-1, 1, n))),
                        "teff": lat["teff_pred"] + rng.normal(0, 50, n).astype(np.float32),
                        "logg": lat["logg_pred"], **truth, "population": pop})
    return lat, cat


SIM_CALIBRATION = Calibration({
    "fe": AxisCalibration("fe_h", 0.73, -0.75, 0.1, 0, "simulation"),
    "c": AxisCalibration("c_fe", 0.2, 0.0, 0.04, 0, "simulation"),
    "alpha": AxisCalibration("alpha_fe", 0.15, 0.15, 0.05, 0, "simulation"),
})


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


# --------------------------------------------------------------------------- survey workflow


@dataclass
class LatentsInfo:
    """Where a survey's latents are and which model produced them."""

    path: Path
    model_name: str
    model_dir: Path | None
    note: str = ""


def find_latents(survey_dir, model: str | None = None) -> LatentsInfo:
    """Locate ``DIR/latents/<model>.parquet`` and the model directory.

    ``model``: a model directory (its name picks the latents file) or a model name. Without
    it: the only latents file, or the newest one (with a note naming the others). The
    parquet's key-value metadata ``model_dir`` / ``model_name`` are used when present.
    """
    from chemlatent.io.store import LATENTS_DIR

    survey_dir = Path(survey_dir)
    if not survey_dir.is_dir():
        raise ChemlatentError(f"{survey_dir} is not a survey directory (it does not exist)")
    ldir = survey_dir / LATENTS_DIR
    files = sorted(ldir.glob("*.parquet")) if ldir.is_dir() else []
    files = [f for f in files if not f.name.startswith(".")]
    names = [f.stem for f in files]
    model_dir = None
    note = ""
    if model is not None:
        mpath = Path(model)
        if mpath.is_dir():
            model_dir = mpath
            name = mpath.resolve().name
        else:
            name = model[:-8] if model.endswith(".parquet") else model
        path = ldir / f"{name}.parquet"
        if not path.exists():
            if not files:
                raise ChemlatentError("no latents for this survey: run chemlatent encode DIR first")
            raise ChemlatentError(f"no latents for model {name!r} in {ldir}; "
                                  f"there are: {', '.join(names)}")
    else:
        if not files:
            raise ChemlatentError("no latents for this survey: run chemlatent encode DIR first")
        if len(files) == 1:
            path = files[0]
        else:
            mt = [f.stat().st_mtime for f in files]
            newest = int(np.argmax(mt))
            if sum(1 for m in mt if m == mt[newest]) > 1:
                raise ChemlatentError(f"several latents files in {ldir} ({', '.join(names)}): "
                                      "choose one with --model NAME")
            path = files[newest]
            note = (f"using the newest latents {path.stem!r} "
                    f"(also: {', '.join(n for n in names if n != path.stem)}; pick with --model)")
        name = path.stem
    meta = latents_metadata(path)
    if model_dir is None and meta.get("model_dir"):
        cand = Path(str(meta["model_dir"]))
        for c in (cand, survey_dir / cand):
            if c.is_dir():
                model_dir = c
                break
        else:
            note = (note + "; " if note else "") + (
                f"model directory {cand} named by the latents is not here: no calibration")
    return LatentsInfo(path, str(meta.get("model_name") or name), model_dir, note)


def latents_metadata(path) -> dict:
    """The parquet key-value metadata (JSON values decoded), without pandas' own entry."""
    import pyarrow.parquet as pq

    try:
        raw = pq.read_schema(path).metadata or {}
    except Exception as exc:
        raise ChemlatentError(f"{path} is not a readable parquet file ({exc})") from None
    out = {}
    for k, v in raw.items():
        key = k.decode(errors="replace")
        if key == "pandas" or key.startswith("ARROW:"):
            continue
        text = v.decode(errors="replace")
        try:
            out[key] = json.loads(text)
        except ValueError:
            out[key] = text
    # ``chemlatent encode`` stores its provenance as one JSON object under "chemlatent"
    nested = out.pop("chemlatent", None)
    if isinstance(nested, dict):
        out = {**nested, **out}
    return out


def read_latents(path) -> pd.DataFrame:
    """The latents table, one row per star (the last row wins when re-inference added runs)."""
    try:
        df = pd.read_parquet(path)
    except Exception as exc:
        raise ChemlatentError(f"{path} is not a readable latents table ({exc})") from None
    missing = [c for c in ("star_id", "z_fe", "z_c", "z_alpha") if c not in df.columns]
    if missing:
        raise ChemlatentError(f"{path} lacks column(s) {', '.join(missing)}")
    if df["star_id"].duplicated().any():
        df = df.drop_duplicates("star_id", keep="last")
    for c in df.columns:  # repeated labels (the run name) as categories: 1 byte a star, not ~35
        if c != "star_id" and (df[c].dtype == object or pd.api.types.is_string_dtype(df[c])):
            df[c] = df[c].astype("category")
    return df.reset_index(drop=True)
