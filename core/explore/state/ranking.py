"""The candidate table's "best next" source: unvetted stars ranked by what the session's
verdicts taught (:func:`chemlatent.flags.ranking.rank_frame`, as ``chemlatent rank``)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import param

from chemlatent.errors import ChemlatentError
from chemlatent.explore.survey import SurveyData
from chemlatent.flags.ranking import Ranking, rank_frame

BEST_NEXT = "best next"


class RankingState(param.Parameterized):
    """The learned ranking, recomputed when verdicts, flags or the preset change."""

    best_next_size = param.Integer(default=200, bounds=(1, 100_000),
                                   doc="how many of the best unvetted stars the table shows")

    data: SurveyData
    message: str

    def ranking(self) -> Ranking | None:
        """The current ranking (cached until the verdicts, the flags or the data change)."""
        try:
            verdicts = self.data.store.verdicts()
        except ChemlatentError as exc:
            self.message = str(exc)
            return None
        key = (id(self.data), self.preset, id(self.flagged), len(verdicts),
               int(verdicts["id"].max()) if len(verdicts) else 0)
        cached = getattr(self, "_ranking_cache", None)
        if cached is not None and cached[0] == key:
            return cached[1]
        preset = self.preset if self.preset != "none" else None
        ranking = rank_frame(self.data.frame, verdicts, preset, self.flagged)
        self._ranking_cache = (key, ranking)
        return ranking

    def ranking_text(self) -> str:
        r = self.ranking()
        return "" if r is None else f"Best next: {r.describe()}."

    def best_next_mask(self) -> np.ndarray:
        """The best ``best_next_size`` unvetted stars."""
        mask = np.zeros(self.data.n, bool)
        r = self.ranking()
        if r is not None:
            mask[r.order[: self.best_next_size]] = True
        return mask

    def best_next_rank(self, star_ids: np.ndarray) -> pd.Series:
        """1-based position of each star in the ranking (NaN: vetted or not ranked)."""
        r = self.ranking()
        pos = np.full(self.data.n, np.nan)
        if r is not None:
            pos[r.order] = np.arange(1, r.order.size + 1)
        idx = pd.Index(self.data.frame["star_id"]).get_indexer(np.asarray(star_ids, np.int64))
        return pd.Series(np.where(idx >= 0, pos[np.clip(idx, 0, None)], np.nan))
