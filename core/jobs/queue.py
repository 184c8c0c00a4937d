"""A background queue of subset re-encodings shared by every dashboard session.

One worker thread owns the device (one GPU, or the CPU) and advances jobs a batch at a
time, taking users in turn (round robin): a user's small job is not stuck behind another
user's large one, and each user's own jobs run in the order submitted. Limits keep one user
from exhausting the machine: stars per job (``max_subset``), posterior samples per job
(``max_samples``), star encodings per job, stars x (1 + samples) (``max_passes``),
queued-or-running jobs per user (``max_per_user``) and in all (``max_total``); a submission
over a limit raises :class:`ChemlatentError` at once.

Progress (done, total, rate, ETA) is read with :meth:`JobQueue.status`; :meth:`cancel`
takes effect between batches. A finished job's result is a run
(:mod:`chemlatent.encode.runs`); a failed or cancelled one writes nothing.
Sessions share :func:`default_queue`.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from chemlatent.errors import ChemlatentError

log = logging.getLogger(__name__)
ACTIVE = ("queued", "running")


@dataclass(frozen=True)
class JobStatus:
    """A snapshot of one job. ``state``: queued, running, done, failed or cancelled;
    ``rate`` in stars/s of wall time since the job started; ``eta_s`` None until known;
    ``ahead``: the user's own jobs still before this one."""

    job_id: str
    user: str
    state: str
    done: int
    total: int
    rate: float
    eta_s: float | None
    message: str
    run_id: str | None
    run_path: str | None
    survey_dir: str
    model: str
    samples: int
    device: str
    submitted: float
    started: float | None
    finished: float | None
    ahead: int = 0

    @property
    def active(self) -> bool:
        return self.state in ACTIVE

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 0.0


@dataclass
class _Job:
    job_id: str
    user: str
    survey_dir: str
    star_ids: np.ndarray
    model_dir: str | None
    samples: int
    device: str
    precision: str
    base: str | None
    seed: int
    submitted: float = field(default_factory=time.time)
    state: str = "queued"
    done: int = 0
    message: str = "queued"
    run_id: str | None = None
    run_path: str | None = None
    started: float | None = None
    finished: float | None = None
    cancel: threading.Event = field(default_factory=threading.Event)
    work: object | None = None


