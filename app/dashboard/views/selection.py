"""The selection summary: count and percentiles of the selected stars, and their
histograms against the whole survey's."""

from __future__ import annotations

import panel as pn

from chemlatent.app.dashboard.live_plots import HistogramStrip
from chemlatent.app.dashboard.views.common import LABELS, StateView, after_load


def selection_text(summary: dict) -> str:
    """The summary as Markdown."""
    lines = [f"**Selection: {summary['n_selected']:,} of {summary['n_total']:,} stars**", ""]
    if summary["n_selected"]:
        for c, v in summary["columns"].items():
            lines.append(f"- {LABELS.get(c, c)}: median {v['median']:.3g} "
                         f"(16-84%: {v['p16']:.3g} to {v['p84']:.3g})")
    else:
        lines.append("Drag a box (box select) or draw a lasso on the map.")
    return "\n".join(lines)


class SelectionView(StateView):
    """Summary text and histogram strip; selections only replace the bars' data."""

    def __init__(self, **params) -> None:
        super().__init__(**params)
        self.sel_md = pn.pane.Markdown(selection_text(self.state.selection_summary()), name="selection",
                                       css_classes=["cl-selection"])
        self.hists = None  # the histogram strip, drawn once the page is shown
        self.hist_pane = pn.pane.Bokeh(None, height=190)
        self.state.param.watch(self._on_selection, ["selected"])
        after_load(self.rebuild)

    def __panel__(self):
        return pn.Row(pn.Column(self.sel_md, width=340), self.hist_pane)

    def _histogram_layout(self):
        """Build the histogram strip once; selections only replace its bars."""
        hists = self.state.selection_histograms()
        self.hists = HistogramStrip(list(hists), LABELS)
        self.hists.update(hists)
        return self.hists.layout if self.hists.layout is not None else pn.pane.Markdown("no columns")

    def rebuild(self) -> None:
        """New histograms (the page is shown, or the latents changed)."""
        selected = self.state.selected
        self.hist_pane.object = self._histogram_layout()
        if self.state.selected is not selected:  # a selection came in meanwhile
            self._on_selection()

    def _on_selection(self, *_) -> None:
        text = selection_text(self.state.selection_summary())
        self._apply(lambda: setattr(self.sel_md, "object", text))
        if self.hists is None:  # not drawn yet: it will show the current selection
            return
        hists = self.state.selection_histograms()
        self._apply(lambda: self.hists.update(hists))
