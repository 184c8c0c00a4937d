"""Re-inference from the explorer: submit subsets, follow jobs, view and apply new runs.

GUI-free, like :mod:`chemlatent.explore.state`. :class:`RunsState` belongs to one browser
session (its jobs, the run it compares against the base latents, whether the map shows
the run) and talks to the process-wide :func:`chemlatent.jobs.queue.default_queue`, which every
session shares so one device is used fairly. Applying a run swaps the session's
:class:`~chemlatent.explore.state.SurveyData` for one whose latents have the run's stars replaced
(:func:`chemlatent.encode.runs.merged_latents`): scores, flags and the candidate table then
follow the re-encoding. Such data are cached per run and shared by sessions.
"""

from __future__ import annotations

import threading
import uuid
import weakref
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pandas as pd
import param

from chemlatent.errors import ChemlatentError

RUN_SOURCES: tuple[str, ...] = ("selection", "candidate table", "flagged", "picked star")
MAX_ARROWS = 5000

# per base SurveyData (held weakly: a base that is gone takes its applied copies with it)
_APPLIED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_APPLIED_LOCK = threading.Lock()
APPLIED_CACHED = 2


def available_models(data) -> dict[str, str | None]:
    """Models a user may choose in the browser (label -> model directory, None = bundled):
    the survey's own model, the bundled one, and model directories under ``<survey>/models``.
    Only these are offered: nothing typed in the browser becomes a server path."""
    from chemlatent.model.modelio import bundled_model_dir

    out: dict[str, str | None] = {}
    seen: set[Path] = set()  # one entry per model directory, however it is reached
    if data.model_dir is not None:
        out[f"{data.model_name} (this survey's)"] = str(data.model_dir)
        seen.add(Path(data.model_dir).resolve())
    bundled = bundled_model_dir().resolve()
    if bundled not in seen:
        out["bundled model"] = None
        seen.add(bundled)
    root = Path(data.path) / "models"
    if root.is_dir():
        for d in sorted(root.iterdir()):
            if (d / "config.json").exists() and d.resolve() not in seen:
                out[f"{d.name} (models/)"] = str(d)
                seen.add(d.resolve())
    return out


def applied_data(base, run_id: str):
    """A :class:`SurveyData` whose latents have run ``run_id``'s stars replaced (shared)."""
    from chemlatent.encode.runs import merged_latents

    with _APPLIED_LOCK:
        cache: OrderedDict[str, object] = _APPLIED.setdefault(base, OrderedDict())
        if run_id in cache:
            cache.move_to_end(run_id)
            return cache[run_id]
    merged = merged_latents(base.path, run_id, base=base.model_name)
    out = base.with_latents(merged, note=f"latents with run {run_id} applied")
    with _APPLIED_LOCK:
        cache[run_id] = out
        while len(cache) > APPLIED_CACHED:
            cache.popitem(last=False)
    return out


