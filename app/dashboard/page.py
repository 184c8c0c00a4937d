"""The Panel dashboard: a thin view over :class:`chemlatent.explore.state.ExplorerState`.

``make_app(data)`` builds one browser session's page (its own ``ExplorerState`` over the
shared :class:`chemlatent.explore.state.SurveyData`); ``serve(data, ...)`` serves it with
``pn.serve({'/': ...})`` so every session gets fresh state. The numbers (masks, nearest
star, rule counts, spectra, exports) all come from core; this module only draws and wires
widgets and HoloViews streams to the state.
"""

from __future__ import annotations

import io
import logging
import threading
import weakref
from functools import partial

import holoviews as hv
import numpy as np
import pandas as pd
import panel as pn
from panel.io.state import set_curdoc

from chemlatent.app.dashboard.live_plots import (
    OVERLAY_STYLES,
    HistogramStrip,
    MapOverlays,
    SpectrumFigures,
    apply_in_document,
)
from chemlatent.app.dashboard.memory import TrimAfterSessions, tune_allocator
from chemlatent.errors import ChemlatentError
from chemlatent.explore.mapraster import rasterize_map
from chemlatent.explore.session_runs import RunsState
from chemlatent.explore.spectrum import GROUP_COLORS, GROUP_LABELS, zoom_choices
from chemlatent.explore.state import HOVER_COLUMNS, ExplorerState, SurveyData

log = logging.getLogger("chemlatent.dashboard")
hv.extension("bokeh", logo=False)

LABELS = {"z_fe": "z_Fe", "z_c": "z_C", "z_alpha": "z_alpha", "w_0": "w_0 (Teff)", "w_1": "w_1 (logg)",
          "teff_pred": "predicted Teff (K)", "logg_pred": "predicted log g", "fe_h": "[Fe/H] (truth)",
          "c_fe": "[C/Fe] (truth)", "alpha_fe": "[alpha/Fe] (truth)", "teff": "Teff (truth)",
          "logg": "log g (truth)", "snr": "S/N", "chi2": "reconstruction chi2",
          "score": "anomaly score (Mahalanobis d2)", "s_c_cond": "z_C sigma at its z_Fe",
          "s_alpha_cond": "z_alpha sigma at its z_Fe", "density": "density", "flagged": "flagged"}
MAP_SIZE = (560, 480)
SPEC_WIDTH = 560
PLAIN_OVERLAY_MAX = 20000  # map overlays of more stars draw an evenly spaced subset
CALLBACK_THREADS = 4
PREPARING_TITLE = "chemlatent explorer: preparing the survey"


def warm_up(data: SurveyData) -> None:
    """Compile the map's aggregation and the selection digests once (the first call of
    each costs a second or two), so the first page and the first selection are fast."""
    f = data.frame.iloc[: min(len(data.frame), 2000)]
    for color in ("density", "snr" if "snr" in f else "z_fe"):
        rasterize_map(f, "z_fe", "z_c", color, width=50, height=50)
    for c in ExplorerState.SUMMARY_COLUMNS:
        data.digest(c)


def spectrum_figures(data: SurveyData) -> SpectrumFigures:
    """The spectrum panel's figures for a survey's grid and its model's windows."""
    wave = data.survey.grid.wave
    return SpectrumFigures(data.windows, (float(wave[0]), float(wave[-1])), width=SPEC_WIDTH)


def _weak_hook(method):
    """A HoloViews hook that calls ``method`` without keeping its object alive: plot options
    live in a global HoloViews registry, so a hook holding the dashboard would keep every
    closed session in memory."""
    ref = weakref.WeakMethod(method)

    def hook(plot, element) -> None:
        m = ref()
        if m is not None:
            m(plot, element)

    return hook


