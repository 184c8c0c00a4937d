"""Rules from JSON or a short text expression (``fe < -1 dex and c > 3 sigma(cond)``)."""

from __future__ import annotations

import re

from chemlatent.errors import ChemlatentError
from chemlatent.flags.tree import All, AnyOf, Cut, Node, Rule, rule_from_json

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
