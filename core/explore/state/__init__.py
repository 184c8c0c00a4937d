"""One browser session's state (``param.Parameterized``, no GUI import), split by concern:
map axes and picking (:mod:`.map`), selection (:mod:`.selection`), the rule and its flags
(:mod:`.flags`), the candidate table and verdicts (:mod:`.candidates`), exports
(:mod:`.export`) and the URL (:mod:`.url`). Changes are announced as param events on
``selected``, ``flagged``/``counts``, ``picked`` and ``verdicts_changed``.
"""

from __future__ import annotations

import numpy as np
import param

from chemlatent.explore.state.candidates import CandidateState
from chemlatent.explore.state.export import ExportState
from chemlatent.explore.state.flags import FlagState
from chemlatent.explore.state.map import MapState
from chemlatent.explore.state.ranking import RankingState
from chemlatent.explore.state.selection import SelectionState
from chemlatent.explore.state.steps import SelectionStepsState
from chemlatent.explore.state.subset import SubsetState
from chemlatent.explore.state.url import UrlState
from chemlatent.explore.survey import AXIS_COLUMNS, HOVER_COLUMNS, TRUTH_COLUMNS, SurveyData

__all__ = ["ExplorerState", "SurveyData", "HOVER_COLUMNS", "AXIS_COLUMNS", "TRUTH_COLUMNS"]


class ExplorerState(MapState, SelectionState, FlagState, CandidateState, ExportState, UrlState,
                    RankingState, SelectionStepsState, SubsetState):
    """One browser session's view of a :class:`SurveyData` (see module docstring)."""

    message = param.String(default="", doc="last status message for the user")
    message_area = param.String(default="", doc="which controls the last message concerns: "
                                "'map' (selection, picking), 'thresholds' (the rule), '' (other)")

    def __init__(self, data: SurveyData, user: str | None = None, **params) -> None:
        super().__init__(**{k: v for k, v in params.items() if k not in ("x_axis", "y_axis", "color_by")})
        self.data = data
        self.user = user  # the logged-in user, recorded with verdicts (None: the server's user)
        self.param.x_axis.objects = list(data.axis_options)
        self.param.y_axis.objects = list(data.axis_options)
        self.param.color_by.objects = list(data.color_options)
        if data.calibration is None:
            self.param.unit.objects = ["sigma"]
        for k in ("x_axis", "y_axis", "color_by"):
            if k in params:
                setattr(self, k, params[k])
        self._truth_cache: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._fine_cache: dict[str, tuple] = {}
        self._fine_for: np.ndarray | None = None  # the selection the cache was built for
        with param.parameterized.discard_events(self):
            self.selected = np.zeros(data.n, bool)
            self.flagged = np.zeros(data.n, bool)
        self._update_flags(announce=False)

    def say(self, text: str, area: str = "") -> None:
        """Set the status message and the controls it concerns (``message_area``), as one
        event: a page shows it next to those controls as well as in its status line."""
        self.param.update(message_area=area, message=text)

    def set_data(self, data: SurveyData) -> None:
        """Switch to other latents of the same survey (a re-inference run applied, or back):
        the selection and the picked star are kept by star_id; flags are recomputed. The
        changes are announced together once everything is consistent."""
        old_ids = self.data.frame["star_id"].to_numpy()[self.selected]
        self.data = data
        self._truth_cache.clear()
        flagged, counts = self._evaluate_flags()
        picked = self.picked if self.picked is None or data.index_of(self.picked) is not None else None
        self.param.update(selected=data.frame["star_id"].isin(old_ids).to_numpy(),
                          flagged=flagged, counts=counts, picked=picked)