class RunsState(param.Parameterized):
    """One session's re-inference controls and results."""

    source = param.Selector(default="selection", objects=list(RUN_SOURCES))
    model = param.Selector(default=None, objects=[None], allow_None=True, doc="label of the model")
    samples = param.Integer(default=0, bounds=(0, 64), doc="posterior samples per star")
    device = param.Selector(default="auto", objects=["auto", "cpu", "cuda"])
    run_id = param.String(default="", doc="the run shown (compared with the base latents)")
    show_run = param.Boolean(default=False, doc="draw old -> new positions on the map")
    applied = param.String(default="", doc="run whose latents the session uses ('' = base)")
    jobs_changed = param.Event(doc="fires when jobs or runs change")

    def __init__(self, explorer, queue=None, user: str | None = None, **params) -> None:
        super().__init__(**params)
        self.explorer = explorer
        self.base = explorer.data
        self.user = user or f"session-{uuid.uuid4().hex[:8]}"
        self._queue = queue
        self.models = available_models(self.base)
        self.param.model.objects = list(self.models)
        self.model = next(iter(self.models))
        self.job_ids: list[str] = []
        self._reported: set[str] = set()  # runs and ended jobs already announced
        self._compare: pd.DataFrame | None = None

    @property
    def queue(self):
        if self._queue is None:
            from chemlatent.jobs.queue import default_queue

            self._queue = default_queue()
        return self._queue

    # -- submitting ----------------------------------------------------------------------
    def subset_ids(self) -> np.ndarray:
        """star_ids the chosen source names now."""
        ex = self.explorer
        f = ex.data.frame
        if self.source == "picked star":
            return np.zeros(0, np.int64) if ex.picked is None else np.array([ex.picked], np.int64)
        if self.source == "flagged":
            mask = ex.flagged
        elif self.source == "candidate table":
            mask = ex.table_mask()
        else:
            mask = ex.selected
        return f["star_id"].to_numpy(np.int64)[mask]

    def submit(self) -> str | None:
        """Queue a job for the chosen subset; returns its id (None, with a message, on refusal)."""
        ids = self.subset_ids()
        try:
            job = self.queue.submit(self.user, self.base.path, ids, self.models.get(self.model),
                                    samples=int(self.samples), device=self.device,
                                    base=self.base.model_name)
        except ChemlatentError as exc:
            self.explorer.message = f"re-encoding refused: {exc}"
            return None
        self.job_ids.append(job)
        self.explorer.message = f"re-encoding {ids.size:,} stars queued (job {job})"
        self.param.trigger("jobs_changed")
        return job

    def jobs(self) -> list:
        """This session's jobs (newest first), as :class:`chemlatent.jobs.queue.JobStatus`."""
        out = []
        for j in reversed(self.job_ids):
            try:
                out.append(self.queue.status(j))
            except ChemlatentError:
                continue
        return out

    def cancel(self, job_id: str | None = None) -> bool:
        """Cancel a job of this session (default: the newest active one)."""
        active = [s for s in self.jobs() if s.active]
        target = job_id or (active[0].job_id if active else None)
        if target is None or target not in self.job_ids:
            self.explorer.message = "no re-encoding job of yours is running"
            return False
        ok = self.queue.cancel(target)
        self.explorer.message = f"job {target} cancelled" if ok else f"job {target} had already finished"
        self.param.trigger("jobs_changed")
        return ok

    def poll(self) -> bool:
        """Check this session's jobs; when one just finished, show its run. True if changed."""
        changed = False
        for s in self.jobs():
            if s.state == "done" and s.run_id and s.run_id not in self._reported:
                self._reported.add(s.run_id)
                self.run_id = s.run_id
                self.explorer.message = f"re-encoding done: {s.message}"
                changed = True
            elif s.state in ("failed", "cancelled") and s.job_id not in self._reported:
                self._reported.add(s.job_id)
                self.explorer.message = f"re-encoding {s.state}: {s.message}"
                changed = True
        if changed:
            self.param.trigger("jobs_changed")
        return changed

    # -- results -------------------------------------------------------------------------
    def runs(self) -> list:
        """Runs stored for this survey (any session's), newest first."""
        from chemlatent.encode.runs import list_runs

        try:
            return list_runs(self.base.path)
        except ChemlatentError:
            return []

    @param.depends("run_id", watch=True)
    def _forget_compare(self) -> None:
        self._compare = None

    def comparison(self) -> pd.DataFrame | None:
        """Old and new latents of the shown run's stars (None when no run is shown)."""
        if not self.run_id:
            return None
        if self._compare is None:
            from chemlatent.encode.runs import compare_runs

            try:
                self._compare = compare_runs(self.base.path, self.run_id, base=self.base.model_name)
            except ChemlatentError as exc:
                self.explorer.message = str(exc)
                return None
        return self._compare

    def arrows(self, x: str, y: str) -> pd.DataFrame:
        """Segments old -> new on the map axes for the shown run (at most MAX_ARROWS; only
        axes that re-encoding changes move, others keep the base value)."""
        cmp = self.comparison()
        if cmp is None or not len(cmp):
            return pd.DataFrame(columns=["x0", "y0", "x1", "y1", "star_id"])
        cmp = cmp[cmp["in_base"]]
        if len(cmp) > MAX_ARROWS:
            cmp = cmp.sample(MAX_ARROWS, random_state=0)
        f = self.base.frame
        idx = pd.Index(f["star_id"]).get_indexer(cmp["star_id"])

        def ends(axis: str):
            if f"{axis}_old" in cmp.columns:
                return cmp[f"{axis}_old"].to_numpy(), cmp[f"{axis}_new"].to_numpy()
            v = f[axis].to_numpy()[idx].astype(np.float64)
            return v, v

        x0, x1 = ends(x)
        y0, y1 = ends(y)
        return pd.DataFrame({"x0": x0, "y0": y0, "x1": x1, "y1": y1,
                             "star_id": cmp["star_id"].to_numpy()})

    def apply(self, run_id: str | None = None) -> None:
        """Use the run's latents in this session ('' or None: back to the base latents)."""
        run_id = run_id if run_id is not None else self.run_id
        try:
            data = applied_data(self.base, run_id) if run_id else self.base
        except ChemlatentError as exc:
            self.explorer.message = f"cannot apply run {run_id}: {exc}"
            return
        self.explorer.set_data(data)
        self.applied = run_id or ""
        self.explorer.message = (f"scores, flags and the table now use run {run_id}" if run_id
                                 else "back to the survey's own latents")