class Dashboard:
    """One session's widgets and plots."""

    def __init__(self, data: SurveyData, state: ExplorerState | None = None, queue=None,
                 samp: bool = True) -> None:
        self.state = state or ExplorerState(data)
        st = self.state
        self._doc = None  # plots are changed directly while the page is built (see _apply)
        self.runs = RunsState(st, queue=queue, user=st.user)
        self._busy = threading.Lock()
        # -- controls ------------------------------------------------------
        self.w_x = pn.widgets.Select.from_param(st.param.x_axis, label="x axis", width=140)
        self.w_y = pn.widgets.Select.from_param(st.param.y_axis, label="y axis", width=140)
        self.w_color = pn.widgets.Select.from_param(st.param.color_by, label="colour", width=140)
        self.w_mode = pn.widgets.RadioButtonGroup.from_param(st.param.selection_mode, color="light")
        self.b_clear = pn.widgets.Button(label="Clear selection", color="default")
        self.b_clear.on_click(lambda e: st.clear_selection())
        self.w_preset = pn.widgets.Select.from_param(st.param.preset, label="rule preset", width=140)
        self.w_unit = pn.widgets.RadioButtonGroup.from_param(st.param.unit, color="light")
        self.s_elem_sigma = self._throttled_slider("element_sigma", "element cut (sigma at its z_Fe)")
        self.s_fe_sigma = self._throttled_slider("fe_sigma", "metal-poor: z_Fe below median by (sigma)")
        self.s_elem_dex = self._throttled_slider("element_dex", "element cut (dex)")
        self.s_fe_dex = self._throttled_slider("fe_dex", "[Fe/H] below (dex)")
        self.counts_md = pn.pane.Markdown(self._counts_text(), name="flag counts", width=300)
        self.message = pn.pane.Markdown("", name="status", css_classes=["cl-status"])
        # -- map -----------------------------------------------------------
        self.overlays = MapOverlays(PLAIN_OVERLAY_MAX)
        self.map_pane = pn.pane.HoloViews(self._build_map(), width=MAP_SIZE[0], height=MAP_SIZE[1] + 40,
                                          linked_axes=False, css_classes=["cl-map"])
        self.sel_md = pn.pane.Markdown(self._selection_text(), name="selection")
        self.hist_pane = pn.pane.Bokeh(self._histogram_layout(), height=190)
        # -- spectrum -------------------------------------------------------
        self.w_zoom = pn.widgets.Select(label="zoom to", options=list(zoom_choices(data.windows)), width=260)
        self.w_star = pn.widgets.IntInput(label="star_id", value=st.picked, width=120)
        self.spec_info = pn.pane.Markdown("Click a star on the map (tap tool) to see its spectrum.")
        self.spectrum = spectrum_figures(data)
        self.spectrum.top.css_classes = ["cl-spectrum"]  # a Bokeh pane shows the figure itself
        self.spec_pane = pn.pane.Bokeh(self.spectrum.top, height=310, width=SPEC_WIDTH + 10)
        self.res_pane = pn.pane.Bokeh(self.spectrum.res, height=150, width=SPEC_WIDTH + 10)
        self.b_stack = pn.widgets.Button(label="Stack selection vs similar Teff/logg", color="primary")
        self.b_stack.on_click(self._on_stack)
        wdim = hv.Dimension("wave", label="vacuum wavelength (A)")
        self.stack_pane = pn.pane.HoloViews(
            hv.Curve([], wdim, "mean flux").opts(height=240, width=2 * SPEC_WIDTH,
                                                 title="select stars, then stack them"),
            height=250, linked_axes=False)
        self.stack_diff_pane = pn.pane.HoloViews(
            hv.Curve([], wdim, "selection - survey").opts(height=120, width=2 * SPEC_WIDTH),
            height=130, linked_axes=False)
        self.stack_info = pn.pane.Markdown("")
        # -- candidates ------------------------------------------------------
        self.w_source = pn.widgets.RadioButtonGroup.from_param(st.param.table_source, color="light")
        self.table = pn.widgets.Tabulator(self._table_frame(), pagination="remote", page_size=st.page_size,
                                          selectable="checkbox", disabled=True, show_index=False,
                                          sizing_mode="stretch_width", height=560)
        self.table.on_click(self._on_table_click)
        self.w_note = pn.widgets.TextInput(label="note", placeholder="optional note", width=260)
        self.b_accept = pn.widgets.Button(label="Accept", color="success")
        self.b_reject = pn.widgets.Button(label="Reject", color="danger")
        self.b_cand = pn.widgets.Button(label="Mark candidate", color="default")
        self.b_note = pn.widgets.Button(label="Save note", color="default")
        for b, v in ((self.b_accept, "accepted"), (self.b_reject, "rejected"), (self.b_cand, "candidate"),
                     (self.b_note, None)):
            b.on_click(partial(self._on_verdict, v))
        self.w_format = pn.widgets.Select.from_param(st.param.export_format, label="format", width=110)
        self.download = pn.widgets.FileDownload(callback=self._export_callback, filename=st.export_filename(),
                                                color="primary", label="Download table", width=220)
        # SAMP reaches the hub on the server's machine: offered only when that is the user's own
        self.b_samp = pn.widgets.Button(label="Send to TOPCAT (SAMP)", color="default", visible=samp)
        self.b_samp.on_click(self._on_samp)
        self.samp_note = pn.pane.Markdown(
            "" if samp else "*SAMP is off: this explorer runs on another machine and cannot reach "
            "your TOPCAT. Download the table as VOTable and open it in TOPCAT instead.*",
            visible=not samp, css_classes=["cl-samp-off"])
        self._build_runs_widgets()
        # -- wiring ------------------------------------------------------------
        st.param.watch(self._on_axes, ["x_axis", "y_axis", "color_by"])
        st.param.watch(self._on_selection, ["selection_version"])
        st.param.watch(self._on_flags, ["flag_version"])
        st.param.watch(self._on_unit, ["unit", "preset"])
        st.param.watch(self._on_pick, ["picked"])
        st.param.watch(self._on_table_source, ["table_source", "annotation_version"])
        st.param.watch(self._on_message, ["message"])
        st.param.watch(lambda e: setattr(self.download, "filename", st.export_filename()),
                       ["export_format", "table_source", "preset"])
        self.w_zoom.param.watch(self._on_zoom, "value")
        self.w_star.param.watch(self._on_star_input, "value")
        self._on_unit()
        if st.picked is not None:
            self._on_pick()
        self._doc = pn.state.curdoc  # from now on, plot changes go through the session's event loop

    @property
    def data(self) -> SurveyData:
        """The session's current data (changes when a re-inference run is applied)."""
        return self.state.data

    # ------------------------------------------------------------------ helpers
    def _throttled_slider(self, name: str, label: str) -> pn.widgets.FloatSlider:
        p = self.state.param[name]
        lo, hi = p.bounds
        s = pn.widgets.FloatSlider(label=label, start=lo, end=hi, step=p.step or 0.1,
                                   value=getattr(self.state, name), width=280)
        s.param.watch(lambda e: setattr(self.state, name, e.new), "value_throttled")
        self.state.param.watch(lambda e: setattr(s, "value", e.new), name)
        return s

    def _on_message(self, *_):
        self.message.object = f"**{self.state.message}**" if self.state.message else ""

    # ------------------------------------------------------------------ map
    def _raster(self, x_range=None, y_range=None, **_):
        """The latent map as an image, re-aggregated in core for each pan/zoom."""
        st = self.state
        x, y, c = st.x_axis, st.y_axis, st.color_by
        f = self.data.frame
        hover = tuple(h for h in HOVER_COLUMNS if h in f.columns and h not in (x, y))
        extra = {"flagged": st.flagged.astype(np.float32)} if c == "flagged" else None
        r = rasterize_map(f, x, y, c, x_range=x_range, y_range=y_range, width=MAP_SIZE[0],
                          height=MAP_SIZE[1], extra=extra, hover=hover)
        vname = "count" if c == "density" else c
        kd = [hv.Dimension(x, label=LABELS.get(x, x)), hv.Dimension(y, label=LABELS.get(y, y))]
        vd = [hv.Dimension(vname, label=LABELS.get(c, c))] + [hv.Dimension(h, label=h) for h in hover]
        return hv.Image((r.xs, r.ys, r.value, *(r.hover[h] for h in hover)), kd, vd)

    def _build_map(self):
        st = self.state
        x, y, c = st.x_axis, st.y_axis, st.color_by
        if c == "density":
            cmap, cnorm = "fire", "eq_hist"
        elif c == "flagged":
            cmap, cnorm = ["#bbbbbb", "#d62728"], "linear"
        else:
            cmap, cnorm = "viridis", "eq_hist"
        self._range = hv.streams.RangeXY()
        base = hv.DynamicMap(self._raster, streams=[self._range]).opts(
            cmap=cmap, cnorm=cnorm, colorbar=True, clabel=LABELS.get(c, c),
            tools=["hover", "box_select", "lasso_select", "tap"],
            active_tools=["box_select", "wheel_zoom", "tap"],
            width=MAP_SIZE[0], height=MAP_SIZE[1], xlabel=LABELS.get(x, x), ylabel=LABELS.get(y, y),
            title=f"{self.data.n:,} stars", default_tools=["pan", "wheel_zoom", "reset", "save"])
        self._streams = []
        bounds = hv.streams.BoundsXY(source=base)
        bounds.add_subscriber(self._on_box)
        lasso = hv.streams.Lasso(source=base)
        lasso.add_subscriber(self._on_lasso)
        tap = hv.streams.Tap(source=base)
        tap.add_subscriber(self._on_tap)
        self._streams = [bounds, lasso, tap, self._range]
        moved = hv.DynamicMap(self._run_overlay,
                              streams=[hv.streams.Params(self.runs, ["run_id", "show_run"])])
        overlay = base.opts(hooks=[_weak_hook(self._on_map_rendered)]) * moved
        return overlay.opts(hv.opts.Overlay(legend_position="bottom_left"))

    def _on_map_rendered(self, plot, element) -> None:
        """HoloViews hook, run on every render of the map: put the selected/flagged/picked
        glyphs on a new map figure once and fill them."""
        if self.overlays.attach(plot.state):
            for kind in OVERLAY_STYLES:
                self._show_overlay(kind, now=True)

    def _overlay_rows(self, kind: str) -> np.ndarray:
        st = self.state
        if kind == "selected":
            return self.overlays.thin(np.flatnonzero(st.selected))
        if kind == "flagged":
            return self.overlays.thin(np.flatnonzero(st.flagged))
        i = self.data.index_of(st.picked) if st.picked is not None else None
        return np.array([i] if i is not None else [], np.int64)

    def _show_overlay(self, kind: str, now: bool = False) -> None:
        """Redraw one overlay from the session's state (on the event loop unless ``now``)."""
        idx = self._overlay_rows(kind)
        xs, ys = self.state.xy
        if now:
            self.overlays.show(kind, idx, xs, ys)
        else:
            self._apply(lambda: self.overlays.show(kind, idx, xs, ys))

    def _on_axes(self, *_):
        self.map_pane.object = self._build_map()

    def _on_box(self, bounds=None, **_):
        if bounds is None:
            return
        self.state.select_box(bounds)

    def _on_lasso(self, geometry=None, **_):
        if geometry is None or len(geometry) < 3:
            return
        self.state.select_lasso(np.asarray(geometry))

    def _on_tap(self, x=None, y=None, **_):
        if x is None or y is None:
            return
        xr = self._range.x_range if self._range is not None else None
        yr = self._range.y_range if self._range is not None else None
        self.state.pick_at(x, y, xr, yr)

    # ------------------------------------------------------------------ selection
    def _selection_text(self) -> str:
        st = self.state
        s = st.selection_summary()
        lines = [f"**Selection: {s['n_selected']:,} of {s['n_total']:,} stars**", ""]
        if s["n_selected"]:
            for c, v in s["columns"].items():
                lines.append(f"- {LABELS.get(c, c)}: median {v['median']:.3g} "
                             f"(16-84%: {v['p16']:.3g} to {v['p84']:.3g})")
        else:
            lines.append("Drag a box (box select) or draw a lasso on the map.")
        return "\n".join(lines)

    def _histogram_layout(self):
        """Build the histogram strip once; selections only replace its bars."""
        hists = self.state.selection_histograms()
        self.hists = HistogramStrip(list(hists), LABELS)
        self.hists.update(hists)
        return self.hists.layout if self.hists.layout is not None else pn.pane.Markdown("no columns")

    def _apply(self, fn) -> None:
        apply_in_document(self._doc, fn)

    def _on_selection(self, *_):
        self._show_overlay("selected")
        self.sel_md.object = self._selection_text()
        hists = self.state.selection_histograms()
        self._apply(lambda: self.hists.update(hists))
        if self.state.table_source != "flagged":
            self._refresh_table()

    # ------------------------------------------------------------------ thresholds
    def _on_unit(self, *_):
        st = self.state
        dex = st.unit == "dex"
        on = st.preset != "none"
        self.s_elem_sigma.visible = not dex and on
        self.s_elem_dex.visible = dex and on
        # with a calibrated Fe axis, metal-poor is [Fe/H] in dex in both units (docs/flags.md)
        self.s_fe_sigma.visible = not dex and on and not st.fe_in_dex
        self.s_fe_dex.visible = (dex or st.fe_in_dex) and on

    def _counts_text(self) -> str:
        st = self.state
        c = st.counts_summary()
        if st.rule is None:
            return "No rule: choose a preset to flag stars."
        lines = [f"**{c['n_flagged']:,} flagged** of {c['n_stars']:,}",
                 f"expected by chance: {c['expected']:,.1f}", f"`{c['rule']}`"]
        if "precision" in c:
            lines.append(f"precision {c['precision']:.3f}, recall {c['recall']:.3f} "
                         f"({c['n_true']:,} true by the labels)")
        return "\n\n".join(lines)

    def _on_flags(self, *_):
        self._show_overlay("flagged")
        self.counts_md.object = self._counts_text()
        if self.state.table_source != "selection":
            self._refresh_table()
        if self.state.color_by == "flagged":
            self.map_pane.object = self._build_map()

    # ------------------------------------------------------------------ spectrum
    def _on_star_input(self, event):
        if event.new is not None and event.new != self.state.picked:
            try:
                self.state.pick_star(event.new)
            except Exception as exc:  # unknown star id
                self.state.message = str(exc)

    def _on_pick(self, *_):
        self._show_overlay("picked")
        self.w_star.value = self.state.picked
        self._refresh_spectrum()

    def _zoom_range(self):
        return zoom_choices(self.data.windows).get(self.w_zoom.value)

    def _on_zoom(self, *_):
        zr = self._zoom_range()
        self._apply(lambda: self.spectrum.zoom(zr))

    def _refresh_spectrum(self):
        """Show the picked star: read its spectrum here (a callback thread), then swap the
        figures' data on the session's event loop."""
        st = self.state
        if st.picked is None:
            self._apply(lambda: self.spectrum.clear("no star picked"))
            return
        try:
            spec = st.picked_spectrum()
        except Exception as exc:
            st.message = f"cannot show star {st.picked}: {exc}"
            title = f"star {st.picked}: no spectrum"
            self._apply(lambda: self.spectrum.clear(title))
            return
        info, zr = st.picked_info(), self._zoom_range()
        self._apply(lambda: self.spectrum.show(spec, info, zr))
        shaded = ", ".join(f"<span style='color:{GROUP_COLORS[g]}'>{GROUP_LABELS[g]}</span>"
                           for g in GROUP_LABELS)
        self.spec_info.object = (f"**star {spec.star_id}** (survey row {spec.row}); windows shaded: "
                                 + shaded + ("" if spec.model is not None else f"; {self.data.model_note}"))

    def _on_stack(self, *_):
        st = self.state
        if st.n_selected == 0:
            st.message = "select stars first (box or lasso on the map)"
            return
        self.b_stack.loading = True
        self.stack_pane.loading = True
        try:
            sel, ctrl = st.selection_stacks()
            wdim = hv.Dimension("wave", label="vacuum wavelength (A)")
            a = hv.Curve((sel.wave, sel.mean), wdim, "mean flux", label=f"selection ({sel.n_stars})").opts(
                color="#17becf", line_width=1.2)
            b = hv.Curve((ctrl.wave, ctrl.mean), wdim, "mean flux",
                         label=f"survey at similar Teff/logg ({ctrl.n_stars})").opts(color="black",
                                                                                     line_width=1)
            d = hv.Curve((sel.wave, sel.mean - ctrl.mean), wdim, "selection - survey").opts(color="#d62728")
            zr = self._zoom_range()
            xlim = zr if zr is not None else (float(sel.wave[0]), float(sel.wave[-1]))
            self.stack_pane.object = (a * b).opts(height=240, width=2 * SPEC_WIDTH, xlim=xlim,
                                                  legend_position="bottom_right")
            self.stack_diff_pane.object = d.opts(height=120, width=2 * SPEC_WIDTH, xlim=xlim)
            self.stack_info.object = (f"Mean of {sel.n_stars} selected stars vs {ctrl.n_stars} unselected "
                                      "stars drawn from the same predicted Teff/logg cells.")
        finally:
            self.b_stack.loading = False
            self.stack_pane.loading = False

    # ------------------------------------------------------------------ candidates
    def _table_frame(self) -> pd.DataFrame:
        return self.state.candidates()

    def _refresh_table(self):
        self.table.value = self._table_frame()

    def _on_table_source(self, *_):
        self._refresh_table()

    def _on_table_click(self, event):
        try:
            sid = int(self.table.value["star_id"].iloc[event.row])
        except (IndexError, KeyError, TypeError, ValueError):
            return
        self.state.pick_star(sid)

    def _target_ids(self) -> np.ndarray:
        rows = self.table.selection
        if rows:
            return self.table.value["star_id"].iloc[rows].to_numpy(np.int64)
        if self.state.picked is not None:
            return np.array([self.state.picked], np.int64)
        return np.zeros(0, np.int64)

    def _on_verdict(self, verdict, *_):
        ids = self._target_ids()
        note = self.w_note.value or ""
        if verdict is None:  # "save note": keep each star's verdict, change the note
            cur = self.state.verdicts(ids) if ids.size else pd.DataFrame(columns=["star_id", "verdict"])
            by = dict(zip(cur["star_id"], cur["verdict"]))
            for v in ("candidate", "accepted", "rejected"):
                sub = [s for s in ids if by.get(int(s), "candidate") == v]
                if sub:
                    self.state.annotate(sub, v, note)
            if not ids.size:
                self.state.annotate(ids, "candidate", note)
            return
        self.state.annotate(ids, verdict, note)

    def _export_callback(self):
        try:
            name, data = self.state.export()
        except ChemlatentError as exc:  # e.g. too many rows: say so, in the page and the file
            self.state.message = f"export refused: {exc}"
            self.download.filename = "export-refused.txt"
            return io.BytesIO(f"{exc}\n".encode())
        self.download.filename = name
        return io.BytesIO(data)

    def _on_samp(self, *_):
        self.b_samp.loading = True
        try:
            self.state.send_samp()
        finally:
            self.b_samp.loading = False

    # ------------------------------------------------------------------ re-inference
    def _build_runs_widgets(self) -> None:
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
        self.jobs_md = pn.pane.Markdown(self._jobs_text(), css_classes=["cl-jobs"])
        self.w_run = pn.widgets.Select(label="run", options=self._run_options(), width=330)
        self.w_run.param.watch(lambda e: setattr(rs, "run_id", e.new or ""), "value")
        self.w_show_run = pn.widgets.Checkbox.from_param(rs.param.show_run,
                                                          name="show old -> new positions on the map")
        self.b_apply = pn.widgets.Button(label="Use this run's latents", color="success")
        self.b_apply.on_click(lambda e: rs.apply())
        self.b_unapply = pn.widgets.Button(label="Back to the survey's latents", color="default")
        self.b_unapply.on_click(lambda e: rs.apply(""))
        self.run_md = pn.pane.Markdown(self._run_text())
        rs.param.watch(self._on_run_shown, ["run_id"])
        rs.param.watch(self._on_applied, ["applied"])
        rs.param.watch(lambda e: self._refresh_jobs(), ["version"])

    def _run_options(self) -> dict[str, str]:
        opts = {"(none)": ""}
        for r in self.runs.runs():
            label = f"{r.run_id}: {r.n_stars:,} stars, {r.model_name}, {r.samples} samples, {r.created}"
            opts[label] = r.run_id
        return opts

    def _jobs_text(self) -> str:
        jobs = self.runs.jobs()
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

    def _refresh_jobs(self) -> None:
        self.jobs_md.object = self._jobs_text()
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

    def _run_text(self) -> str:
        rs = self.runs
        cmp = rs.comparison()
        head = (f"**Latents in use:** run `{rs.applied}`" if rs.applied
                else "**Latents in use:** the survey's own")
        if cmp is None:
            return head + "  \nNo run shown."
        parts = [head, f"**Run** `{rs.run_id}` ({cmp.attrs.get('model', '')}): {len(cmp):,} stars; "
                       f"shift new - old (median, 95th percentile of |shift|):"]
        for c in ("z_fe", "z_c", "z_alpha"):
            d = cmp[f"d_{c}"].to_numpy()
            d = d[np.isfinite(d)]
            if d.size:
                parts.append(f"- {c}: {np.median(d):+.3f}, {np.percentile(np.abs(d), 95):.3f}")
        return "  \n".join(parts[:2]) + "\n\n" + "\n".join(parts[2:])

    def _on_run_shown(self, *_):
        self.run_md.object = self._run_text()

    def _on_applied(self, *_):
        self.map_pane.object = self._build_map()
        self.hist_pane.object = self._histogram_layout()
        self.run_md.object = self._run_text()
        self._refresh_table()

    def _run_overlay(self, run_id="", show_run=False):
        st = self.state
        x, y = st.x_axis, st.y_axis
        kd = [hv.Dimension(x, label=LABELS.get(x, x)), hv.Dimension(y, label=LABELS.get(y, y))]
        if not (show_run and run_id):
            return hv.Segments([], kd + [f"{x}_new", f"{y}_new"]).opts(color="#9467bd")
        a = self.runs.arrows(x, y)
        seg = hv.Segments((a["x0"], a["y0"], a["x1"], a["y1"]), kd + [f"{x}_new", f"{y}_new"],
                          label="re-encoded: old -> new").opts(color="#9467bd", line_width=1, alpha=0.8)
        heads = hv.Points((a["x1"], a["y1"]), kd).opts(color="#9467bd", size=4, marker="triangle")
        return seg * heads

    def _runs_tab(self):
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

    # ------------------------------------------------------------------ layout
    def sidebar(self):
        return [
            pn.pane.Markdown(f"**Survey** `{self.data.path.name}`: {self.data.n:,} stars  \n"
                             f"**Model** `{self.data.model_name}`"
                             + ("  \n*calibrated (dex available)*" if self.data.calibration else "")),
            pn.pane.Markdown("#### Latent map"), pn.Row(self.w_x, self.w_y), self.w_color,
            pn.pane.Markdown("Selection mode"), self.w_mode, self.b_clear,
            pn.layout.Divider(),
            pn.pane.Markdown("#### Thresholds"), self.w_preset, self.w_unit,
            self.s_elem_sigma, self.s_fe_sigma, self.s_elem_dex, self.s_fe_dex, self.counts_md,
            pn.layout.Divider(), self.message,
        ]

    def main(self):
        spectrum = pn.Column(pn.Row(self.w_star, self.w_zoom), self.spec_info, self.spec_pane, self.res_pane,
                             sizing_mode="stretch_width")
        explore = pn.Column(pn.Row(self.map_pane, spectrum, sizing_mode="stretch_width"),
                            pn.Row(pn.Column(self.sel_md, width=340), self.hist_pane),
                            pn.Row(self.b_stack), self.stack_info, self.stack_pane, self.stack_diff_pane,
                            sizing_mode="stretch_width", name="Explore")
        cands = pn.Column(
            pn.Row(pn.pane.Markdown("Show"), self.w_source),
            pn.Row(self.b_accept, self.b_reject, self.b_cand, self.w_note, self.b_note),
            pn.pane.Markdown("Verdicts apply to the ticked rows, or to the picked star when no row "
                             "is ticked. Click a row to show its spectrum."),
            self.table,
            pn.Row(self.w_format, self.download, self.b_samp), self.samp_note,
            sizing_mode="stretch_width", name="Candidates")
        reinf = self._runs_tab()
        return [pn.Tabs(explore, cands, reinf, dynamic=True, sizing_mode="stretch_width")]


