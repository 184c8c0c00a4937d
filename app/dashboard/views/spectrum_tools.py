"""Spectrum tools over the picked star: line markers filtered by element and shifted by a
radial velocity, smoothing, and vacuum or air wavelengths."""

from __future__ import annotations

import holoviews as hv
import numpy as np
import panel as pn
import param

from chemlatent.app.dashboard.views.common import SPEC_WIDTH, StateView
from chemlatent.explore.spectrum_tools import SpectrumToolsState


class SpectrumToolsView(StateView):
    """The controls and a plot of the picked star with the chosen markers."""

    tools = param.ClassSelector(class_=SpectrumToolsState, doc="the tools' state")
    shown = param.Boolean(default=False, doc="whether the page shows this area (it draws only then)")

    def __init__(self, **params) -> None:
        super().__init__(**params)
        if self.tools is None:
            self.tools = SpectrumToolsState()
        t = self.tools
        self.w_elements = pn.widgets.MultiChoice.from_param(t.param.elements, label="line list elements",
                                                            width=360)
        self.w_rv = pn.widgets.FloatSlider.from_param(t.param.rv_kms, label="radial velocity (km/s)",
                                                      width=260)
        self.w_smooth = pn.widgets.IntSlider.from_param(t.param.smoothing, label="smoothing (pixels)",
                                                        width=200)
        self.w_air = pn.widgets.Checkbox.from_param(t.param.air, label="air wavelengths",
                                                    css_classes=["cl-air"])
        self.tools_info = pn.pane.Markdown("Pick a star to see it with the line list.",
                                           css_classes=["cl-tools-info"])
        self.tools_pane = pn.pane.HoloViews(hv.Curve([]).opts(width=2 * SPEC_WIDTH, height=300),
                                            height=310, linked_axes=False)
        t.param.watch(self.refresh, ["elements", "rv_kms", "smoothing", "air"])
        self.state.param.watch(self.refresh, ["picked"])
        self.param.watch(self.refresh, ["shown"])

    def __panel__(self):
        return pn.Column(pn.Row(self.w_elements, self.w_rv), pn.Row(self.w_smooth, self.w_air),
                         self.tools_info, self.tools_pane, sizing_mode="stretch_width", name="Spectrum tools")

    def refresh(self, *_) -> None:
        st = self.state
        if st.picked is None or not self.shown:  # a pick elsewhere on the page costs nothing here
            return
        try:
            spec = st.picked_spectrum()
        except Exception as exc:  # an unreadable spectrum: say so, keep the page
            st.message = f"cannot show star {st.picked}: {exc}"
            return
        shown = self.tools.shown(spec.wave, spec.flux)
        medium = "air" if shown.air else "vacuum"
        wdim = hv.Dimension("wave", label=f"{medium} wavelength (A)")
        curve = hv.Curve((shown.wave, shown.flux), wdim, "flux").opts(color="black", line_width=1)
        m = shown.markers
        top = np.full(len(m), 1.15)
        segs = hv.Segments((m["wave"], np.full(len(m), 0.0), m["wave"], top), [wdim, "flux", "x1", "y1"]
                           ).opts(color="#d62728", alpha=0.6, line_dash="dotted")
        labels = hv.Labels((m["wave"], top, m["label"]), [wdim, "flux"], "label").opts(
            text_font_size="7pt", angle=90, text_align="right", text_color="#d62728")
        self.tools_pane.object = (curve * segs * labels).opts(width=2 * SPEC_WIDTH, height=300,
                                                              title=f"star {spec.star_id}")
        t = self.tools
        self.tools_info.object = (f"**star {spec.star_id}**: {len(m)} markers "
                                  f"({', '.join(t.elements) or 'no element'}), v = {t.rv_kms:+.0f} km/s, "
                                  f"smoothing {t.smoothing} px, {medium} wavelengths")
