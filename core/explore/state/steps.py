"""Selection steps and named selections (GUI-free): undo/redo of every change of the
selection, invert, save/load/rename/delete by name (the user's own, in the annotations
database), the star_ids as a download, and the selection in the shareable URL."""

from __future__ import annotations

import base64
import zlib

import numpy as np
import param

from chemlatent.errors import ChemlatentError
from chemlatent.explore.survey import SurveyData

HISTORY_STEPS = 50
URL_MAX_STARS = 2000  # larger selections go into the URL by saved name only
IDS_PREFIX = "ids:"
NAME_PREFIX = "name:"


def encode_ids(star_ids) -> str:
    """A compact, URL-safe text for a set of star_ids (sorted deltas, zlib, base64url)."""
    ids = np.unique(np.asarray(star_ids, np.int64))
    deltas = np.diff(np.r_[np.int64(0), ids]).astype("<i8")
    return IDS_PREFIX + base64.urlsafe_b64encode(zlib.compress(deltas.tobytes(), 9)).decode().rstrip("=")


def decode_ids(text: str) -> np.ndarray:
    """The star_ids of :func:`encode_ids`' text (raises ChemlatentError when damaged)."""
    if not text.startswith(IDS_PREFIX):
        raise ChemlatentError("not an encoded selection")
    body = text[len(IDS_PREFIX):]
    try:
        raw = zlib.decompress(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        return np.cumsum(np.frombuffer(raw, dtype="<i8")).astype(np.int64)
    except (ValueError, zlib.error) as exc:
        raise ChemlatentError(f"the selection in the URL is damaged ({exc})") from None


class SelectionStepsState(param.Parameterized):
    """Undo/redo, invert, named selections and the URL form of the selection."""

    selection_ref = param.String(default="", doc="the selection in the URL: ids:... or name:OWNER/NAME")
    steps_changed = param.Event(doc="fires when undo/redo become (un)available or names change")

    data: SurveyData
    message: str
    user: str | None

    def __init__(self, **params) -> None:
        super().__init__(**params)
        self.param.watch(self._record_step, ["selected"])  # a param of the selection mixin

    # -- history -------------------------------------------------------------
    def _history(self) -> dict:
        h = self.__dict__.get("_steps")
        if h is None or h["n"] != self.data.n:
            h = {"n": self.data.n, "undo": [np.packbits(np.zeros(self.data.n, bool))], "redo": [],
                 "replaying": False}
            self.__dict__["_steps"] = h
        return h

    def _record_step(self, *_) -> None:
        h = self._history()
        if not h["replaying"]:
            h["undo"].append(np.packbits(self.selected))
            del h["undo"][:-HISTORY_STEPS]
            h["redo"].clear()
        self._update_ref()
        self.param.trigger("steps_changed")

    @property
    def can_undo(self) -> bool:
        return len(self._history()["undo"]) > 1

    @property
    def can_redo(self) -> bool:
        return bool(self._history()["redo"])

    def _replay(self, packed: np.ndarray, what: str) -> None:
        h = self._history()
        h["replaying"] = True
        try:
            mask = np.unpackbits(packed, count=self.data.n).astype(bool)
            self.message = f"{what}: {int(mask.sum()):,} stars selected"
            self.selected = mask
        finally:
            h["replaying"] = False

    def undo_selection(self) -> bool:
        """Go back one selection step; False when there is none."""
        h = self._history()
        if len(h["undo"]) < 2:
            self.message = "nothing to undo"
            return False
        h["redo"].append(h["undo"].pop())
        self._replay(h["undo"][-1], "undo")
        return True

    def redo_selection(self) -> bool:
        """Redo the step last undone; False when there is none."""
        h = self._history()
        if not h["redo"]:
            self.message = "nothing to redo"
            return False
        packed = h["redo"].pop()
        h["undo"].append(packed)
        self._replay(packed, "redo")
        return True

    def invert_selection(self) -> int:
        """Select every star that is not selected (one undoable step)."""
        return self._set_selection(~self.selected, "replace")

    # -- named selections ----------------------------------------------------------
    def selection_names(self) -> list[str]:
        try:
            return list(self.data.store.selections(who=self.user)["name"])
        except ChemlatentError as exc:
            self.message = str(exc)
            return []

    def save_selection(self, name: str) -> int:
        """Save the current selection under ``name`` (a new version when it exists)."""
        ids = self.selected_ids()
        self.data.store.save_selection(name, ids, who=self.user)
        self.message = f"saved selection {name.strip()!r} ({ids.size:,} stars)"
        self._update_ref()
        self.param.trigger("steps_changed")
        return int(ids.size)

    def load_selection(self, name: str, mode: str | None = None) -> int:
        """Select the stars of a saved selection (combined by ``mode``, default: the map's)."""
        sel = self.data.store.get_selection(name, who=self.user)
        n = self.select_ids(sel.star_ids, mode)
        self.message = f"loaded selection {name!r}: {n:,} stars selected"
        return n

    def rename_selection(self, old: str, new: str) -> None:
        self.data.store.rename_selection(old, new, who=self.user)
        self.message = f"renamed selection {old!r} to {new.strip()!r}"
        self._update_ref()
        self.param.trigger("steps_changed")

    def delete_selection(self, name: str) -> None:
        self.data.store.delete_selection(name, who=self.user)
        self.message = f"deleted selection {name!r}"
        self._update_ref()
        self.param.trigger("steps_changed")

    def selected_ids(self) -> np.ndarray:
        return self.data.frame["star_id"].to_numpy(np.int64)[self.selected]

    def selection_ids_text(self) -> tuple[str, bytes]:
        """(file name, text) of the selected star_ids, one per line after a header: what
        ``chemlatent compare``/``annotate``/``encode --ids`` read."""
        ids = self.selected_ids()
        return (f"{self.data.path.name}_selection.txt",
                ("star_id\n" + "".join(f"{i}\n" for i in ids)).encode())

    # -- the URL -----------------------------------------------------------------
    def _owner(self) -> str:
        return self.user or self.data.store.who

    def _update_ref(self) -> None:
        """The URL form of the selection: its ids when small, else the name of a saved
        selection holding exactly these stars, else nothing."""
        ids = self.selected_ids()
        ref = ""
        if 0 < ids.size <= URL_MAX_STARS:
            ref = encode_ids(ids)
        elif ids.size:
            ref = self._saved_name_for(ids)
        if ref != self.selection_ref:
            self.__dict__["_applying_ref"] = True
            try:
                self.selection_ref = ref
            finally:
                self.__dict__["_applying_ref"] = False

    def _saved_name_for(self, ids: np.ndarray) -> str:
        try:
            store = self.data.store
            for row in store.selections(who=self.user).itertuples():
                if row.n_stars == ids.size and np.array_equal(
                        store.get_selection(row.name, who=self.user).star_ids, ids):
                    return f"{NAME_PREFIX}{self._owner()}/{row.name}"
        except ChemlatentError:
            pass
        return ""

    @param.depends("selection_ref", watch=True)
    def _apply_ref(self) -> None:
        """A selection that came with the URL: select its stars."""
        if self.__dict__.get("_applying_ref") or not self.selection_ref:
            return
        ref = self.selection_ref
        try:
            if ref.startswith(NAME_PREFIX):
                owner, _, name = ref[len(NAME_PREFIX):].partition("/")
                ids = self.data.store.get_selection(name, who=owner).star_ids
            else:
                ids = decode_ids(ref)
        except ChemlatentError as exc:
            self.message = f"selection in the URL ignored: {exc}"
            return
        self.select_ids(ids, "replace")