class JobQueue:
    """Background subset re-encoding for many users on one device.

    ``batch``: stars per step (default: see :func:`chemlatent.encode.runs.default_batch`);
    ``nice``: CPU priority added to the worker thread on Linux, so that pages stay responsive;
    ``keep``: finished jobs remembered for :meth:`status`.
    """

    def __init__(self, *, max_subset: int = 100_000, max_samples: int = 64, max_passes: int = 2_000_000,
                 max_per_user: int = 3, max_total: int = 20, batch: int | None = None, nice: int = 10,
                 keep: int = 200, models_cached: int = 2, start: bool = True) -> None:
        self.max_subset, self.max_samples = int(max_subset), int(max_samples)
        self.max_passes = int(max_passes)
        self.max_per_user, self.max_total = int(max_per_user), int(max_total)
        self.batch, self.nice, self.keep = batch, nice, int(keep)
        self._cond = threading.Condition()
        self._jobs: OrderedDict[str, _Job] = OrderedDict()
        self._queues: dict[str, deque[_Job]] = {}
        self._turn: deque[str] = deque()  # users with work, in round-robin order
        self._models: OrderedDict[tuple[str, str], object] = OrderedDict()
        self._models_cached = int(models_cached)
        self._closed = False
        self._thread: threading.Thread | None = None
        if start:
            self.start()

    # -- the API sessions call -----------------------------------------------------------
    def submit(self, user: str, survey_dir: str | Path, star_ids, model_dir: str | Path | None = None,
               samples: int = 0, device: str = "auto", *, precision: str = "auto",
               base: str | None = None, seed: int = 0) -> str:
        """Queue a re-encoding of ``star_ids``; returns the job id. Raises
        :class:`ChemlatentError` (one line) for bad input or when a limit is reached."""
        from chemlatent.io.store import SURVEY_JSON
        from chemlatent.model.device import pick_device
        from chemlatent.model.modelio import load_config

        ids = np.unique(np.asarray(star_ids, dtype=np.int64).ravel())
        if ids.size == 0:
            raise ChemlatentError("no stars selected: select the stars to re-encode first")
        if ids.size > self.max_subset:
            raise ChemlatentError(f"{ids.size:,} stars is more than the {self.max_subset:,} one re-encoding "
                                  "job may take: select fewer, or encode the whole survey with "
                                  "chemlatent encode")
        samples = int(samples)
        if not 0 <= samples <= self.max_samples:
            raise ChemlatentError(f"posterior samples must be between 0 and {self.max_samples}, "
                                  f"got {samples}")
        if ids.size * (1 + samples) > self.max_passes:
            raise ChemlatentError(f"{ids.size:,} stars x {1 + samples} encodings each is more than one "
                                  f"job may do ({self.max_passes:,}): select fewer stars or ask for "
                                  "fewer samples")
        if not (Path(survey_dir) / SURVEY_JSON).exists():
            raise ChemlatentError(f"{survey_dir} is not a survey directory (no {SURVEY_JSON})")
        mdir, _ = load_config(model_dir)
        pick_device(device)  # a clear error now if CUDA is asked for and absent
        with self._cond:
            if self._closed:
                raise ChemlatentError("the re-encoding queue is shut down")
            active = [j for j in self._jobs.values() if j.state in ACTIVE]
            mine = sum(1 for j in active if j.user == user)
            if mine >= self.max_per_user:
                raise ChemlatentError(f"you already have {mine} re-encoding jobs queued or running "
                                      "(the limit per user): wait for one to finish or cancel one")
            if len(active) >= self.max_total:
                raise ChemlatentError(f"the re-encoding queue is full ({len(active)} jobs): try again "
                                      "when some have finished")
            job = _Job(uuid.uuid4().hex[:12], str(user), str(survey_dir), ids,
                       None if model_dir is None else str(mdir), samples, device, precision, base, seed)
            self._jobs[job.job_id] = job
            self._queues.setdefault(job.user, deque()).append(job)
            if job.user not in self._turn:
                self._turn.append(job.user)
            self._forget_old()
            self._cond.notify_all()
        return job.job_id

    def status(self, job_id: str) -> JobStatus:
        with self._cond:
            return self._snapshot(self._get(job_id))

    def jobs(self, user: str | None = None) -> list[JobStatus]:
        """Snapshots of the remembered jobs (one user's, or everyone's), oldest first."""
        with self._cond:
            return [self._snapshot(j) for j in self._jobs.values() if user is None or j.user == user]

    def cancel(self, job_id: str) -> bool:
        """Cancel a queued job at once, a running one after its current batch. False when
        the job had already finished."""
        with self._cond:
            job = self._get(job_id)
            if job.state not in ACTIVE:
                return False
            job.cancel.set()
            if job.state == "queued":
                self._end(job, "cancelled", "cancelled before it started")
            self._cond.notify_all()
            return True

    def wait(self, job_id: str, timeout: float | None = None) -> JobStatus:
        """Block until the job has finished (or ``timeout`` seconds); returns its status."""
        end = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            job = self._get(job_id)
            while job.state in ACTIVE:
                left = None if end is None else end - time.monotonic()
                if left is not None and left <= 0:
                    break
                self._cond.wait(left)
            return self._snapshot(job)

    def start(self) -> None:
        with self._cond:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, daemon=True, name="chemlatent-jobs")
                self._thread.start()

    def close(self, timeout: float | None = 10.0) -> None:
        """Cancel everything and stop the worker thread."""
        with self._cond:
            self._closed = True
            for job in self._jobs.values():
                if job.state in ACTIVE:
                    job.cancel.set()
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)

    # -- internals ---------------------------------------------------------------------
    def _get(self, job_id: str) -> _Job:
        try:
            return self._jobs[job_id]
        except KeyError:
            raise ChemlatentError(f"no re-encoding job {job_id!r} (finished long ago, or never "
                                  "submitted)") from None

    def _snapshot(self, j: _Job) -> JobStatus:
        now = j.finished or time.time()
        rate = j.done / (now - j.started) if j.started and now > j.started and j.done else 0.0
        if j.state == "done":
            eta = 0.0
        else:
            eta = (j.star_ids.size - j.done) / rate if rate > 0 and j.state in ACTIVE else None
        q = self._queues.get(j.user, ())
        ahead = next((i for i, x in enumerate(q) if x is j), 0)
        return JobStatus(j.job_id, j.user, j.state, j.done, int(j.star_ids.size), round(rate, 1),
                         None if eta is None else round(eta, 1), j.message, j.run_id, j.run_path,
                         j.survey_dir, j.model_dir or "bundled", j.samples, j.device, j.submitted,
                         j.started, j.finished, ahead)

    def _end(self, job: _Job, state: str, message: str) -> None:
        """Mark a job finished and drop it from its user's queue (lock held)."""
        job.state, job.message, job.finished = state, message, time.time()
        q = self._queues.get(job.user)
        if q is not None and job in q:
            q.remove(job)
            if not q:
                del self._queues[job.user]
                if job.user in self._turn:
                    self._turn.remove(job.user)
        self._cond.notify_all()

    def _forget_old(self) -> None:
        done = [k for k, j in self._jobs.items() if j.state not in ACTIVE]
        for k in done[:max(0, len(done) - self.keep)]:
            del self._jobs[k]

    def _next(self) -> _Job | None:
        """The next user's head job (lock held); the user goes to the back of the line."""
        while self._turn:
            user = self._turn[0]
            self._turn.rotate(-1)
            q = self._queues.get(user)
            if q:
                return q[0]
            self._turn.remove(user)
        return None

    def _loop(self) -> None:
        if self.nice and hasattr(os, "setpriority"):
            try:
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), self.nice)
            except OSError:
                pass
        while True:
            with self._cond:
                job = self._next()
                while job is None and not self._closed:
                    self._cond.wait()
                    job = self._next()
                if job is None:
                    return
            self._advance(job)

    def _advance(self, job: _Job) -> None:
        """One step of one job: start it, encode a batch, or finish, cancel or fail it."""
        with self._cond:
            if job.state not in ACTIVE:
                return
            if job.state == "queued":
                job.state, job.started, job.message = "running", time.time(), "starting"
        try:
            if job.cancel.is_set():
                self._stop(job, "cancelled", f"cancelled after {job.done:,} of {job.star_ids.size:,} stars")
                return
            if job.work is None:
                self._begin(job)
            more = job.work.step()
            with self._cond:
                job.done = job.work.done
                job.message = f"encoded {job.done:,} of {job.star_ids.size:,} stars"
            if not more:
                info = job.work.finish()
                with self._cond:
                    job.run_id, job.run_path = info.run_id, str(info.path)
                    job.work = None
                    self._end(job, "done", f"run {info.run_id}: {info.n_stars:,} stars")
        except Exception as exc:  # a job's failure must not stop the queue
            msg = str(exc) if isinstance(exc, ChemlatentError) else f"{type(exc).__name__}: {exc}"
            if not isinstance(exc, ChemlatentError):
                log.exception("re-encoding job %s failed", job.job_id)
            self._stop(job, "failed", msg)

    def _begin(self, job: _Job) -> None:
        from chemlatent.encode.runs import SubsetEncoding

        job.work = SubsetEncoding(job.survey_dir, job.star_ids, self._model(job.model_dir, job.device),
                                  samples=job.samples, device=job.device, precision=job.precision,
                                  batch=self.batch, seed=job.seed, base=job.base)

    def _stop(self, job: _Job, state: str, message: str) -> None:
        work, job.work = job.work, None
        if work is not None:
            try:
                work.abort()
            except Exception:
                log.exception("cleaning up job %s", job.job_id)
        with self._cond:
            self._end(job, state, message)

    def _model(self, model_dir: str | None, device: str):
        """A loaded model, kept for the next job that asks for the same one."""
        from chemlatent.model.device import pick_device
        from chemlatent.model.modelio import load_model, resolve_model_dir

        dev = str(pick_device(device))
        key = (str(resolve_model_dir(model_dir).resolve()), dev)
        model = self._models.pop(key, None)
        if model is None:
            model = load_model(model_dir, device=dev)
        self._models[key] = model
        while len(self._models) > self._models_cached:
            self._models.popitem(last=False)
        return model


_DEFAULT: JobQueue | None = None
_DEFAULT_LOCK = threading.Lock()


def default_queue(**options) -> JobQueue:
    """The process-wide queue every session shares (created, with ``options``, on first use)."""
    global _DEFAULT
    with _DEFAULT_LOCK:
        if _DEFAULT is None:
            _DEFAULT = JobQueue(**options)
        return _DEFAULT
