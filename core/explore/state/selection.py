"""The selection on the map: masks, summaries, histograms and stacks."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import param

from chemlatent.explore import selection
from chemlatent.explore.survey import (
    SurveyData,
)


class SelectionState(param.Parameterized):
    """The selected stars (``selected``: a param, so every change is an event)."""

    selection_mode = param.Selector(default="replace", objects=list(selection.MODES))
    selected = param.Array(default=None, allow_None=True, doc="boolean mask of the selected stars")

    data: SurveyData
    message: str
    say: Callable[[str, str], None]

    # -- selection -----------------------------------------------------------
    def _set_selection(self, new: np.ndarray, mode: str | None) -> int:
        combined = selection.combine(self.selected, new, mode or self.selection_mode)
        n = int(np.count_nonzero(combined))
        self.say(f"{n:,} stars selected", "map")
        if self.table_source != "flagged":
            self.page = 1
        self.selected = combined  # the event
        return n

    def select_box(self, bounds, mode: str | None = None) -> int:
        """Select the stars inside ``bounds = (x0, y0, x1, y1)`` on the current axes."""
        x, y = self.xy
        return self._set_selection(selection.box_mask(x, y, bounds), mode)

    def select_lasso(self, geometry, mode: str | None = None) -> int:
        """Select the stars inside a lasso polygon ((n, 2) vertices) on the current axes."""
        x, y = self.xy
        return self._set_selection(selection.lasso_mask(x, y, geometry), mode)

    def select_ids(self, star_ids, mode: str | None = None) -> int:
        new = self.data.frame["star_id"].isin(np.asarray(star_ids, np.int64)).to_numpy()
        return self._set_selection(new, mode)

    def clear_selection(self) -> None:
        self.say("selection cleared", "map")
        self.selected = np.zeros(self.data.n, bool)  # the event

    @property
    def n_selected(self) -> int:
        return int(np.count_nonzero(self.selected))

    SUMMARY_COLUMNS: tuple[str, ...] = ("snr", "chi2", "score", "fe_h", "c_fe", "alpha_fe",
                                        "teff_pred", "logg_pred")

    def _selection_fine(self, column: str):
        """(digest, fine counts of the selection) for a column, cached per selection."""
        cache = self._fine_cache
        if self._fine_for is not self.selected:  # a new selection: forget the old counts
            cache.clear()
            self._fine_for = self.selected
        key = column
        if key not in cache:
            if len(cache) > 64:
                cache.clear()
            d = self.data.digest(column)
            if d is None:
                cache[key] = (None, None)
            elif self.n_selected == 0:  # nothing selected: no pass over the survey
                cache[key] = (d, np.zeros(d.nfine + 2, np.int64))
            else:
                cache[key] = (d, d.fine_counts(self.values(column), self.selected))
        return cache[key]

    def selection_summary(self) -> dict:
        """Count and per-column median/16th/84th percentiles of the selection (one compiled
        pass per column; see :class:`chemlatent.explore.selection.ColumnDigest`)."""
        n = self.n_selected
        out = {"n_selected": n, "n_total": self.data.n, "columns": {}}
        if n == 0:
            return out
        for c in self.SUMMARY_COLUMNS:
            d, fine = self._selection_fine(c)
            if d is None:
                continue
            q, k = d.quantiles(self.values(c), self.selected, fine=fine)
            if k:
                out["columns"][c] = {"median": q[1], "p16": q[0], "p84": q[2], "n": k}
        return out

    def selection_histograms(self, columns=("snr", "score", "fe_h", "c_fe", "alpha_fe")
                             ) -> dict[str, selection.HistogramPair]:
        """The selection's histograms against the whole survey's (30 fixed bins per column)."""
        out = {}
        for c in columns:
            d, fine = self._selection_fine(c)
            if d is not None:
                out[c] = selection.HistogramPair(c, d.edges, d.display(fine), d.display(d.total_fine))
        return out

    def selection_stacks(self, max_stars: int = 300):
        """(selection stack, matched survey stack) at similar predicted Teff/logg."""
        from chemlatent.explore.spectrum import stacked_spectra

        f = self.data.frame
        return stacked_spectra(self.data.survey, f["teff_pred"].to_numpy(), f["logg_pred"].to_numpy(),
                               self.selected, f["row"].to_numpy(), max_stars=max_stars)
