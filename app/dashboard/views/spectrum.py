"""The picked star's spectrum with its reconstruction, residuals and element windows."""

from __future__ import annotations

import panel as pn

from chemlatent.app.dashboard.live_plots import SpectrumFigures
from chemlatent.app.dashboard.views.common import SPEC_WIDTH, StateView, after_load
from chemlatent.explore.spectrum import GROUP_COLORS, GROUP_LABELS, zoom_choices
from chemlatent.explore.survey import SurveyData


def spectrum_figures(data: SurveyData) -> SpectrumFigures:
    """The spectrum panel's figures for a survey's grid and its model's windows."""
    wave = data.survey.grid.wave
    return SpectrumFigures(data.windows, (float(wave[0]), float(wave[-1])), width=SPEC_WIDTH)


class SpectrumView(StateView):
    """Star id input, zoom choice and the figures, following ``state.picked``."""

    def __init__(self, **params) -> None:
        super().__init__(**params)
        st = self.state
        self.w_zoom = pn.widgets.Select(label="zoom to", options=list(zoom_choices(self.data.windows)),
                                        width=260)
        self.w_star = pn.widgets.IntInput(label="star_id", value=st.picked, width=120)
        self.spec_info = pn.pane.Markdown("Click a star on the map (tap tool) to see its spectrum.",
                                          css_classes=["cl-spec-info"])
        self.status = pn.pane.Markdown("", css_classes=["cl-star-status"], margin=(0, 10))
        self.spectrum: SpectrumFigures | None = None  # the figures, drawn once the page is shown
        self.spec_pane = pn.pane.Bokeh(None, height=310, width=SPEC_WIDTH + 10)
        self.res_pane = pn.pane.Bokeh(None, height=150, width=SPEC_WIDTH + 10)
        st.param.watch(self._on_pick, ["picked"])
        self.w_zoom.param.watch(self._on_zoom, "value")
        self.w_star.param.watch(self._on_star_input, "value")
        after_load(self._draw_figures)

    def _draw_figures(self) -> None:
        """Build the spectrum figures (once) and show the picked star in them."""
        fig = spectrum_figures(self.data)
        fig.top.css_classes = ["cl-spectrum"]  # a Bokeh pane shows the figure itself
        fig.zoom(self.zoom_range())
        self.spectrum = fig
        self.spec_pane.object, self.res_pane.object = fig.top, fig.res
        if self.state.picked is not None:
            self.refresh()

    def __panel__(self):
        return pn.Column(pn.Row(self.w_star, self.w_zoom), self.status, self.spec_info, self.spec_pane,
                         self.res_pane, sizing_mode="stretch_width")

    def zoom_range(self):
        """The chosen zoom's wavelength range (None: the whole spectrum)."""
        return zoom_choices(self.data.windows).get(self.w_zoom.value)

    def _on_star_input(self, event):
        if event.new is None or event.new == self.state.picked:
            return
        try:
            self.state.pick_star(event.new)
        except Exception as exc:  # unknown star id: say so here, and show the star shown again
            self.state.message = self.status.object = str(exc)
            self.w_star.value = self.state.picked

    def _on_pick(self, *_):
        self.w_star.value = self.state.picked
        self.status.object = ""
        self.refresh()

    def _on_zoom(self, *_):
        zr = self.zoom_range()
        self._apply(lambda: self.spectrum is not None and self.spectrum.zoom(zr))

    def _figures(self) -> bool:
        """Whether the figures are drawn (until then a pick only changes the caption)."""
        return self.spectrum is not None

    def refresh(self) -> None:
        """Show the picked star: read its spectrum here (a callback thread), then swap the
        figures' data on the session's event loop."""
        st = self.state
        if st.picked is None:
            self._apply(lambda: self._figures() and self.spectrum.clear("no star picked"))
            return
        try:
            spec = st.picked_spectrum()
        except Exception as exc:
            st.message = f"cannot show star {st.picked}: {exc}"
            title = f"star {st.picked}: no spectrum"
            self._apply(lambda: self._figures() and self.spectrum.clear(title))
            return
        info, zr = st.picked_info(), self.zoom_range()
        self._apply(lambda: self._figures() and self.spectrum.show(spec, info, zr))
        shaded = ", ".join(f"<span style='color:{GROUP_COLORS[g]}'>{GROUP_LABELS[g]}</span>"
                           for g in GROUP_LABELS)
        self.spec_info.object = (f"**star {spec.star_id}** (survey row {spec.row}); windows shaded: "
                                 + shaded + ("" if spec.model is not None else f"; {self.data.model_note}"))
