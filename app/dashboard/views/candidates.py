"""The candidate table: flagged or selected stars, verdicts and notes, downloads and SAMP."""

from __future__ import annotations

import io
from functools import partial

import numpy as np
import panel as pn
import param

from chemlatent.app.dashboard.views.common import StateView, from_state
from chemlatent.app.dashboard.views.keys import KeyShortcuts
from chemlatent.app.dashboard.views.spectrum import SpectrumView
from chemlatent.errors import ChemlatentError

# keyboard shortcuts while the Candidates tab is shown (not while typing in a field)
VET_KEYS = {"a": "accepted", "r": "rejected", "c": "candidate", "j": "next", "k": "previous"}
# table columns shown with a fixed number of decimals (ids stay plain integers)
DECIMALS = {"ra": 5, "dec": 5, "snr": 1, "teff_pred": 0}


def table_formatters(columns) -> dict:
    """Tabulator formatters: star ids as plain integers, numbers with 2-3 decimals."""
    from bokeh.models.widgets.tables import NumberFormatter

    out = {"star_id": NumberFormatter(format="0")}
    for c in columns:
        if c not in out and c not in ("verdict", "note", "population"):
            d = DECIMALS.get(c, 3)
            out[c] = NumberFormatter(format="0" if d == 0 else "0." + "0" * d)
    return out


