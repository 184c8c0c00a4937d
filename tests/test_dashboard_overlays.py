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
