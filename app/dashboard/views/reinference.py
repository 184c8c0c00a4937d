"""Re-inference: re-encode a subset in the background, follow the jobs, compare and use runs."""

from __future__ import annotations

import numpy as np
import panel as pn
import param
from panel.io.state import set_curdoc

from chemlatent.app.dashboard.views.common import StateView
from chemlatent.explore.session_runs import RunsState


def jobs_text(jobs: list) -> str:
    """The session's jobs as a Markdown table."""
    if not jobs:
        return ("No re-encoding jobs yet. Choose the stars (the selection, the candidate table, the "
                "flagged stars or the picked star), a model and posterior samples, then Re-encode.")
    lines = ["| job | state | stars | rate | left | message |", "| --- | --- | --- | --- | --- | --- |"]
    for j in jobs[:8]:
        eta = f"{j.eta_s:.0f} s" if j.eta_s is not None and j.active else ""
        rate = f"{j.rate:,.0f}/s" if j.rate else ""
        lines.append(f"| {j.job_id} | {j.state} | {j.done:,}/{j.total:,} | {rate} | {eta} "
                     f"| {j.message} |")
    return "\n".join(lines)


def run_text(runs: RunsState) -> str:
    """Which latents are in use and how the shown run moved its stars, as Markdown."""
    cmp = runs.comparison()
    head = (f"**Latents in use:** run `{runs.applied}`" if runs.applied
            else "**Latents in use:** the survey's own")
    if cmp is None:
        return head + "  \nNo run shown."
    parts = [head, f"**Run** `{runs.run_id}` ({cmp.attrs.get('model', '')}): {len(cmp):,} stars; "
                   f"shift new - old (median, 95th percentile of |shift|):"]
    for c in ("z_fe", "z_c", "z_alpha"):
        d = cmp[f"d_{c}"].to_numpy()
        d = d[np.isfinite(d)]
        if d.size:
            parts.append(f"- {c}: {np.median(d):+.3f}, {np.percentile(np.abs(d), 95):.3f}")
    return "  \n".join(parts[:2]) + "\n\n" + "\n".join(parts[2:])


class ReinferenceView(StateView):
    """The re-inference tab over the session's :class:`RunsState`."""

    runs = param.ClassSelector(class_=RunsState, doc="the session's jobs and runs")

    def __init__(self, **params) -> None:
        super().__init__(**params)
        rs = self.runs
        self.w_run_source = pn.widgets.RadioButtonGroup.from_param(rs.param.source, color="light")
        self.w_run_model = pn.widgets.Select.from_param(rs.param.model, label="model", width=260)
        self.w_run_samples = pn.widgets.IntInput.from_param(rs.param.samples, label="posterior samples",
                                                            width=130)
        self.w_run_device = pn.widgets.Select.from_param(rs.param.device, label="device", width=100)
        self.b_run_submit = pn.widgets.Button(label="Re-encode", color="primary")
        self.b_run_submit.on_click(self._on_submit)
        self._poller = None  # polls this session's jobs only while one is queued or running
        self.b_run_cancel = pn.widgets.Button(label="Cancel my running job", color="warning")
        self.b_run_cancel.on_click(lambda e: rs.cancel())
        self.run_progress = pn.indicators.Progress(value=0, max=1000, width=420, bar_color="primary",
                                                   visible=False)
        self.jobs_md = pn.pane.Markdown(jobs_text(rs.jobs()), css_classes=["cl-jobs"])
        self.w_run = pn.widgets.Select(label="run", options=self._run_options(), width=330)
        self.w_run.param.watch(lambda e: setattr(rs, "run_id", e.new or ""), "value")
        self.w_show_run = pn.widgets.Checkbox.from_param(
            rs.param.show_run, name="show old -> new positions on the map (purple arrows)")
        self.b_apply = pn.widgets.Button(label="Use this run's latents", color="success")
        self.b_apply.on_click(lambda e: rs.apply())
        self.b_unapply = pn.widgets.Button(label="Back to the survey's latents", color="default")
        self.b_unapply.on_click(lambda e: rs.apply(""))
        self.run_md = pn.pane.Markdown(run_text(rs))
        rs.param.watch(self.refresh_run, ["run_id", "applied"])
        rs.param.watch(lambda e: self._refresh_jobs(), ["jobs_changed"])

    def __panel__(self):
        return pn.Column(
            pn.pane.Markdown("### Re-encode a subset\nRuns in the background on the server's device "
                             "(a GPU when there is one), one job at a time, taking users in turn. "
                             "Results are stored as a new run; nothing is overwritten."),
            pn.Row(pn.pane.Markdown("Stars:"), self.w_run_source),
            pn.Row(self.w_run_model, self.w_run_samples, self.w_run_device),
            pn.Row(self.b_run_submit, self.b_run_cancel), self.run_progress, self.jobs_md,
            pn.layout.Divider(),
            pn.pane.Markdown("### Runs\nShow a run's stars moving from their old to their new "
                             "positions on the map, or use its latents: scores, flags and the "
                             "candidate table then follow the re-encoding."),
            self.w_run, self.w_show_run, pn.Row(self.b_apply, self.b_unapply), self.run_md,
            sizing_mode="stretch_width", name="Re-inference")

    def refresh_run(self, *_) -> None:
        """The run text (a run shown or applied)."""
        self.run_md.object = run_text(self.runs)

    def _run_options(self) -> dict[str, str]:
        opts = {"(none)": ""}
        for r in self.runs.runs():
            label = f"{r.run_id}: {r.n_stars:,} stars, {r.model_name}, {r.samples} samples, {r.created}"
            opts[label] = r.run_id
        return opts

    def _refresh_jobs(self) -> None:
        self.jobs_md.object = jobs_text(self.runs.jobs())
        active = [j for j in self.runs.jobs() if j.active]
        self.run_progress.visible = bool(active)
        if active:
            self.run_progress.value = int(1000 * active[0].fraction)

    def _on_submit(self, *_):
        if self.runs.submit() is not None:
            self._follow_jobs()

    def _follow_jobs(self) -> None:
        """Poll this session's jobs once a second while any is queued or running (idle sessions
        run no periodic callback: with many users those were steady work for the server)."""
        if self._poller is None and self._doc is not None:
            with set_curdoc(self._doc):
                self._poller = pn.state.add_periodic_callback(self._poll_jobs, period=1000)

    def _poll_jobs(self) -> None:
        """Periodic: follow this session's jobs; a finished job's run becomes the shown one."""
        if not self.runs.job_ids:
            return
        if self.runs.poll():
            self.w_run.options = self._run_options()
            self.w_run.value = self.runs.run_id
        self._refresh_jobs()
        if self._poller is not None and not any(j.active for j in self.runs.jobs()):
            self._poller.stop()
            self._poller = None
