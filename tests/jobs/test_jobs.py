"""The shared background queue of subset re-encodings: progress, fairness, limits, cancel."""

from __future__ import annotations

import time

import pytest
from encode_helpers import digest, small_survey

from chemlatent.encode.runs import SubsetEncoding, read_run, runs_dir
from chemlatent.errors import ChemlatentError
from chemlatent.jobs import queue as jobs_mod
from chemlatent.jobs.queue import JobQueue, default_queue
from chemlatent.model.modelio import BUNDLED_NAME


@pytest.fixture(scope="module")
def survey(tiny_survey, tmp_path_factory):
    return small_survey(tiny_survey, tmp_path_factory.mktemp("jobs") / "s", n=400)


@pytest.fixture
def queue():
    q = JobQueue(batch=40, max_subset=300, max_per_user=2, max_total=3, max_samples=4, nice=0)
    yield q
    q.close()


def _ids(survey, a, b):
    return survey.catalog["star_id"].to_numpy()[a:b]


def test_job_runs_to_a_new_run_with_progress(survey, queue):
    base = digest(survey.path / "latents" / f"{BUNDLED_NAME}.parquet")
    jid = queue.submit("ann", survey.path, _ids(survey, 0, 120), device="cpu")
    st = queue.wait(jid, timeout=60)
    assert st.state == "done", st.message
    assert (st.done, st.total) == (120, 120) and st.rate > 0 and st.eta_s == 0
    assert st.run_id and st.run_id in st.message and st.started >= st.submitted
    assert len(read_run(survey.path, st.run_id)) == 120
    assert digest(survey.path / "latents" / f"{BUNDLED_NAME}.parquet") == base
    assert [j.job_id for j in queue.jobs("ann")] == [jid] and queue.jobs("bob") == []


def test_users_take_turns_and_own_jobs_run_in_order(survey):
    q = JobQueue(batch=20, max_subset=400, nice=0, start=False)
    try:
        big = q.submit("ann", survey.path, _ids(survey, 0, 300), device="cpu")  # 15 batches
        big2 = q.submit("ann", survey.path, _ids(survey, 300, 320), device="cpu")
        small = q.submit("bob", survey.path, _ids(survey, 0, 20), device="cpu")  # 1 batch
        assert q.status(big2).ahead == 1 and q.status(small).ahead == 0
        assert q.status(big).state == "queued" and q.status(big).eta_s is None
        q.start()
        s_small, s_big, s_big2 = (q.wait(j, timeout=120) for j in (small, big, big2))
        assert {s.state for s in (s_small, s_big, s_big2)} == {"done"}
        assert s_small.finished < s_big.finished  # bob's one batch is not stuck behind ann's 15
        assert s_big2.started >= s_big.finished  # ann's own jobs run one after the other
    finally:
        q.close()


def test_limits_raise_at_submit(survey, queue, tmp_path):
    q = JobQueue(max_subset=300, max_per_user=2, max_total=3, max_samples=4, max_passes=600, start=False)
    ids = _ids(survey, 0, 10)
    cases = [
        (lambda: q.submit("ann", survey.path, _ids(survey, 0, 301), device="cpu"), "more than the 300"),
        (lambda: q.submit("ann", survey.path, [], device="cpu"), "no stars selected"),
        (lambda: q.submit("ann", survey.path, ids, samples=5, device="cpu"), "between 0 and 4"),
        (lambda: q.submit("ann", survey.path, _ids(survey, 0, 201), samples=2, device="cpu"),
         "201 stars x 3 encodings"),
        (lambda: q.submit("ann", tmp_path, ids, device="cpu"), "not a survey directory"),
        (lambda: q.submit("ann", survey.path, ids, model_dir=tmp_path / "m", device="cpu"), "does not exist"),
    ]
    for call, msg in cases:
        with pytest.raises(ChemlatentError, match=msg):
            call()
    q.submit("ann", survey.path, ids, device="cpu")
    q.submit("ann", survey.path, ids, device="cpu")
    with pytest.raises(ChemlatentError, match="already have 2 re-encoding jobs"):
        q.submit("ann", survey.path, ids, device="cpu")
    q.submit("bob", survey.path, ids, device="cpu")
    with pytest.raises(ChemlatentError, match="queue is full"):
        q.submit("cid", survey.path, ids, device="cpu")
    q.cancel(q.jobs("bob")[0].job_id)  # a cancelled job frees its place
    q.submit("cid", survey.path, ids, device="cpu")
    with pytest.raises(ChemlatentError, match="no re-encoding job"):
        q.status("nope")
    q.close()
    with pytest.raises(ChemlatentError, match="shut down"):
        q.submit("dan", survey.path, ids, device="cpu")


def test_cancel_queued_and_running_jobs(survey, queue, monkeypatch):
    real = SubsetEncoding.step

    def slow(self):
        time.sleep(0.05)
        return real(self)

    monkeypatch.setattr(SubsetEncoding, "step", slow)
    before = {p.name for p in runs_dir(survey.path).glob("*")} if runs_dir(survey.path).exists() else set()
    running = queue.submit("ann", survey.path, _ids(survey, 0, 300), device="cpu")
    waiting = queue.submit("ann", survey.path, _ids(survey, 0, 40), device="cpu")
    assert queue.cancel(waiting) and queue.status(waiting).state == "cancelled"
    t0 = time.monotonic()
    while queue.status(running).done == 0 and time.monotonic() - t0 < 30:
        time.sleep(0.01)
    assert queue.cancel(running)
    st = queue.wait(running, timeout=30)
    assert st.state == "cancelled" and 0 < st.done < st.total and st.run_id is None
    assert "cancelled after" in st.message
    assert not queue.cancel(running)  # already finished
    after = {p.name for p in runs_dir(survey.path).glob("*")} if runs_dir(survey.path).exists() else set()
    assert after == before  # neither a run nor a temporary file


def test_a_failed_job_does_not_stop_the_queue(survey, queue):
    bad = queue.submit("ann", survey.path, [10**9], device="cpu")
    good = queue.submit("bob", survey.path, _ids(survey, 0, 30), samples=2, device="cpu")
    st = queue.wait(bad, timeout=30)
    assert st.state == "failed" and "not in" in st.message and st.run_id is None
    st2 = queue.wait(good, timeout=60)
    assert st2.state == "done" and st2.samples == 2
    assert "z_fe_sigma" in read_run(survey.path, st2.run_id).columns


def test_default_queue_is_shared(monkeypatch):
    monkeypatch.setattr(jobs_mod, "_DEFAULT", None)
    q = default_queue(max_subset=10, start=False)
    try:
        assert default_queue() is q and q.max_subset == 10
    finally:
        q.close()
