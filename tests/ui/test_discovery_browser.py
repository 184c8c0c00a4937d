"""Browser tests of the discovery features (compare, best-next ranking, named selections,
typed subsets, spectrum tools, SAMP), on the same served page as test_dashboard_browser."""

from __future__ import annotations

import re

import numpy as np
import pytest
from test_dashboard_browser import browser, page, served  # noqa: F401  (the shared fixtures)

pytestmark = pytest.mark.browser


def test_compare_panel_shows_spectra_and_features(page, served):  # noqa: F811
    dash = served["apps"][-1]
    f = dash.state.data.frame
    dash.state.select_ids(f["star_id"].to_numpy()[f["c_fe"].to_numpy() > 0.7])
    page.get_by_text("Compare", exact=True).first.click()
    page.get_by_text("Compare A with B").first.click()
    page.get_by_text(re.compile("most significant")).first.wait_for()
    assert dash.compare_view.compare.result is not None
    assert np.isfinite(dash.compare_view.compare.result.t).any()
    feats = dash.compare_view.compare.result.features(15)
    assert any("CH G band" in name for name in feats["feature"])  # carbon stars: the G band differs
    page.locator(".cl-compare-features").get_by_text(feats["feature"].iloc[0]).first.wait_for()
