"""``chemlatent serve DIR --out-of-core``: the map of a survey larger than memory.

A thin page over :class:`chemlatent.encode.outofcore.LazySurvey` (a Dask dataframe): the density
map re-aggregated on every pan/zoom, box selection with its count and percentiles, and tap
to a star's spectrum with its reconstruction. Rules, tables and re-inference need the
in-memory explorer (``chemlatent serve DIR``).
"""

from __future__ import annotations

import holoviews as hv
import numpy as np
import panel as pn

from chemlatent.app.dashboard.app import enable_callback_threads
from chemlatent.app.dashboard.live_plots import SpectrumFigures, apply_in_document
from chemlatent.app.dashboard.views.common import LABELS, MAP_SIZE
from chemlatent.encode.outofcore import LazySurvey
from chemlatent.explore.survey import AXIS_COLUMNS, TRUTH_COLUMNS


class Overview:
    """One session's overview page."""

    def __init__(self, lazy: LazySurvey, survey=None, model=None, windows=None) -> None:
        self.lazy, self.survey, self.model, self.windows = lazy, survey, model, windows
        axes = [c for c in AXIS_COLUMNS + TRUTH_COLUMNS if c in lazy.columns]
        self.w_x = pn.widgets.Select(label="x axis", options=axes, value="z_fe", width=140)
        self.w_y = pn.widgets.Select(label="y axis", options=axes, value="z_c", width=140)
        self.summary = pn.pane.Markdown("Drag a box on the map to count and summarise the stars in it.")
        wave = survey.grid.wave if survey is not None else np.array([3600.0, 10400.0])
        self.spectrum = SpectrumFigures(windows or {}, (float(wave[0]), float(wave[-1])))
        self.spectrum.clear("tap a star on the map")
        self.spec = pn.pane.Bokeh(self.spectrum.top)
        self.res = pn.pane.Bokeh(self.spectrum.res)
        self._doc = pn.state.curdoc
        self.map = pn.pane.HoloViews(self._map(), linked_axes=False, css_classes=["cl-map"])
        for w in (self.w_x, self.w_y):
            w.param.watch(lambda e: setattr(self.map, "object", self._map()), "value")

    def _image(self, x_range=None, y_range=None, **_):
        x, y = self.w_x.value, self.w_y.value
        r = self.lazy.raster(x, y, x_range=x_range, y_range=y_range, width=MAP_SIZE[0], height=MAP_SIZE[1])
        kd = [hv.Dimension(x, label=LABELS.get(x, x)), hv.Dimension(y, label=LABELS.get(y, y))]
        return hv.Image((r.xs, r.ys, r.value, r.hover["star_id"]), kd, ["count", "star_id"])

    def _map(self):
        self._range = hv.streams.RangeXY()
        dmap = hv.DynamicMap(self._image, streams=[self._range]).opts(
            cmap="fire", cnorm="eq_hist", colorbar=True, tools=["hover", "box_select", "tap"],
            active_tools=["box_select", "wheel_zoom", "tap"], width=MAP_SIZE[0], height=MAP_SIZE[1],
            title=f"{self.lazy.n:,} stars (out of core)",
            default_tools=["pan", "wheel_zoom", "reset", "save"])
        hv.streams.BoundsXY(source=dmap).add_subscriber(self._on_box)
        hv.streams.Tap(source=dmap).add_subscriber(self._on_tap)
        return dmap

    def _on_box(self, bounds=None, **_):
        if bounds is None:
            return
        s = self.lazy.box_summary(self.w_x.value, self.w_y.value, bounds)
        lines = [f"**Box: {s.n_selected:,} of {s.n_total:,} stars**", ""]
        lines += [f"- {LABELS.get(c, c)}: median {v['median']:.3g} (16-84%: {v['p16']:.3g} to {v['p84']:.3g})"
                  for c, v in s.columns.items()]
        self.summary.object = "\n".join(lines)

    def _on_tap(self, x=None, y=None, **_):
        if x is None or y is None or self.survey is None:
            return
        xr = self._range.x_range or self.lazy.data_range(self.w_x.value)
        yr = self._range.y_range or self.lazy.data_range(self.w_y.value)
        hit = self.lazy.nearest(self.w_x.value, self.w_y.value, x, y, xr, yr)
        if hit is None:
            return
        from chemlatent.explore.spectrum import star_spectrum

        row = int(np.flatnonzero(self.survey.catalog["star_id"].to_numpy() == int(hit["star_id"]))[0])
        spec = star_spectrum(self.survey, row, hit, self.model)
        apply_in_document(self._doc, lambda: self.spectrum.show(spec, hit))

    def page(self):
        return pn.template.BootstrapTemplate(
            title="chemlatent explorer (out of core)",
            sidebar=[pn.pane.Markdown(f"**Survey** `{self.lazy.path}`: {self.lazy.n:,} stars, read "
                                      "lazily (Dask)."), pn.Row(self.w_x, self.w_y), self.summary],
            main=[pn.Row(self.map, pn.Column(self.spec, self.res))], sidebar_width=330)


class OverviewSource:
    """What ``serve`` serves for ``--out-of-core``: the lazy table, the spectra store and a
    model, shared by all sessions; each session gets its own :class:`Overview`."""

    def __init__(self, survey_dir, model: str | None = None) -> None:
        from chemlatent.explore.survey import load_survey_model, model_windows
        from chemlatent.io.store import Survey

        self.lazy = LazySurvey(survey_dir, model)
        self.survey = Survey(survey_dir)
        self.model, _ = load_survey_model(model, self.survey.grid)  # as the explorer loads it
        self.windows = model_windows(self.model)
        self.n = self.lazy.n

    def session_page(self):
        enable_callback_threads()
        return Overview(self.lazy, self.survey, self.model, self.windows).page()
