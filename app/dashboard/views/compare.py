"""The compare panel: set A against set B, their mean spectra, the difference with the
significant pixels marked, and the top features with their identification."""

from __future__ import annotations

import io

import holoviews as hv
import pandas as pd
import panel as pn
import param

from chemlatent.app.dashboard.views.common import SPEC_WIDTH, StateView
from chemlatent.errors import ChemlatentError
from chemlatent.explore.state.compare import CompareState

WAVE = hv.Dimension("wave", label="vacuum wavelength (A)")
FEATURE_COLUMNS = ["wavelength", "feature", "group", "ew_a", "ew_b", "d_ew", "t", "q"]


class CompareView(StateView):
    """Choose A and B, compare, look at the spectra and the features, download the table."""

    compare = param.ClassSelector(class_=CompareState, doc="the compare panel's state")

    def __init__(self, **params) -> None:
        super().__init__(**params)
        if self.compare is None:
            self.compare = CompareState(state=self.state)
        cs = self.compare
        self.w_a = pn.widgets.Select.from_param(cs.param.set_a, label="set A", width=260)
        self.w_b = pn.widgets.Select.from_param(cs.param.set_b, label="set B", width=260)
        self.b_compare = pn.widgets.Button(label="Compare A with B", color="primary")
        self.b_compare.on_click(self._on_compare)
        self.compare_info = pn.pane.Markdown("Choose two star sets and compare their mean spectra.",
                                             css_classes=["cl-compare-info"])
        self.means_pane = pn.pane.HoloViews(self._empty("mean flux", 240), height=250, linked_axes=False)
        self.diff_pane = pn.pane.HoloViews(self._empty("A - B", 160), height=170, linked_axes=False)
        self.features_table = pn.widgets.Tabulator(pd.DataFrame(columns=FEATURE_COLUMNS), disabled=True,
                                                   show_index=False, height=300, width=720,
                                                   css_classes=["cl-compare-features"])
        self.compare_download = pn.widgets.FileDownload(callback=self._download, filename="compare.csv",
                                                        label="Download per-pixel table (CSV)",
                                                        color="default", width=260)
        cs.param.watch(self._show, ["result"])

    def __panel__(self):
        return pn.Column(pn.Row(self.w_a, self.w_b, self.b_compare), self.compare_info,
                         self.means_pane, self.diff_pane,
                         pn.pane.Markdown("**Top features** (one per line or band, q < 0.05)"),
                         self.features_table, self.compare_download, sizing_mode="stretch_width",
                         name="Compare")

    @staticmethod
    def _empty(ylabel: str, height: int):
        return hv.Curve([], WAVE, ylabel).opts(height=height, width=2 * SPEC_WIDTH)

    def _on_compare(self, *_):
        self.b_compare.loading = True
        try:
            self.compare.refresh_choices()
            if self.compare.run() is None:
                self.compare_info.object = f"**{self.compare.message}**"
        finally:
            self.b_compare.loading = False

    def _show(self, *_):
        comp = self.compare.result
        if comp is None:
            return
        a = hv.Curve((comp.wave, comp.mean_a), WAVE, "mean flux",
                     label=f"A: {comp.label_a} ({comp.n_stars_a})").opts(color="#17becf", line_width=1.2)
        b = hv.Curve((comp.wave, comp.mean_b), WAVE, "mean flux",
                     label=f"B: {comp.label_b} ({comp.n_stars_b})").opts(color="black", line_width=1)
        sig = comp.q < 0.05
        d = hv.Curve((comp.wave, comp.diff), WAVE, "A - B").opts(color="#d62728", line_width=1)
        marks = hv.Scatter((comp.wave[sig], comp.diff[sig]), WAVE, "A - B",
                           label="q < 0.05").opts(color="#ff7f0e", size=3)
        width = 2 * SPEC_WIDTH
        self.means_pane.object = (a * b).opts(height=240, width=width, legend_position="bottom_right")
        self.diff_pane.object = (d * marks).opts(height=160, width=width, legend_position="bottom_right")
        feats = comp.features(15)
        self.features_table.value = feats.round({"wavelength": 1, "ew_a": 3, "ew_b": 3, "d_ew": 3, "t": 2})
        top = feats["feature"].iloc[0] if len(feats) else "none"
        self.compare_info.object = (f"**{self.compare.message}**; largest significant change: {top}. "
                                    + (" ".join(comp.notes) if comp.notes else ""))
        self.compare_download.filename = f"{self.data.path.name}_compare.csv"

    def _download(self):
        try:
            name, data = self.compare.export("csv")
        except ChemlatentError as exc:
            return io.BytesIO(f"{exc}\n".encode())
        self.compare_download.filename = name
        return io.BytesIO(data)