def enable_callback_threads(n: int = CALLBACK_THREADS) -> None:
    """Run event callbacks on a thread pool, so one session's slow callback (a stack of
    hundreds of spectra, a big export) never freezes the others' pages."""
    if pn.config.nthreads is None:
        pn.config.nthreads = n


def make_app(data: SurveyData, samp: bool = True, **state_params):
    """One session's page (called by the server for each browser session); ``samp``: offer
    sending tables over SAMP (only when the server runs on the user's own machine)."""
    enable_callback_threads()
    pn.extension("tabulator", notifications=False)
    user = getattr(pn.state, "user", None) or None  # set when served with --basic-auth or OAuth
    state = ExplorerState(data, user=user, **state_params)
    if pn.state.location is not None:
        try:
            query = {k: v for k, v in (pn.state.location.query_params or {}).items()}
            state.apply_url_state(query)
            pn.state.location.sync(state, {k: k for k in state.URL_PARAMS})
        except Exception as exc:  # a bad URL must not break the page
            log.warning("URL state ignored: %s", exc)
    dash = Dashboard(data, state, samp=samp)
    # one root per area: the template adds each item as a document root, and every root added
    # re-walks the whole document
    sidebar = pn.Column(*dash.sidebar(), sizing_mode="stretch_width")
    tmpl = pn.template.BootstrapTemplate(title="chemlatent explorer", sidebar=[sidebar],
                                         main=dash.main(), sidebar_width=330)
    tmpl._dashboard = dash  # for tests and scripts
    return tmpl


