"""SAMP from TOPCAT to the page: while "Listen to TOPCAT" is on, TOPCAT's row selections of
this survey's tables select those stars, and a highlighted row picks its star."""

from __future__ import annotations

import panel as pn
import param

from chemlatent.app.dashboard.live_plots import apply_in_document
from chemlatent.app.dashboard.views.common import StateView
from chemlatent.errors import ChemlatentError
from chemlatent.io.samp_receive import SampReceiver


class SampLinkView(StateView):
    """A toggle that registers the session with the SAMP hub, and what it last heard."""

    samp = param.Boolean(default=True, doc="offer SAMP (only when served on the user's machine)")

    def __init__(self, **params) -> None:
        super().__init__(**params)
        st = self.state
        self.receiver = SampReceiver(st.data.path, self._on_select, self._on_pick, on_note=self._note,
                                     name=f"chemlatent {st.data.path.name}")
        self.w_listen = pn.widgets.Toggle(label="Listen to TOPCAT (SAMP)", value=False, visible=self.samp,
                                          css_classes=["cl-samp-listen"], width=220)
        self.w_listen.param.watch(self._on_toggle, "value")
        self.samp_status = pn.pane.Markdown("", css_classes=["cl-samp-status"], visible=self.samp)

    def __panel__(self):
        return pn.Column(*self.controls())

    def controls(self) -> list:
        return [self.w_listen, self.samp_status]

    def _on_toggle(self, event) -> None:
        if event.new:
            try:
                self.receiver.start()
            except ChemlatentError as exc:
                self.samp_status.object = f"SAMP: {exc}"
                self.w_listen.value = False
                return
            doc = self._doc
            if doc is not None and doc.session_context is not None:
                doc.on_session_destroyed(lambda ctx: self.receiver.stop())
            self.samp_status.object = ("Listening: select rows of this survey's tables in TOPCAT "
                                       "to select their stars here.")
        else:
            self.receiver.stop()
            self.samp_status.object = "Not listening to SAMP."

    # called on the SAMP client's thread: change the state on the session's event loop
    def _on_select(self, star_ids) -> None:
        def apply() -> None:
            n = self.state.select_ids(star_ids, "replace")
            self.samp_status.object = f"TOPCAT selected {len(star_ids):,} rows: {n:,} stars selected"

        apply_in_document(self._doc, apply)

    def _on_pick(self, star_id: int) -> None:
        def apply() -> None:
            self.state.pick_star(star_id)
            self.samp_status.object = f"TOPCAT highlighted star {star_id}"

        apply_in_document(self._doc, apply)

    def _note(self, text: str) -> None:
        apply_in_document(self._doc, lambda: setattr(self.samp_status, "object", text))
