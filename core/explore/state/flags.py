"""The active rule: preset, unit and thresholds, the flagged stars and their counts."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import param

from chemlatent.errors import ChemlatentError
from chemlatent.explore.survey import (
    DEFAULT_ELEMENT_DEX,
    PRESET_NAMES,
    SurveyData,
)
from chemlatent.flags.engine import RuleCounts, null_text
from chemlatent.flags.pipeline import flag_stars, truth_for
from chemlatent.flags.presets import preset as preset_rule
from chemlatent.flags.tree import Rule


class FlagState(param.Parameterized):
    """Rule thresholds; ``flagged`` and ``counts`` are params updated together (one event)."""

    preset = param.Selector(default="cemp", objects=list(PRESET_NAMES))
    unit = param.Selector(default="sigma", objects=["sigma", "dex"])
    element_sigma = param.Number(default=3.0, bounds=(0.5, 10.0), step=0.1,
                                 doc="element cut (metallicity-conditional sigma)")
    fe_sigma = param.Number(default=1.0, bounds=(0.0, 5.0), step=0.1,
                            doc="metal-poor: z_fe below the survey median by this many sigma")
    element_dex = param.Number(default=0.7, bounds=(-1.5, 3.0), step=0.05,
                               doc="element cut in dex ([C/Fe] > t or [alpha/Fe] < t)")
    fe_dex = param.Number(default=-1.0, bounds=(-4.0, 0.5), step=0.05, doc="[Fe/H] < t")
    flagged = param.Array(default=None, allow_None=True, doc="boolean mask of the flagged stars")
    counts = param.ClassSelector(class_=RuleCounts, default=None, allow_None=True,
                                 doc="what the active rule does (None: no rule)")

    data: SurveyData
    message: str
    say: Callable[[str, str], None]

    # -- rules ---------------------------------------------------------------
    @property
    def rule(self) -> Rule | None:
        """The active rule from the preset and the thresholds (None for preset 'none'),
        built by the same :func:`chemlatent.flags.presets.preset` as ``chemlatent flag``."""
        if self.preset == "none":
            return None
        if self.unit == "dex":
            return preset_rule(self.preset, element_dex=float(self.element_dex), fe_dex=float(self.fe_dex))
        return preset_rule(self.preset, sigma=float(self.element_sigma), calibration=self.data.calibration,
                           fe_sigma=float(self.fe_sigma), fe_dex=float(self.fe_dex))

    @property
    def fe_in_dex(self) -> bool:
        """Whether the metal-poor condition is in dex in every unit (a calibrated Fe axis)."""
        cal = self.data.calibration
        return cal is not None and cal.has("fe")

    def _truth(self, rule: Rule):
        if not self.data.truth_available:
            return None, None
        key = rule.truth_definition().describe() if rule.truth_definition() is not None else ""
        if key not in self._truth_cache:
            truth, known = truth_for(rule, self.data.frame)
            if truth is None:
                return None, None
            self._truth_cache[key] = (truth, known)
        return self._truth_cache[key]

    def _evaluate_flags(self) -> tuple[np.ndarray, RuleCounts | None]:
        """(flagged mask, counts) of the active rule on the current data."""
        rule = self.rule
        if rule is None:
            return np.zeros(self.data.n, bool), None
        truth, known = self._truth(rule)
        try:
            counts = flag_stars(self.data.engine, rule, truth=truth, known=known)
        except ChemlatentError as exc:
            self.say(str(exc), "thresholds")
            return np.zeros(self.data.n, bool), None
        return counts.extra["mask"], counts

    @param.depends("preset", "unit", "element_sigma", "fe_sigma", "element_dex", "fe_dex", watch=True)
    def _update_flags(self, announce: bool = True) -> None:
        flagged, counts = self._evaluate_flags()
        if self.table_source != "selection":
            self.page = 1
        self.param.update(flagged=flagged, counts=counts)  # one event for both
        if announce and counts is not None:
            self.say(f"{int(np.count_nonzero(flagged)):,} stars flagged", "thresholds")

    @param.depends("preset", watch=True)
    def _preset_defaults(self) -> None:
        if self.preset in DEFAULT_ELEMENT_DEX:
            self.element_dex = DEFAULT_ELEMENT_DEX[self.preset]

    @property
    def n_flagged(self) -> int:
        return int(np.count_nonzero(self.flagged))

    def counts_summary(self) -> dict:
        """Flagged, expected by chance, and precision/recall when truth labels are known."""
        if self.counts is None:
            return {"rule": "none", "n_flagged": 0, "n_stars": self.data.n, "expected": 0.0}
        c = self.counts
        out = {"rule": self.rule.describe(), "n_flagged": c.n_flagged, "n_stars": c.n_stars,
               "expected": float(c.expected), "null": c.null, "null_text": null_text(c.null),
               "seconds": c.seconds}
        if c.metrics:
            out.update(precision=c.metrics["precision"], recall=c.metrics["recall"],
                       f1=c.metrics["f1"], n_true=c.metrics["n_true"])
        return out
