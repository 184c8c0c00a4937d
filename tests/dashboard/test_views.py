"""Each page area is a ``pn.viewable.Viewer`` built from a state object alone: it renders
to Bokeh models and follows the state's param events without a server or a browser."""

from __future__ import annotations

import pytest
from bokeh.document import Document

from chemlatent.app.dashboard.views.candidates import CandidatesView
from chemlatent.app.dashboard.views.map import MapView
from chemlatent.app.dashboard.views.reinference import ReinferenceView
from chemlatent.app.dashboard.views.selection import SelectionView
from chemlatent.app.dashboard.views.spectrum import SpectrumView
from chemlatent.app.dashboard.views.stack import StackView
from chemlatent.app.dashboard.views.thresholds import ThresholdsView
from chemlatent.explore.session_runs import RunsState
from chemlatent.explore.state import ExplorerState
from chemlatent.explore.survey import SurveyData


@pytest.fixture(scope="module")
def data(encoded_tiny, tmp_path_factory):
    return SurveyData(encoded_tiny, db=str(tmp_path_factory.mktemp("views") / "a.sqlite"))


@pytest.fixture()
def state(data):
    return ExplorerState(data)


def _renders(view) -> None:
    """The view's layout becomes a Bokeh model tree in a plain document (no server)."""
    root = view.__panel__().get_root(Document())
    assert root is not None


def test_map_view(state):
    view = MapView(state=state, runs=RunsState(state))
    _renders(view)
    before = view.map_pane.object
    state.x_axis = "w_0"
    assert view.map_pane.object is not before  # new axes: a new map


def test_selection_view(state):
    view = SelectionView(state=state)
    _renders(view)
    assert "Selection: 0 of" in view.sel_md.object
    state.select_ids(state.data.frame["star_id"].to_numpy()[:25])
    assert "Selection: 25 of" in view.sel_md.object


def test_spectrum_view(state):
    view = SpectrumView(state=state)
    _renders(view)
    sid = int(state.data.frame["star_id"].iat[3])
    state.pick_star(sid)
    assert view.w_star.value == sid and f"**star {sid}**" in view.spec_info.object


def test_stack_view(state):
    view = StackView(state=state)
    _renders(view)
    view._on_stack()
    assert "select stars first" in state.message
    state.select_ids(state.data.frame["star_id"].to_numpy()[:40])
    view._on_stack()
    assert view.stack_info.object.startswith("Mean of") and view.stacked
    state.clear_selection()  # a stale stack goes with the selection it was made of
    assert not view.stacked and view.stack_info.object == ""


def test_thresholds_view(state):
    view = ThresholdsView(state=state)
    _renders(view)
    state.element_sigma = 1.0
    assert f"**{state.n_flagged:,} flagged**" in view.counts_md.object
    assert "expected by chance" in view.counts_md.object and "(null: frame)" in view.counts_md.object
    state.preset = "none"
    assert view.counts_md.object.startswith("No rule")
    assert not view.s_elem_sigma.visible


def test_candidates_view(state):
    view = CandidatesView(state=state, samp=False)
    _renders(view)
    state.element_sigma = 1.0
    assert len(view.table.value) == state.n_flagged
    state.table_source = "selection"
    state.select_ids(state.data.frame["star_id"].to_numpy()[:7])
    assert len(view.table.value) == 7
    sid = int(view.table.value["star_id"].iat[0])
    state.annotate([sid], "accepted")  # the verdicts_changed event refreshes the table
    assert view.table.value.set_index("star_id").loc[sid, "verdict"] == "accepted"
    assert not view.b_samp.visible


def test_reinference_view(state):
    runs = RunsState(state)
    view = ReinferenceView(state=state, runs=runs)
    _renders(view)
    assert view.jobs_md.object.startswith("No re-encoding jobs yet")
    assert "the survey's own" in view.run_md.object
    runs.param.trigger("jobs_changed")
    assert not view.run_progress.visible
    assert "(none)" in view._run_options()