def session_page(source, samp: bool = True):
    """The page for a new browser session: the explorer, or, while a first run is still
    generating/encoding (``source`` is a :class:`chemlatent.jobs.preparation.Preparation`), a page
    with its progress that reloads itself into the explorer when the survey is ready."""
    enable_callback_threads()
    if isinstance(source, SurveyData):
        return make_app(source, samp=samp)
    if hasattr(source, "session_page"):  # e.g. the out-of-core overview
        return source.session_page()
    if source.ready:
        return make_app(source.data, samp=samp)
    return preparing_page(source)


def preparing_page(prep):
    """Progress of the first-run work (stage, stars, rate, ETA), updated twice a second."""
    pn.extension(notifications=False)
    title = pn.pane.Markdown("### Preparing the survey", css_classes=["cl-preparing"])
    bar = pn.indicators.Progress(value=0, max=1000, width=520, bar_color="primary")
    text = pn.pane.Markdown("", css_classes=["cl-progress"])
    reload = pn.widgets.Checkbox(value=False, visible=False)
    reload.jscallback(value="window.location.reload();")

    def update():
        st = prep.status()
        bar.value = int(1000 * min(1.0, st.fraction)) if st.total else 0
        if st.stage == "failed":
            text.object = f"**First run failed:** {st.message}"
            return
        rate = f", {st.rate:,.0f} stars/s" if st.rate else ""
        eta = f", about {st.eta_s:.0f} s left" if st.eta_s is not None else ""
        count = f": {st.done:,} of {st.total:,}{rate}{eta}" if st.total else ""
        text.object = (f"**{st.stage}**{count}  \n{st.message}  \n"
                       f"*{st.elapsed_s:.0f} s since start; this page opens the explorer by itself.*")
        if prep.ready and not reload.value:
            reload.value = True

    update()
    pn.state.add_periodic_callback(update, period=500)
    return pn.template.BootstrapTemplate(title=PREPARING_TITLE, main=[title, bar, text, reload])


