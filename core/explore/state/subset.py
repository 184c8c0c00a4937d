"""Typed subsets: a rule typed as text (``fe < -2 dex and c > 3 sigma(cond)``), parsed by
the command line's own parser (:func:`chemlatent.flags.parser.parse_rule`) and evaluated
by the survey's rule engine, becomes a selection step; a bad expression is an error message,
never an exception."""

from __future__ import annotations

import numpy as np
import param

from chemlatent.errors import ChemlatentError
from chemlatent.explore.survey import SurveyData
from chemlatent.flags.parser import parse_rule


def subset_mask(data: SurveyData, text: str) -> np.ndarray:
    """The stars of ``data`` inside the typed rule (raises ChemlatentError when it is bad)."""
    if not text or not text.strip():
        raise ChemlatentError("type a rule, e.g. fe < -2 dex and c > 3 sigma(cond)")
    rule = parse_rule(text, name="typed")
    try:
        return np.asarray(data.engine.mask(rule), bool)
    except (KeyError, ValueError) as exc:
        raise ChemlatentError(f"cannot evaluate {text!r} ({exc})") from None


class SubsetState(param.Parameterized):
    """The typed rule and its error (empty when the last one applied)."""

    subset_text = param.String(default="", doc="the typed rule")
    subset_error = param.String(default="", doc="why the typed rule was not applied")

    data: SurveyData
    message: str

    def apply_subset(self, text: str | None = None, mode: str | None = None) -> int | None:
        """Select the stars inside the typed rule (combined by ``mode``); None on a bad rule."""
        text = self.subset_text if text is None else text
        try:
            mask = subset_mask(self.data, text)
        except ChemlatentError as exc:
            self.param.update(subset_text=text, subset_error=str(exc))
            return None
        self.param.update(subset_text=text, subset_error="")
        n = self._set_selection(mask, mode)
        self.message = f"{text.strip()}: {int(mask.sum()):,} stars; {n:,} selected"
        return n
