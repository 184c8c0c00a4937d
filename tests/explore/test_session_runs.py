"""Re-inference from the explorer's state: submit a subset, follow it, compare and apply."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from chemlatent.explore.session_runs import RunsState, available_models
from chemlatent.explore.state import ExplorerState, SurveyData
from chemlatent.jobs.queue import JobQueue


@pytest.fixture(scope="module")
def encoded(encoded_tiny):
    return encoded_tiny


@pytest.fixture()
def queue():
    q = JobQueue(nice=0)
    yield q
    q.close()


def test_submit_follow_compare_apply_and_go_back(encoded, queue, tmp_path):
    data = SurveyData(encoded, db=str(tmp_path / "ann.sqlite"))
    ex = ExplorerState(data)
    runs = RunsState(ex, queue=queue, user="alice")
    # one entry per model: the survey's model here is the bundled one, offered once
    from chemlatent.model.modelio import bundled_model_dir

    models = available_models(data)
    dirs = [Path(v).resolve() if v else bundled_model_dir().resolve() for v in models.values()]
    assert len(dirs) == len(set(dirs)) and bundled_model_dir().resolve() in dirs
    x, y = ex.xy
    ex.select_box((np.nanmin(x), np.nanmin(y), np.nanmedian(x), np.nanmedian(y)))
    n_sel = ex.n_selected
    assert n_sel > 10
    runs.samples = 4
    job = runs.submit()
    assert job is not None and "queued" in ex.message
    st = queue.wait(job, timeout=120)
    assert st.state == "done", st.message
    assert runs.poll() and runs.run_id == st.run_id
    assert not runs.poll()  # reported once
    assert [r.run_id for r in runs.runs()][0] == st.run_id
    cmp = runs.comparison()
    assert len(cmp) == n_sel and cmp["in_base"].all()
    arrows = runs.arrows("z_fe", "z_c")
    assert len(arrows) == n_sel
    assert np.isfinite(arrows[["x0", "y0", "x1", "y1"]].to_numpy()).all()
    # a different RNG path (posterior samples) moves some stars a little, never wildly
    assert np.nanmax(np.abs(cmp["d_z_fe"])) < 5
    before_flags = ex.n_flagged
    ex.pick_star(int(arrows["star_id"].iat[0]))
    runs.apply()
    assert runs.applied == st.run_id and ex.data is not data
    assert ex.data.n == data.n and ex.n_selected == n_sel and ex.picked is not None
    new_z = ex.data.frame.set_index("star_id").loc[cmp["star_id"], "z_fe"].to_numpy()
    assert np.allclose(new_z, cmp["z_fe_new"].to_numpy(), atol=1e-6)
    assert isinstance(ex.n_flagged, int)
    runs.apply("")
    assert ex.data is data and ex.n_flagged == before_flags and runs.applied == ""


def test_refusals_and_cancel_leave_clear_messages(encoded, queue, tmp_path):
    data = SurveyData(encoded, db=str(tmp_path / "ann.sqlite"))
    ex = ExplorerState(data)
    runs = RunsState(ex, queue=queue, user="bob")
    assert runs.submit() is None and "refused" in ex.message  # empty selection
    small = JobQueue(max_subset=5, start=False)
    r2 = RunsState(ex, queue=small, user="carol")
    ex.select_ids(data.frame["star_id"].to_numpy()[:50])
    assert r2.submit() is None and "more than" in ex.message
    assert not runs.cancel() and "no re-encoding job" in ex.message
    paused = JobQueue(start=False)
    r3 = RunsState(ex, queue=paused, user="dave")
    job = r3.submit()
    assert job is not None and r3.cancel()
    assert paused.status(job).state == "cancelled"
    assert r3.poll() and "cancelled" in ex.message
    small.close()
    paused.close()


def test_exports_over_the_row_cap_are_refused_with_one_line(encoded, tmp_path, monkeypatch):
    import chemlatent.explore.state.export as session_mod
    from chemlatent.errors import ChemlatentError

    ex = ExplorerState(SurveyData(encoded, db=str(tmp_path / "ann.sqlite")))
    ex.table_source = "selection"
    ex.select_ids(ex.data.frame["star_id"].to_numpy()[:30])
    monkeypatch.setattr(session_mod, "MAX_EXPORT_ROWS", 10)
    with pytest.raises(ChemlatentError, match="more than a download may hold"):
        ex.export("csv")
    assert "more than a download" in ex.send_samp(hub_timeout=0.1)
    monkeypatch.setattr(session_mod, "MAX_EXPORT_ROWS", 100)
    name, data = ex.export("csv")
    assert name.endswith(".csv") and data.count(b"\n") > 30
