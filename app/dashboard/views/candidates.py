"""The candidate table: flagged or selected stars, verdicts and notes, downloads and SAMP."""

from __future__ import annotations

import io
from functools import partial

import numpy as np
import panel as pn
import param

from chemlatent.app.dashboard.views.common import StateView
from chemlatent.errors import ChemlatentError


class CandidatesView(StateView):
    """Table source, verdict buttons, the paged table and the export controls."""

    samp = param.Boolean(default=True, doc="offer SAMP (only when served on the user's machine)")

    def __init__(self, **params) -> None:
        super().__init__(**params)
        st = self.state
        self.w_source = pn.widgets.RadioButtonGroup.from_param(st.param.table_source, color="light")
        self.table = pn.widgets.Tabulator(st.candidates(), pagination="remote", page_size=st.page_size,
                                          selectable="checkbox", disabled=True, show_index=False,
                                          sizing_mode="stretch_width", height=560)
        self.table.on_click(self._on_table_click)
        self.w_note = pn.widgets.TextInput(label="note", placeholder="optional note", width=260)
        self.b_accept = pn.widgets.Button(label="Accept", color="success")
        self.b_reject = pn.widgets.Button(label="Reject", color="danger")
        self.b_cand = pn.widgets.Button(label="Mark candidate", color="default")
        self.b_note = pn.widgets.Button(label="Save note", color="default")
        for b, v in ((self.b_accept, "accepted"), (self.b_reject, "rejected"), (self.b_cand, "candidate"),
                     (self.b_note, None)):
            b.on_click(partial(self._on_verdict, v))
        self.w_format = pn.widgets.Select.from_param(st.param.export_format, label="format", width=110)
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
        return pn.Column(
            pn.Row(pn.pane.Markdown("Show"), self.w_source),
            pn.Row(self.b_accept, self.b_reject, self.b_cand, self.w_note, self.b_note),
            pn.pane.Markdown("Verdicts apply to the ticked rows, or to the picked star when no row "
                             "is ticked. Click a row to show its spectrum."),
            self.table,
            pn.Row(self.w_format, self.download, self.b_samp), self.samp_note,
            sizing_mode="stretch_width", name="Candidates")

    def refresh(self, *_) -> None:
        """Rebuild the table's rows from the state."""
        self.table.value = self.state.candidates()

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

    def _target_ids(self) -> np.ndarray:
        rows = self.table.selection
        if rows:
            return self.table.value["star_id"].iloc[rows].to_numpy(np.int64)
        if self.state.picked is not None:
            return np.array([self.state.picked], np.int64)
        return np.zeros(0, np.int64)

    def _on_verdict(self, verdict, *_):
        ids = self._target_ids()
        note = self.w_note.value or ""
        if verdict is None:  # "save note": keep each star's verdict, change the note
            self.state.save_note(ids, note)
            return
        self.state.annotate(ids, verdict, note)

    def _export_callback(self):
        try:
            name, data = self.state.export()
        except ChemlatentError as exc:  # e.g. too many rows: say so, in the page and the file
            self.state.message = f"export refused: {exc}"
            self.download.filename = "export-refused.txt"
            return io.BytesIO(f"{exc}\n".encode())
        self.download.filename = name
        return io.BytesIO(data)

    def _on_samp(self, *_):
        self.b_samp.loading = True
        try:
            self.state.send_samp()
        finally:
            self.b_samp.loading = False
