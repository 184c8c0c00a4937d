"""The candidate table: source, paging, sorting and verdicts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import param

from chemlatent.errors import ChemlatentError
from chemlatent.explore.survey import (
    TABLE_COLUMNS,
    TABLE_SOURCES,
    SurveyData,
)


class CandidateState(param.Parameterized):
    """The candidate table; ``verdicts_changed`` fires when a verdict is written."""

    table_source = param.Selector(default="flagged", objects=list(TABLE_SOURCES))
    page = param.Integer(default=1, bounds=(1, None))
    page_size = param.Integer(default=20, bounds=(1, 1000))
    sort_by = param.String(default="score")
    ascending = param.Boolean(default=False)
    verdicts_changed = param.Event(doc="fires when a verdict or note is written")

    data: SurveyData
    message: str

    # -- candidate table -----------------------------------------------------
    def table_mask(self) -> np.ndarray:
        if self.table_source == "flagged":
            return self.flagged
        if self.table_source == "selection":
            return self.selected
        if self.table_source == "best next":
            return self.best_next_mask()
        return self.flagged & self.selected

    def candidates(self) -> pd.DataFrame:
        """The table's rows (all of them, sorted), with the current verdicts merged in."""
        f = self.data.frame
        idx = np.flatnonzero(self.table_mask())
        cols = [c for c in TABLE_COLUMNS if c in f.columns]
        df = f.iloc[idx][cols].reset_index(drop=True)
        v = self._verdicts(df["star_id"].to_numpy()) if len(df) else None
        if v is not None and len(v):
            df = df.merge(v[["star_id", "verdict", "note"]], on="star_id", how="left")
        else:
            df["verdict"] = pd.Series([None] * len(df), dtype=object)
            df["note"] = pd.Series([None] * len(df), dtype=object)
        df["verdict"] = df["verdict"].fillna("")
        df["note"] = df["note"].fillna("")
        cols = [c for c in TABLE_COLUMNS if c in df.columns]
        df = df[cols]
        if self.table_source == "best next":  # the learned order, best first
            df = df.iloc[np.argsort(self.best_next_rank(df["star_id"]).to_numpy(), kind="stable")]
            df = df.reset_index(drop=True)
        elif self.sort_by in df.columns:
            df = df.sort_values(self.sort_by, ascending=self.ascending, kind="stable",
                                na_position="last").reset_index(drop=True)
        return df

    def _verdicts(self, ids: np.ndarray) -> pd.DataFrame | None:
        try:
            return self.data.store.verdicts(ids)
        except ChemlatentError as exc:
            self.message = str(exc)
            return None

    def candidate_page(self, page: int | None = None) -> tuple[pd.DataFrame, int]:
        """(rows of one page, total rows); ``page`` counts from 1 (default: :attr:`page`)."""
        df = self.candidates()
        total = len(df)
        n_pages = max(1, -(-total // self.page_size))
        p = min(max(1, int(page or self.page)), n_pages)
        s = (p - 1) * self.page_size
        return df.iloc[s:s + self.page_size].reset_index(drop=True), total

    # -- annotations ---------------------------------------------------------
    def annotate(self, star_ids, verdict: str, note: str = "") -> int:
        """Record a verdict (candidate/accepted/rejected, or accept/reject) for stars."""
        verdict = {"accept": "accepted", "reject": "rejected"}.get(verdict, verdict)
        ids = np.atleast_1d(np.asarray(star_ids, np.int64))
        if ids.size == 0:
            self.message = "no star to annotate: pick one or select table rows"
            return 0
        self.data.store.set_verdicts(ids, verdict, note, who=self.user)
        self.message = f"{verdict}: {ids.size} star(s)" + (f" ({note})" if note else "")
        self.param.trigger("verdicts_changed")
        return int(ids.size)

    def save_note(self, star_ids, note: str) -> None:
        """Change the note of stars, keeping each one's verdict (new stars: candidate)."""
        ids = np.atleast_1d(np.asarray(star_ids, np.int64))
        if not ids.size:
            self.annotate(ids, "candidate", note)
            return
        cur = self.verdicts(ids)
        by = dict(zip(cur["star_id"], cur["verdict"]))
        for v in ("candidate", "accepted", "rejected"):
            sub = [s for s in ids if by.get(int(s), "candidate") == v]
            if sub:
                self.annotate(sub, v, note)

    def verdicts(self, star_ids=None) -> pd.DataFrame:
        return self.data.store.verdicts(star_ids)
