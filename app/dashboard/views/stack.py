"""The selection's mean spectrum against survey stars of similar predicted Teff/logg."""

from __future__ import annotations

import holoviews as hv
import panel as pn
import param

from chemlatent.app.dashboard.views.common import SPEC_WIDTH, StateView


class StackView(StateView):
    """A button that stacks the selection, and the stack and difference plots."""

    zoom = param.Callable(default=lambda: None, doc="the wavelength range to show (None: all)")

    def __init__(self, **params) -> None:
        super().__init__(**params)
        self.b_stack = pn.widgets.Button(label="Stack selection vs similar Teff/logg", color="primary")
        self.b_stack.on_click(self._on_stack)
        # the plots are drawn with the first stack (a page opens without two empty plots)
        self.stack_pane = pn.pane.HoloViews(None, height=250, linked_axes=False, visible=False)
        self.stack_diff_pane = pn.pane.HoloViews(None, height=130, linked_axes=False, visible=False)
        self.stack_info = pn.pane.Markdown("*Select stars, then stack them.*")
        self.stacked = False  # a stack of the current selection is shown
        self.state.param.watch(self._on_selection, ["selected"])

    @staticmethod
    def _empty(wdim, title: str = "select stars, then stack them"):
        return hv.Curve([], wdim, "mean flux").opts(height=240, width=2 * SPEC_WIDTH, title=title)

    def _on_selection(self, *_) -> None:
        """A new selection: the stack shown was of another one, so clear it."""
        if not self.stacked:
            return
        self.stacked = False
        wdim = hv.Dimension("wave", label="vacuum wavelength (A)")
        self.stack_pane.object = self._empty(wdim, "the selection changed: stack it again")
        self.stack_diff_pane.object = hv.Curve([], wdim, "selection - survey").opts(height=120,
                                                                                   width=2 * SPEC_WIDTH)
        self.stack_info.object = ""

    def __panel__(self):
        return pn.Column(pn.Row(self.b_stack), self.stack_info, self.stack_pane, self.stack_diff_pane,
                         sizing_mode="stretch_width")

    def _on_stack(self, *_):
        st = self.state
        if st.n_selected == 0:
            st.message = self.stack_info.object = "select stars first (box or lasso on the map)"
            return
        self.b_stack.loading = True
        self.stack_pane.loading = True
        try:
            sel, ctrl = st.selection_stacks()
            wdim = hv.Dimension("wave", label="vacuum wavelength (A)")
            a = hv.Curve((sel.wave, sel.mean), wdim, "mean flux", label=f"selection ({sel.n_stars})").opts(
                color="#17becf", line_width=1.2)
            b = hv.Curve((ctrl.wave, ctrl.mean), wdim, "mean flux",
                         label=f"survey at similar Teff/logg ({ctrl.n_stars})").opts(color="black",
                                                                                     line_width=1)
            d = hv.Curve((sel.wave, sel.mean - ctrl.mean), wdim, "selection - survey").opts(color="#d62728")
            zr = self.zoom()
            xlim = zr if zr is not None else (float(sel.wave[0]), float(sel.wave[-1]))
            self.stack_pane.object = (a * b).opts(height=240, width=2 * SPEC_WIDTH, xlim=xlim,
                                                  legend_position="right")
            self.stack_diff_pane.object = d.opts(height=120, width=2 * SPEC_WIDTH, xlim=xlim)
            self.stack_pane.visible = self.stack_diff_pane.visible = True
            self.stack_info.object = (f"Mean of {sel.n_stars} selected stars vs {ctrl.n_stars} unselected "
                                      "stars drawn from the same predicted Teff/logg cells.")
            self.stacked = True
        finally:
            self.b_stack.loading = False
            self.stack_pane.loading = False
