"""Each page area is a ``pn.viewable.Viewer`` built from a state object alone: it renders
to Bokeh models and follows the state's param events without a server or a browser."""

from __future__ import annotations

import numpy as np
import panel as pn
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


def test_status_lines_sit_next_to_the_controls_they_concern(data):
    """A selection's message shows in the map controls' group, a threshold change's in the
    threshold controls' group (and both in the page's status line); neither in the other."""
    from chemlatent.app.dashboard.app import Dashboard

    dash = Dashboard(data, ExplorerState(data))
    side = dash.sidebar()
    dividers = [i for i, item in enumerate(side) if isinstance(item, pn.layout.Divider)]
    groups = {"map": side[: dividers[0]], "thresholds": side[dividers[0]: dividers[1]]}

    def where(text: str) -> list[str]:
        """The sidebar groups holding a status pane that shows ``text``."""
        return [g for g, items in groups.items() for item in items
                if isinstance(item, pn.pane.Markdown) and "cl-area-status" in item.css_classes
                and text in (item.object or "")]

    x, y = dash.state.xy
    n = dash.state.select_box((float(np.min(x)), float(np.min(y)), float(np.median(x)), float(np.median(y))))
    assert n > 0
    assert where(f"{n:,} stars selected") == ["map"]
    assert f"{n:,} stars selected" in dash.message.object  # still in the page's status line
    # right under the selection controls
    controls = dash.map.controls()
    assert controls.index(dash.map_status) == controls.index(dash.b_clear) + 1

    dash.state.element_sigma = 1.0
    flagged = f"{dash.state.n_flagged:,} stars flagged"
    assert where(flagged) == ["thresholds"]
    assert where(f"{n:,} stars selected") == ["map"]  # the map's line keeps its own message
    t = dash.thresholds.controls()
    assert t.index(dash.s_fe_dex) < t.index(dash.threshold_status) < t.index(dash.counts_md)
    dash.state.pick_at(1e9, 1e9, (0, 1), (0, 1))  # far from every star
    assert where("no star near the click") == ["map"]


def test_the_preparing_page_keeps_the_encoding_note_after_its_step():
    from chemlatent.app.dashboard.server import preparing_page
    from chemlatent.jobs.preparation import Preparation

    prep = Preparation("unused", 10, 0, load=lambda p: None)
    prep._begin("encode", 100, "encoding 100 stars")
    with prep._lock:
        prep.log.append("posterior means under the survey's population: 40% of the stars have S/N < 20")
        prep.notes.append(prep.log[-1])
    prep._begin("load", 0, "loading 100 stars for the explorer")
    page = preparing_page(prep)
    text = next(o for o in page.main if "cl-progress" in getattr(o, "css_classes", []))
    assert "**load**" in text.object and "loading 100 stars" in text.object
    assert "posterior means under the survey's population: 40% of the stars" in text.object
