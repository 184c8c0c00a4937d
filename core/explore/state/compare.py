"""The page's compare panel (GUI-free): choose set A and set B, run
:func:`chemlatent.explore.compare.compare_sets` (what ``chemlatent compare`` runs) and keep
the result for the plots, the feature list and the download."""

from __future__ import annotations

import numpy as np
import param

from chemlatent.errors import ChemlatentError
from chemlatent.explore.compare import DEFAULT_MAX_STARS, Comparison, compare_sets
from chemlatent.explore.starsets import CONTROL, REST, mask_of

SELECTION = "current selection"
FLAGGED = "flagged stars"
THE_REST = "the rest"
MATCHED = "matched Teff/logg control"
SAVED = "saved: "


class CompareState(param.Parameterized):
    """Set A against set B over an :class:`~chemlatent.explore.state.ExplorerState`."""

    state = param.Parameter(doc="the session's ExplorerState")
    set_a = param.Selector(default=SELECTION, objects=[SELECTION, FLAGGED])
    set_b = param.Selector(default=MATCHED, objects=[MATCHED, THE_REST, SELECTION, FLAGGED])
    max_stars = param.Integer(default=DEFAULT_MAX_STARS, bounds=(10, None))
    result = param.ClassSelector(class_=Comparison, default=None, allow_None=True)
    message = param.String(default="")

    def __init__(self, **params) -> None:
        super().__init__(**params)
        self.refresh_choices()

    def saved_names(self) -> list[str]:
        """The user's saved selections, then the saved candidate lists."""
        store = self.state.data.store
        try:
            names = list(store.selections(who=self.state.user)["name"]) + list(store.lists()["name"])
        except ChemlatentError:
            return []
        return list(dict.fromkeys(names))

    def refresh_choices(self) -> None:
        """Offer the saved selections and lists (after one is saved, renamed or deleted)."""
        saved = [SAVED + n for n in self.saved_names()]
        self.param.set_a.objects = [SELECTION, FLAGGED, *saved]
        self.param.set_b.objects = [MATCHED, THE_REST, SELECTION, FLAGGED, *saved]
        if self.set_a not in self.param.set_a.objects:
            self.set_a = SELECTION
        if self.set_b not in self.param.set_b.objects:
            self.set_b = MATCHED

    def _mask(self, choice: str) -> np.ndarray:
        st = self.state
        if choice == SELECTION:
            return st.selected
        if choice == FLAGGED:
            return st.flagged
        if choice.startswith(SAVED):
            from chemlatent.explore.starsets import resolve_ids

            ids, _ = resolve_ids(choice[len(SAVED):], st.data.store, who=st.user)
            return mask_of(ids, st.data.frame["star_id"].to_numpy())
        raise ChemlatentError(f"unknown star set {choice!r}")

    def run(self) -> Comparison | None:
        """Compare; the result (or why not) is set on the state, never raises."""
        st = self.state
        f = st.data.frame
        try:
            mask_a = self._mask(self.set_a)
            b = {MATCHED: CONTROL, THE_REST: REST}.get(self.set_b)
            if b is None:
                b = self._mask(self.set_b)
            comp = compare_sets(st.data.survey, f["row"].to_numpy(), mask_a, b,
                                teff=f["teff_pred"].to_numpy() if "teff_pred" in f else None,
                                logg=f["logg_pred"].to_numpy() if "logg_pred" in f else None,
                                max_stars=self.max_stars, label_a=self.set_a, label_b=self.set_b)
        except ChemlatentError as exc:
            self.message = f"compare: {exc}"
            st.message = self.message
            return None
        n_sig = int(np.count_nonzero(comp.q < 0.05))
        self.message = (f"{comp.label_a} ({comp.n_stars_a:,} stars) vs {comp.label_b} "
                        f"({comp.n_stars_b:,} stars): {n_sig:,} pixels differ at q < 0.05")
        st.message = self.message
        self.result = comp
        return comp

    def export(self, fmt: str = "csv") -> tuple[str, bytes]:
        """(file name, bytes) of the per-pixel table with provenance, as the command line
        writes it."""
        from chemlatent.io.export import export_bytes, provenance

        if self.result is None:
            raise ChemlatentError("nothing compared yet")
        st = self.state
        meta = provenance(survey_path=st.data.path, model_name=st.data.model_name, extra=self.result.meta())
        ext = {"csv": "csv", "fits": "fits", "votable": "vot"}[fmt]
        return f"{st.data.path.name}_compare.{ext}", export_bytes(self.result.table(), fmt, meta)
