"""Named selections and selection steps: save, load, rename, delete (the user's own),
invert, undo/redo, and the selected star_ids as a download."""

from __future__ import annotations

import io

import panel as pn

from chemlatent.app.dashboard.views.common import StateView
from chemlatent.errors import ChemlatentError


class SelectionsView(StateView):
    """The sidebar's selection tools."""

    def __init__(self, **params) -> None:
        super().__init__(**params)
        st = self.state
        self.w_sel_name = pn.widgets.TextInput(label="selection name", placeholder="name to save as",
                                               width=150)
        self.w_saved = pn.widgets.Select(label="saved selections", options=st.selection_names(), width=150)
        self.b_save_sel = pn.widgets.Button(label="Save", width=70)
        self.b_load_sel = pn.widgets.Button(label="Load", width=70)
        self.b_rename_sel = pn.widgets.Button(label="Rename", width=70)
        self.b_delete_sel = pn.widgets.Button(label="Delete", width=70, color="danger")
        self.b_invert = pn.widgets.Button(label="Invert", width=70)
        self.b_undo = pn.widgets.Button(label="Undo", width=70, disabled=not st.can_undo)
        self.b_redo = pn.widgets.Button(label="Redo", width=70, disabled=not st.can_redo)
        self.download_ids = pn.widgets.FileDownload(callback=self._ids, filename="selection.txt",
                                                    label="Download selected IDs", width=200)
        actions = {self.b_save_sel: self._save, self.b_load_sel: self._load, self.b_rename_sel: self._rename,
                   self.b_delete_sel: self._delete, self.b_invert: lambda: st.invert_selection(),
                   self.b_undo: lambda: st.undo_selection(), self.b_redo: lambda: st.redo_selection()}
        for button, action in actions.items():
            button.on_click(lambda e, a=action: self._run(a))
        st.param.watch(self._on_steps, ["steps_changed"])

    def __panel__(self):
        return pn.Column(*self.controls())

    def controls(self) -> list:
        return [pn.pane.Markdown("#### Selections"),
                pn.Row(self.b_undo, self.b_redo, self.b_invert),
                pn.Row(self.w_sel_name, self.b_save_sel),
                pn.Row(self.w_saved, pn.Column(self.b_load_sel, self.b_rename_sel, self.b_delete_sel)),
                self.download_ids]

    def _run(self, action) -> None:
        try:
            action()
        except ChemlatentError as exc:
            self.state.message = str(exc)

    def _save(self) -> None:
        self.state.save_selection(self.w_sel_name.value or "")

    def _load(self) -> None:
        if self.w_saved.value:
            self.state.load_selection(self.w_saved.value, "replace")

    def _rename(self) -> None:
        if self.w_saved.value:
            self.state.rename_selection(self.w_saved.value, self.w_sel_name.value or "")

    def _delete(self) -> None:
        if self.w_saved.value:
            self.state.delete_selection(self.w_saved.value)

    def _on_steps(self, *_) -> None:
        st = self.state
        names = st.selection_names()
        keep = self.w_saved.value if self.w_saved.value in names else (names[0] if names else None)
        self.w_saved.param.update(options=names, value=keep)
        self.b_undo.disabled = not st.can_undo
        self.b_redo.disabled = not st.can_redo

    def _ids(self):
        name, data = self.state.selection_ids_text()
        self.download_ids.filename = name
        return io.BytesIO(data)
