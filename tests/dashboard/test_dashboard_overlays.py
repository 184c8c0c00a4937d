"""The dashboard's plots are built once per session; actions only replace their data."""

from __future__ import annotations

import holoviews as hv
import numpy as np

from chemlatent.app.dashboard.app import Dashboard
from chemlatent.app.dashboard.views import map as map_view
from chemlatent.app.dashboard.views.common import weak_hook
from chemlatent.explore.spectrum import zoom_choices
from chemlatent.explore.survey import SurveyData


def _rendered_map(dash):
    """Render the map as the server does, so its hook puts the overlay glyphs on the figure."""
    return hv.renderer("bokeh").get_plot(dash.map_pane.object).state


def test_map_overlays_draw_the_selection_flags_and_pick_thinned_above_the_cap(encoded_tiny, monkeypatch,
                                                                               tmp_path):
    monkeypatch.setattr(map_view, "PLAIN_OVERLAY_MAX", 50)
    dash = Dashboard(SurveyData(encoded_tiny, db=str(tmp_path / "a.sqlite")))
    fig = _rendered_map(dash)
    assert dash.overlays.figure is fig
    src = dash.overlays.sources
    ids = dash.data.frame["star_id"].to_numpy()
    xs, ys = dash.state.xy
    for n in (10, 500):
        dash.state.select_ids(ids[:n])
        assert len(src["selected"].data["x"]) == min(n, 50)
    dash.state.select_ids(ids[3:5])
    np.testing.assert_allclose(np.sort(src["selected"].data["x"]), np.sort(xs[3:5]))
    dash.state.flagged = np.ones(dash.data.n, bool)  # a param: the views follow the event
    assert len(src["flagged"].data["x"]) == 50
    dash.state.pick_star(int(ids[9]))
    assert list(src["picked"].data["x"]) == [xs[9]] and list(src["picked"].data["y"]) == [ys[9]]
    # a re-render of the same figure (pan/zoom) keeps one set of glyphs
    n_renderers = len(fig.renderers)
    dash.map._on_map_rendered(type("P", (), {"state": fig})(), None)
    assert len(fig.renderers) == n_renderers


def test_selection_and_pick_update_the_same_figures_in_place(encoded_tiny, tmp_path):
    dash = Dashboard(SurveyData(encoded_tiny, db=str(tmp_path / "a.sqlite")))
    hist_layout, spec_fig = dash.hist_pane.object, dash.spec_pane.object
    src = dash.hists.sources["snr"]  # the survey's bars (top) and the selection's (top_selected)
    assert len(src.data["top"]) > 0 and not src.data["top_selected"].any()  # nothing selected yet
    ids = dash.data.frame["star_id"].to_numpy()
    dash.state.select_ids(ids[:40])
    want_sel, want_all = dash.state.selection_histograms()["snr"].normalised()
    np.testing.assert_allclose(src.data["top_selected"], want_sel)
    np.testing.assert_allclose(src.data["top"], want_all)
    assert src.data["top_selected"].sum() > 0

    dash.state.pick_star(int(ids[7]))
    star = dash.spectrum.star.data
    assert star["wave"].size == dash.data.survey.grid.npix
    assert np.isfinite(star["model"]).any()  # the reconstruction is drawn
    assert spec_fig.title.text.startswith(f"star {ids[7]}:")
    name = next(k for k, v in zoom_choices(dash.data.windows).items() if v is not None)
    dash.w_zoom.value = name
    lo, hi = zoom_choices(dash.data.windows)[name]
    assert (dash.spectrum.x_range.start, dash.spectrum.x_range.end) == (lo, hi)
    dash.state.clear_selection()
    assert len(src.data["top"]) > 0 and not src.data["top_selected"].any()
    # the panes still hold the models they were built with: only data changed
    assert dash.hist_pane.object is hist_layout and dash.spec_pane.object is spec_fig


def test_the_map_hook_does_not_keep_a_closed_session_alive():
    """Plot options (and their hooks) live in a global HoloViews registry: the map's hook must
    hold its dashboard weakly (the served check is tests/ui/test_load.py: no session left)."""
    import gc
    import weakref

    calls = []

    class Session:
        def on_render(self, plot, element):
            calls.append(element)

    s = Session()
    hook = weak_hook(s.on_render)
    hook(None, "first")
    gone = weakref.ref(s)
    del s
    gc.collect()
    assert gone() is None and calls == ["first"]
    hook(None, "after")  # a render after the session closed does nothing
    assert calls == ["first"]


def test_memory_is_trimmed_once_after_a_burst_of_closed_sessions(monkeypatch):
    import platform

    from chemlatent.app.dashboard import memory

    trims, scheduled = [], []
    monkeypatch.setattr(memory, "release_free_memory", lambda: trims.append(1) or True)
    trim = memory.TrimAfterSessions(delay_s=3.0, schedule=lambda delay, fn: scheduled.append((delay, fn)))
    for _ in range(5):  # five sessions closing together: one trim scheduled
        trim.session_ended(None)
    assert [d for d, _ in scheduled] == [3.0]
    scheduled.pop()[1]()
    assert trims == [1]
    trim.session_ended(None)  # a later session schedules the next one
    assert len(scheduled) == 1
    scheduled.pop()[1]()
    assert trims == [1, 1]
    if platform.libc_ver()[0] == "glibc":
        assert memory.tune_allocator()
