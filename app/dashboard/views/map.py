"""The latent map: a raster re-aggregated in core on every pan/zoom, with the selected,
flagged and picked stars drawn on top, and the map's controls (axes, colour, selection mode)."""

from __future__ import annotations

import holoviews as hv
import numpy as np
import panel as pn
import param
from bokeh.models import FixedTicker

from chemlatent.app.dashboard.live_plots import OVERLAY_STYLES, MapOverlays, map_hover
from chemlatent.app.dashboard.views.common import (
    LABELS,
    MAP_SIZE,
    StateView,
    area_status,
    from_state,
    weak_hook,
)
from chemlatent.explore.mapraster import rasterize_map
from chemlatent.explore.session_runs import RunsState
from chemlatent.explore.survey import HOVER_COLUMNS

TEFF_AXES = ("teff_pred", "teff", "w_0")  # drawn hot to cool (right to left), as in a Kiel diagram
LOGG_AXES = ("logg_pred", "logg", "w_1")  # drawn with log g increasing downward
RUN_COLOR = "#9467bd"  # the old -> new arrows of a re-encoded run (purple)
PLAIN_OVERLAY_MAX = 20000  # map overlays of more stars draw an evenly spaced subset


# the counts (a few hundred bytes) reach the browser before the selected or flagged stars (up
# to 20,000 points, which the browser takes a few hundred ms to decode and draw)
OVERLAY_DELAY_MS = 60


