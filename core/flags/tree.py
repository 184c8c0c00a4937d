"""The rule tree: :class:`Cut` leaves combined with :class:`All` (and) and :class:`AnyOf`
(or), and :class:`Rule` (an expression plus an optional metallicity ``condition`` and a dex
``truth`` definition), all JSON-serialisable.

Thresholds are signed values in their unit (``sigma``, ``latent`` or ``dex``); an
``enhanced`` cut passes above its threshold, a ``depleted`` cut below. See
:mod:`chemlatent.flags.engine` for how each unit is evaluated.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Union

import numpy as np

from chemlatent.errors import ChemlatentError
from chemlatent.flags.anomaly import AXES, ELEMENT_AXES
from chemlatent.model.calibration import LABELS

UNITS: tuple[str, ...] = ("sigma", "latent", "dex")
DIRECTIONS: tuple[str, ...] = ("enhanced", "depleted")
DEFAULT_FRAME: dict[str, str] = {"fe": "empirical", "c": "cond", "alpha": "cond"}

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
