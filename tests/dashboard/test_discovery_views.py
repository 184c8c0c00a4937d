"""The discovery views (compare, ...) built from a state object alone, without a server."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from bokeh.document import Document

from chemlatent.app.dashboard.views.compare import CompareView
from chemlatent.explore.state import ExplorerState
from chemlatent.explore.state.compare import MATCHED, SAVED, THE_REST, CompareState
from chemlatent.explore.survey import SurveyData


@pytest.fixture(scope="module")
def data(encoded_tiny, tmp_path_factory):
    return SurveyData(encoded_tiny, db=str(tmp_path_factory.mktemp("disc") / "a.sqlite"), who="ana")


@pytest.fixture()
def state(data):
    return ExplorerState(data, user="ana")


def _renders(view) -> None:
    assert view.__panel__().get_root(Document()) is not None


def test_compare_state_selection_vs_rest_and_control(state):
    f = state.data.frame
    carbon = f["c_fe"].to_numpy() > 0.7
    state.select_ids(f["star_id"].to_numpy()[carbon])
    cs = CompareState(state=state, set_b=THE_REST)
    comp = cs.run()
    assert comp is not None and comp.n_stars_a == carbon.sum()
    assert "pixels differ" in state.message
    cs.set_b = MATCHED
    assert cs.run().label_b == MATCHED
    name, data = cs.export("csv")
    table = pd.read_csv(io.BytesIO(data), comment="#")
    assert name.endswith("_compare.csv")
    assert list(table.columns[:4]) == ["wavelength", "mean_a", "mean_b", "diff"]
    assert b"set_a: current selection" in data


def test_compare_state_saved_selection_and_empty_set(state):
    ids = state.data.frame["star_id"].to_numpy()
    state.data.store.save_selection("first200", ids[:200], who="ana")
    cs = CompareState(state=state)
    assert SAVED + "first200" in cs.param.set_a.objects
    cs.param.update(set_a=SAVED + "first200", set_b=THE_REST)
    assert cs.run().n_stars_a == 200
    state.clear_selection()
    cs.set_a = "current selection"
    assert cs.run() is None and "at least 2" in state.message


def test_compare_view(state):
    view = CompareView(state=state)
    _renders(view)
    f = state.data.frame
    state.select_ids(f["star_id"].to_numpy()[f["c_fe"].to_numpy() > 0.7])
    view.compare.set_b = THE_REST
    view._on_compare()
    assert len(view.features_table.value) > 0
    assert "largest significant change" in view.compare_info.object
    assert np.isfinite(view.compare.result.t).any()


def test_typed_subset_state_and_view(state):
    from chemlatent.app.dashboard.views.subset import SubsetView
    from chemlatent.explore.state.subset import subset_mask

    view = SubsetView(state=state)
    _renders(view)
    n = state.apply_subset("c > 2 sigma and fe < 0 latent")
    assert n == int(subset_mask(state.data, "c > 2 sigma and fe < 0 latent").sum()) > 0
    assert state.subset_error == "" and view.rule_error.object == ""
    assert state.apply_subset("teff > 3") is None
    assert "unknown axis 'teff'" in state.subset_error and "Rule not applied" in view.rule_error.object
    assert state.n_selected == n  # a bad rule leaves the selection alone
    view.w_rule.value = "(c > 2"
    view._apply()
    assert "unbalanced parentheses" in view.rule_error.object
    # the same grammar as chemlatent flag --rule: the same stars as the rule engine gives
    from chemlatent.flags.parser import parse_rule

    assert np.array_equal(subset_mask(state.data, "c > 1"), state.data.engine.mask(parse_rule("c > 1")))


def test_selections_view(state):
    from chemlatent.app.dashboard.views.selections import SelectionsView

    view = SelectionsView(state=state)
    _renders(view)
    assert view.b_undo.disabled
    state.select_ids(state.data.frame["star_id"].to_numpy()[:7])
    assert not view.b_undo.disabled
    view.w_sel_name.value = "seven"
    view._save()
    assert "seven" in view.w_saved.options
    view.b_undo.clicks += 1
    assert state.n_selected == 0 and not view.b_redo.disabled
    view.w_saved.value = "seven"
    view._load()
    assert state.n_selected == 7
    assert view._ids().getvalue().decode().count("\n") == 8


def test_spectrum_tools_view(state):
    from chemlatent.app.dashboard.views.spectrum_tools import SpectrumToolsView

    view = SpectrumToolsView(state=state)
    _renders(view)
    state.pick_star(int(state.data.frame["star_id"].iat[5]))
    assert "Pick a star" in view.tools_info.object  # not drawn while its tab is hidden
    view.shown = True
    assert "markers (C, CH, C2)" in view.tools_info.object and "vacuum" in view.tools_info.object
    view.tools.param.update(rv_kms=120.0, air=True, smoothing=4, elements=["Fe", "Mg"])
    assert "v = +120 km/s" in view.tools_info.object and "air wavelengths" in view.tools_info.object
    assert "Fe, Mg" in view.tools_info.object