class MapView(StateView):
    """The map and its controls; box, lasso and tap go to the state."""

    runs = param.ClassSelector(class_=RunsState, doc="re-inference runs (old -> new arrows)")

    def __init__(self, **params) -> None:
        super().__init__(**params)
        st = self.state
        self.w_x = from_state(pn.widgets.Select, st.param.x_axis, label="x axis", width=140)
        self.w_y = from_state(pn.widgets.Select, st.param.y_axis, label="y axis", width=140)
        self.w_color = from_state(pn.widgets.Select, st.param.color_by, label="colour", width=140)
        self.w_mode = from_state(pn.widgets.RadioButtonGroup, st.param.selection_mode, color="light")
        self.b_clear = pn.widgets.Button(label="Clear selection", color="default")
        self.b_clear.on_click(lambda e: st.clear_selection())
        self.map_status = area_status(st, "map", "cl-map-status")  # selections and picks
        self.overlays = MapOverlays(PLAIN_OVERLAY_MAX)
        self._range = None
        self.map_pane = pn.pane.HoloViews(self._build_map(), width=MAP_SIZE[0], height=MAP_SIZE[1] + 40,
                                          linked_axes=False, css_classes=["cl-map"])
        st.param.watch(self.rebuild, ["x_axis", "y_axis", "color_by"])
        st.param.watch(lambda e: self._show_overlay("selected", delay_ms=OVERLAY_DELAY_MS), ["selected"])
        st.param.watch(self._on_flags, ["flagged"])
        st.param.watch(lambda e: self._show_overlay("picked"), ["picked"])

    def __panel__(self):
        return self.map_pane

    def controls(self) -> list:
        """The sidebar's map controls."""
        return [pn.pane.Markdown("#### Latent map"), pn.Row(self.w_x, self.w_y), self.w_color,
                pn.pane.Markdown("Selection mode"), self.w_mode, self.b_clear, self.map_status]

    def rebuild(self, *_) -> None:
        """A new map (axes, colour or latents changed)."""
        self.map_pane.object = self._build_map()

    def _raster(self, x_range=None, y_range=None, **_):
        """The latent map as an image, re-aggregated in core for each pan/zoom."""
        st = self.state
        x, y, c = st.x_axis, st.y_axis, st.color_by
        f = self.data.frame
        hover = self._hover_columns()
        if c == "flagged":  # this session's flags: its own raster
            r = rasterize_map(f, x, y, c, x_range=x_range, y_range=y_range, width=MAP_SIZE[0],
                              height=MAP_SIZE[1], extra={"flagged": st.flagged.astype(np.float32)},
                              hover=hover)
        else:  # the same for every session: shared
            r = self.data.map_raster(x, y, c, x_range=x_range, y_range=y_range, width=MAP_SIZE[0],
                                     height=MAP_SIZE[1], hover=hover)
        vname = "count" if c == "density" else c
        kd = [hv.Dimension(x, label=LABELS.get(x, x)), hv.Dimension(y, label=LABELS.get(y, y))]
        vd = [hv.Dimension(vname, label=LABELS.get(c, c))] + [hv.Dimension(h, label=h) for h in hover]
        return hv.Image((r.xs, r.ys, r.value, *(r.hover[h] for h in hover)), kd, vd)

    def _hover_columns(self) -> tuple[str, ...]:
        """The star's columns shown on hover (not those already on the axes or the colour)."""
        st, f = self.state, self.data.frame
        shown = (st.x_axis, st.y_axis, st.color_by)
        return tuple(h for h in HOVER_COLUMNS if h in f.columns and h not in shown)

    def _tooltips(self) -> list[tuple[str, str]]:
        st = self.state
        fmt = {"star_id": ("star_id", "@{star_id}{0}"), "snr": ("S/N", "@{snr}{0.0}"),
               "teff_pred": ("Teff (pred)", "@{teff_pred}{0} K"),
               "logg_pred": ("log g (pred)", "@{logg_pred}{0.00}")}
        tips = [(LABELS.get(a, a), f"${xy}{{0.000}}") for xy, a in (("x", st.x_axis), ("y", st.y_axis))]
        if st.color_by not in ("density", "flagged"):  # the pixel's mean of the colour column
            tips.append((f"{LABELS.get(st.color_by, st.color_by)} (pixel mean)", "@image{0.[000]}"))
        return tips + [fmt.get(h, (h, f"@{{{h}}}")) for h in self._hover_columns()]

    def _build_map(self):
        st = self.state
        x, y, c = st.x_axis, st.y_axis, st.color_by
        if c == "density":
            cmap, cnorm = "fire", "eq_hist"
        elif c == "flagged":
            cmap, cnorm = ["#bbbbbb", "#d62728"], "linear"
        else:
            cmap, cnorm = "viridis", "eq_hist"
        colour = ({"clim": (0, 1), "color_levels": 2, "colorbar_opts": {
            "ticker": FixedTicker(ticks=[0.25, 0.75]),
            "major_label_overrides": {0.25: "no flag", 0.75: "flagged"}}} if c == "flagged" else {})
        self._range = hv.streams.RangeXY()
        base = hv.DynamicMap(self._raster, streams=[self._range]).opts(
            cmap=cmap, cnorm=cnorm, colorbar=True, clabel=LABELS.get(c, c),
            tools=["hover", "box_select", "lasso_select", "tap"],
            active_tools=["box_select", "wheel_zoom", "tap"],
            width=MAP_SIZE[0], height=MAP_SIZE[1], xlabel=LABELS.get(x, x), ylabel=LABELS.get(y, y),
            title=f"{self.data.n:,} stars", default_tools=["pan", "wheel_zoom", "reset", "save"],
            invert_xaxis=x in TEFF_AXES, invert_yaxis=y in LOGG_AXES, **colour)
        bounds = hv.streams.BoundsXY(source=base)
        bounds.add_subscriber(self._on_box)
        lasso = hv.streams.Lasso(source=base)
        lasso.add_subscriber(self._on_lasso)
        tap = hv.streams.Tap(source=base)
        tap.add_subscriber(self._on_tap)
        self._streams = [bounds, lasso, tap, self._range]
        moved = hv.DynamicMap(self._run_overlay,
                              streams=[hv.streams.Params(self.runs, ["run_id", "show_run"])])
        return base.opts(hooks=[weak_hook(self._on_map_rendered)]) * moved

    def _on_map_rendered(self, plot, element) -> None:
        """HoloViews hook, run on every render of the map: put the selected/flagged/picked
        glyphs on a new map figure once and fill them."""
        map_hover(plot.state, self._tooltips())  # HoloViews sets its own tooltips on updates
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

    def _show_overlay(self, kind: str, now: bool = False, delay_ms: int = 0) -> None:
        """Redraw one overlay from the session's state (on the event loop unless ``now``,
        ``delay_ms`` later if given)."""
        idx = self._overlay_rows(kind)
        xs, ys = self.state.xy
        if now:
            self.overlays.show(kind, idx, xs, ys)
        else:
            self._apply(lambda: self.overlays.show(kind, idx, xs, ys), delay_ms)

    def _on_flags(self, *_) -> None:
        self._show_overlay("flagged", delay_ms=OVERLAY_DELAY_MS)  # after the counts
        if self.state.color_by == "flagged":
            self.rebuild()

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

    def _run_overlay(self, run_id="", show_run=False):
        """The re-encoded stars' old -> new arrows: always an Overlay of the same two elements
        (empty when not shown), since a DynamicMap must return one type of object."""
        st = self.state
        x, y = st.x_axis, st.y_axis
        kd = [hv.Dimension(x, label=LABELS.get(x, x)), hv.Dimension(y, label=LABELS.get(y, y))]
        vd = [f"{x}_new", f"{y}_new"]
        if show_run and run_id:
            a = self.runs.arrows(x, y)
            seg_data, head_data = (a["x0"], a["y0"], a["x1"], a["y1"]), (a["x1"], a["y1"])
        else:
            seg_data, head_data = [], []
        seg = hv.Segments(seg_data, kd + vd).opts(color=RUN_COLOR, line_width=1, alpha=0.8,
                                                  show_legend=False)
        heads = hv.Points(head_data, kd).opts(color=RUN_COLOR, size=4, marker="triangle",
                                              show_legend=False)
        return hv.Overlay([seg, heads])
