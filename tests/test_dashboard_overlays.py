"""Map overlays keep one element type whatever the selection size (a DynamicMap refuses to
switch types between calls; large selections used to raise on big surveys)."""

from __future__ import annotations

import holoviews as hv
import numpy as np

from chemlatent.app import dashboard
from chemlatent.session import SurveyData


def test_selection_and_flag_overlays_are_points_small_and_large(encoded_tiny, monkeypatch, tmp_path):
    monkeypatch.setattr(dashboard, "PLAIN_OVERLAY_MAX", 50)
    dash = dashboard.Dashboard(SurveyData(encoded_tiny, db=str(tmp_path / "a.sqlite")))
    ids = dash.data.frame["star_id"].to_numpy()
    for n in (10, 500):
        dash.state.select_ids(ids[:n])
        el = dash._sel_overlay()
        assert isinstance(el, hv.Points)
        assert len(el) == min(n, 50)
    dash.state.flagged = np.ones(dash.data.n, bool)
    assert isinstance(dash._flag_overlay(), hv.Points) and len(dash._flag_overlay()) == 50


def test_selection_and_pick_update_the_same_figures_in_place(encoded_tiny, tmp_path):
    dash = dashboard.Dashboard(SurveyData(encoded_tiny, db=str(tmp_path / "a.sqlite")))
    hist_layout, spec_fig = dash.hist_pane.object, dash.spec_pane.object
    every, sel = dash.hists.sources["snr"]
    assert len(every.data["top"]) > 0 and len(sel.data["top"]) == 0  # nothing selected yet
    ids = dash.data.frame["star_id"].to_numpy()
    dash.state.select_ids(ids[:40])
    want_sel, want_all = dash.state.selection_histograms()["snr"].normalised()
    np.testing.assert_allclose(sel.data["top"], want_sel)
    np.testing.assert_allclose(every.data["top"], want_all)
    assert sel.data["top"].sum() > 0

    dash.state.pick_star(int(ids[7]))
    star = dash.spectrum.star.data
    assert star["wave"].size == dash.data.survey.grid.npix
    assert np.isfinite(star["model"]).any()  # the reconstruction is drawn
    assert spec_fig.title.text.startswith(f"star {ids[7]}:")
    name = next(k for k, v in dashboard.zoom_choices(dash.data.windows).items() if v is not None)
    dash.w_zoom.value = name
    lo, hi = dashboard.zoom_choices(dash.data.windows)[name]
    assert (dash.spectrum.x_range.start, dash.spectrum.x_range.end) == (lo, hi)
    dash.state.clear_selection()
    assert len(sel.data["top"]) == 0
    # the panes still hold the models they were built with: only data changed
    assert dash.hist_pane.object is hist_layout and dash.spec_pane.object is spec_fig