def serve(data, *, port: int = 5006, address: str = "127.0.0.1", show: bool = True,
          threaded: bool = False, allow_websocket_origin: list[str] | None = None,
          max_sessions: int | None = None, **kwargs):
    """Serve the dashboard; each browser session gets its own state. ``data``: a
    :class:`SurveyData`, or a first-run ``Preparation`` (see :func:`session_page`).

    The page's websocket is accepted from ``address``, localhost and 127.0.0.1 on ``port``
    plus the hosts in ``allow_websocket_origin``. At most ``max_sessions`` browser sessions
    run at once (None: no limit); the next ones get a short "busy" page. Other keyword
    arguments go to ``pn.serve`` (``basic_auth``, ``cookie_secret``, ``oauth_provider``, ...;
    see docs/security.md). Nothing a browser sends names a file on the server.
    """
    tune_allocator()
    if isinstance(data, SurveyData):
        warm_up(data)
    from chemlatent.app.cli.serve import is_local

    samp = is_local(address)  # a remote user's TOPCAT is out of the server's reach
    origins = [f"{address}:{port}", f"localhost:{port}", f"127.0.0.1:{port}"]
    origins += [o for o in (allow_websocket_origin or []) if o not in origins]
    live = {"sessions": 0}
    lock = threading.Lock()

    trim = TrimAfterSessions()

    def release(_context) -> None:
        with lock:
            live["sessions"] -= 1

    def app():  # a plain function: Panel calls it once per browser session
        doc = pn.state.curdoc
        if doc is not None:
            doc.on_session_destroyed(trim.session_ended)  # give the session's memory back
        if max_sessions is not None and doc is not None:
            with lock:
                if live["sessions"] >= max_sessions:
                    return pn.template.BootstrapTemplate(
                        title="chemlatent explorer is busy", main=[pn.pane.Markdown(
                            f"{max_sessions} sessions are open; close one, or try again in a minute.",
                            css_classes=["cl-busy"])])
                live["sessions"] += 1
            try:
                page = session_page(data, samp=samp)
            except BaseException:
                release(None)
                raise
            doc.on_session_destroyed(release)
            return page
        return session_page(data, samp=samp)

    return pn.serve({"/": app}, port=port, address=address, show=show,
                    threaded=threaded, websocket_origin=origins, title="chemlatent explorer", **kwargs)