class CandidatesView(StateView):
    """Table source, verdict buttons, the paged table and the export controls, with the
    picked star's spectrum beside the table, next/previous and keyboard shortcuts for vetting."""

    samp = param.Boolean(default=True, doc="offer SAMP (only when served on the user's machine)")
    shown = param.Boolean(default=True, doc="the table is on screen (else it is rebuilt when shown)")

    def __init__(self, **params) -> None:
        super().__init__(**params)
        st = self.state
        self.w_source = from_state(pn.widgets.RadioButtonGroup, st.param.table_source, color="light")
        rows = st.candidates()
        self.table = pn.widgets.Tabulator(rows, pagination="remote", page_size=st.page_size,
                                          selectable="checkbox", disabled=True, show_index=False,
                                          formatters=table_formatters(rows.columns),
                                          sizing_mode="stretch_width", height=560)
        self.table.on_click(self._on_table_click)
        self.w_note = pn.widgets.TextInput(label="note", placeholder="optional note", width=220)
        self.b_accept = pn.widgets.Button(label="Accept (a)", color="success")
        self.b_reject = pn.widgets.Button(label="Reject (r)", color="danger")
        self.b_cand = pn.widgets.Button(label="Candidate (c)", color="default")
        self.b_note = pn.widgets.Button(label="Save note", color="default")
        for b, v in ((self.b_accept, "accepted"), (self.b_reject, "rejected"), (self.b_cand, "candidate"),
                     (self.b_note, None)):
            b.on_click(partial(self._on_verdict, v))
        self.b_prev = pn.widgets.Button(label="< previous (k)", color="default", width=120)
        self.b_next = pn.widgets.Button(label="next (j) >", color="default", width=120)
        self.b_prev.on_click(lambda e: self.step(-1))
        self.b_next.on_click(lambda e: self.step(1))
        self.keys = KeyShortcuts(keys="".join(VET_KEYS), width=0, height=0, margin=0)
        self.keys.param.watch(self._on_key, "pressed")
        self.status = pn.pane.Markdown("", css_classes=["cl-vet-status"], margin=(0, 10))
        self.spectrum_view = SpectrumView(state=st)  # the picked star, beside the table
        self.w_format = from_state(pn.widgets.Select, st.param.export_format, label="format", width=110)
        self.download = pn.widgets.FileDownload(callback=self._export_callback, filename=st.export_filename(),
                                                color="primary", label="Download table", width=220)
        # SAMP reaches the hub on the server's machine: offered only when that is the user's own
        self.b_samp = pn.widgets.Button(label="Send to TOPCAT (SAMP)", color="default", visible=self.samp)
        self.b_samp.on_click(self._on_samp)
        self.samp_note = pn.pane.Markdown(
            "" if self.samp else "*SAMP is off: this explorer runs on another machine and cannot reach "
            "your TOPCAT. Download the table as VOTable and open it in TOPCAT instead.*",
            visible=not self.samp, css_classes=["cl-samp-off"])
        st.param.watch(self._on_selection, ["selected"])
        st.param.watch(self._on_flags, ["flagged"])
        st.param.watch(self.refresh, ["table_source", "verdicts_changed"])
        st.param.watch(lambda e: setattr(self.download, "filename", st.export_filename()),
                       ["export_format", "table_source", "preset"])

    def __panel__(self):
        table = pn.Column(
            pn.Row(pn.pane.Markdown("Show"), self.w_source),
            pn.Row(self.b_accept, self.b_reject, self.b_cand),
            pn.Row(self.w_note, self.b_note), self.status,
            pn.pane.Markdown("Verdicts apply to the ticked rows or, with none ticked, to the star "
                             "shown (clicked in the table). Keys: a accept, r reject, c candidate, "
                             "j next, k previous."),
            self.table,
            pn.Row(self.w_format, self.download, self.b_samp), self.samp_note,
            sizing_mode="stretch_width")
        spectrum = pn.Column(pn.Row(self.b_prev, self.b_next), self.spectrum_view, self.keys, width=590)
        return pn.Row(table, spectrum, sizing_mode="stretch_width", name="Candidates")

    def attach_document(self, doc=None) -> None:
        super().attach_document(doc)
        self.spectrum_view.attach_document(self._doc)

    def refresh(self, *_) -> None:
        """Rebuild the table's rows from the state (when it is next shown, if hidden: a
        threshold change on another tab then costs no table of thousands of rows)."""
        if not self.shown:
            self._stale = True
            return
        self._stale = False
        self.table.value = self.state.candidates()

    @param.depends("shown", watch=True)
    def _on_shown(self) -> None:
        if self.shown and getattr(self, "_stale", False):
            self.refresh()

    def _on_selection(self, *_) -> None:
        if self.state.table_source != "flagged":
            self.refresh()

    def _on_flags(self, *_) -> None:
        if self.state.table_source != "selection":
            self.refresh()

    def _on_table_click(self, event):
        try:
            sid = int(self.table.value["star_id"].iloc[event.row])
        except (IndexError, KeyError, TypeError, ValueError):
            return
        self.state.pick_star(sid)

    def current_row(self) -> int | None:
        """The table row of the star shown (None when it is not in the table)."""
        picked = self.state.picked
        if picked is None or not len(self.table.value):
            return None
        hits = np.flatnonzero(self.table.value["star_id"].to_numpy() == picked)
        return int(hits[0]) if hits.size else None

    def step(self, delta: int) -> None:
        """Show the next (``delta`` 1) or previous (-1) star of the table."""
        n = len(self.table.value)
        if not n:
            self._say("the table is empty")
            return
        i = self.current_row()
        k = 0 if i is None else min(max(i + delta, 0), n - 1)
        self.table.page = k // self.table.page_size + 1
        self.state.pick_star(int(self.table.value["star_id"].iat[k]))
        self._say(f"star {k + 1} of {n}")

    def _on_key(self, *_) -> None:
        action = VET_KEYS.get(self.keys.key())
        if action == "next":
            self.step(1)
        elif action == "previous":
            self.step(-1)
        elif action is not None:
            self._on_verdict(action)

    def _target_ids(self) -> np.ndarray:
        """The ticked rows' stars, or the star shown when it is in the table."""
        rows = self.table.selection
        if rows:
            return self.table.value["star_id"].iloc[rows].to_numpy(np.int64)
        if self.current_row() is not None:
            return np.array([self.state.picked], np.int64)
        return np.zeros(0, np.int64)

    def _note_now(self) -> str:
        """The note as typed when the button was pressed: read from the browser's model on
        the server (updated on every keystroke, before the click arrives), not from a param
        a callback thread may not have updated yet."""
        for model, _ in list(self.w_note._models.values()):
            text = getattr(model, "value_input", None)
            if text is not None:
                return text
        return self.w_note.value_input or self.w_note.value or ""

    def _say(self, text: str) -> None:
        self.status.object = text

    def _on_verdict(self, verdict, *_):
        ids = self._target_ids()
        if not ids.size:
            picked = self.state.picked
            self._say("No star to mark: tick rows, or click a row to show its star"
                      + (f" (star {picked}, shown elsewhere, is not in this table)." if picked is not None
                         else "."))
            return
        note = self._note_now()
        if verdict is None:  # "save note": keep each star's verdict, change the note
            self.state.save_note(ids, note)
        else:
            self.state.annotate(ids, verdict, note)
        self._say(self.state.message)
        self.w_note.param.update(value="", value_input="")

    def _export_callback(self):
        try:
            name, data = self.state.export()
        except ChemlatentError as exc:  # e.g. too many rows: say so, in the page and the file
            self.state.message = f"export refused: {exc}"
            self._say(self.state.message)
            self.download.filename = "export-refused.txt"
            return io.BytesIO(f"{exc}\n".encode())
        self.download.filename = name
        self._say(self.state.message)
        return io.BytesIO(data)

    def _on_samp(self, *_):
        self.b_samp.loading = True
        try:
            self._say(self.state.send_samp())
        finally:
            self.b_samp.loading = False
