"""Plots built once per session whose data is replaced in place on every action.

Rebuilding a HoloViews plot per selection or pick creates a new set of Bokeh models and makes
the server re-walk the whole document; with many sessions on a small server that dominated
every action's latency (docs/load-test.md). These figures are plain Bokeh models made once:
a selection or a pick only swaps the arrays in their ``ColumnDataSource`` and a title, which
Bokeh sends to the browser as one small patch.

Updates from Panel's callback threads go through :func:`apply_in_document`, which runs them
on the server's event loop with the document lock (Bokeh's rule for threads).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from bokeh.layouts import row
from bokeh.models import (
    BoxSelectTool,
    ColumnDataSource,
    CustomJS,
    GlyphRenderer,
    HoverTool,
    Image,
    LabelSet,
    LassoSelectTool,
    Legend,
    LegendItem,
    Range1d,
    Span,
    TapTool,
)
from bokeh.plotting import figure

from chemlatent.explore.spectrum import GROUP_COLORS, GROUP_LABELS, key_lines, window_spans

WAVE_LABEL = "vacuum wavelength (A)"
SPEC_TOOLS = "pan,wheel_zoom,box_zoom,reset,save"
SELECTED_COLOR = "#17becf"
MODEL_COLOR = "#d62728"
LEGEND_STYLE = {"label_text_font_size": "8pt", "glyph_height": 12, "spacing": 0, "padding": 3}


def apply_in_document(doc, fn: Callable[[], None], delay_ms: int = 0) -> None:
    """Run ``fn`` (which changes Bokeh models) now when no server session owns ``doc``,
    otherwise on the session's event loop at its next tick (or ``delay_ms`` later)."""
    if doc is None or doc.session_context is None:
        fn()
        return

    def combined() -> None:  # all of fn's changes go to the browser as one patch
        doc.hold("combine")
        try:
            fn()
        finally:
            doc.unhold()

    if delay_ms > 0:  # add_next_tick_callback is Bokeh's only thread-safe way in: the timeout
        # is set from the event loop (callers may run on a callback thread)
        doc.add_next_tick_callback(lambda: doc.add_timeout_callback(combined, delay_ms))
    else:
        doc.add_next_tick_callback(combined)


def lean(fig) -> None:
    """Drop the glyph copies ``bokeh.plotting`` makes for a renderer's non-selected and muted
    looks (BokehJS derives its own when asked, "auto"): these plots are never selected or
    muted in the browser, and fewer models make every page cheaper to build and send."""
    for r in fig.renderers:
        if isinstance(r, GlyphRenderer):
            if r.nonselection_glyph is not None:
                r.nonselection_glyph = "auto"
            r.muted_glyph = "auto"


class HistogramStrip:
    """Selection-vs-survey histograms, one small figure per column, in a row."""

    def __init__(self, columns: list[str], labels: dict[str, str], width: int = 175,
                 height: int = 170) -> None:
        self.columns = list(columns)
        self.sources: dict[str, ColumnDataSource] = {}
        figs = []
        for c in self.columns:
            # no y axis (and so no y grid): the heights are densities, compared by eye
            f = figure(width=width, height=height, toolbar_location=None, tools="",
                       x_axis_label=labels.get(c, c), y_axis_type=None)
            src = ColumnDataSource(self._bars())
            f.quad(left="left", right="right", bottom=0, top="top", source=src, color="#bbbbbb",
                   line_color=None)
            f.quad(left="left", right="right", bottom=0, top="top_selected", source=src,
                   color=SELECTED_COLOR, alpha=0.6, line_color=None)
            lean(f)
            self.sources[c] = src
            figs.append(f)
        self.layout = row(*figs) if figs else None

    @staticmethod
    def _bars(edges=None, every=None, selected=None) -> dict[str, np.ndarray]:
        """The quads' columns: the survey's bars (``top``) and the selection's (``top_selected``,
        zero height when nothing is selected)."""
        if edges is None:
            e = np.zeros(0)
            return {"left": e, "right": e, "top": e, "top_selected": e}
        every = np.asarray(every, float)
        return {"left": np.asarray(edges[:-1], float), "right": np.asarray(edges[1:], float),
                "top": every, "top_selected": np.zeros_like(every) if selected is None
                else np.asarray(selected, float)}

    def update(self, hists: dict) -> None:
        """Show new histograms (``HistogramPair`` per column; the strip's columns only)."""
        for c, src in self.sources.items():
            h = hists.get(c)
            if h is None:
                src.data = self._bars()
                continue
            s, t = h.normalised()
            src.data = self._bars(h.edges, t, s if h.selected.sum() else None)


class SpectrumFigures:
    """One star's spectrum (flux, 1-sigma band, reconstruction, shaded element windows, line
    markers) above its residuals; both share the wavelength axis."""

    def __init__(self, windows: dict, wave_range: tuple[float, float], width: int = 560,
                 height: int = 300, res_height: int = 140) -> None:
        lo, hi = float(wave_range[0]), float(wave_range[1])
        self.full_range = (lo, hi)
        self.x_range = Range1d(lo, hi)
        self.y_range = Range1d(-0.1, 1.3)
        top = figure(width=width, height=height, x_range=self.x_range, y_range=self.y_range,
                     tools=SPEC_TOOLS, x_axis_label=WAVE_LABEL, y_axis_label="normalised flux",
                     title="no star picked")
        self.star = ColumnDataSource(self._star_columns())
        items = [("1 sigma", [top.varea(x="wave", y1="lo", y2="hi", source=self.star, color="#999999",
                                        alpha=0.35)]),
                 ("observed", [top.line(x="wave", y="flux", source=self.star, color="black",
                                        line_width=1)])]
        spans = window_spans(windows)
        for g, sub in spans.groupby("group", sort=False):
            strips = top.vstrip(x0=sub["lo"].to_numpy(), x1=sub["hi"].to_numpy(), color=GROUP_COLORS[g],
                                alpha=0.15)
            items.append((f"{GROUP_LABELS[g]} windows", [strips]))
        items.append(("model", [top.line(x="wave", y="model", source=self.star, color=MODEL_COLOR,
                                         line_width=1.3)]))
        lines = key_lines(lo, hi)
        self.labels = ColumnDataSource({"x": np.zeros(0), "y": np.zeros(0), "text": []})
        label_x: list[float] = []
        label_text: list[str] = []
        if len(lines):
            top.vspan(x=lines["wave"].to_numpy(), line_color="#555555", line_dash="dotted", line_width=1)
            first = lines.groupby("label", sort=False)["wave"].min().reset_index()
            label_x += [float(x) for x in first["wave"]]
            label_text += [str(t) for t in first["label"]]
        order = np.argsort(label_x, kind="stable")
        self._label_x = np.asarray(label_x, float)[order]
        self._label_text = [label_text[i] for i in order]
        self.width = width
        # labels hang down from the top of the plot, staggered where they would overlap
        top.add_layout(LabelSet(x="x", y="y", text="text", source=self.labels, text_font_size="8pt",
                                text_color="#333333", angle=np.pi / 2, text_align="right",
                                text_baseline="middle", x_offset=0, y_offset=-2))
        legend = Legend(items=items, orientation="horizontal", ncols=3, **LEGEND_STYLE)
        top.add_layout(legend, "above")  # outside the data
        self.res_range = Range1d(-0.2, 0.2)  # a finite range before any star is shown
        res = figure(width=width, height=res_height, x_range=self.x_range, y_range=self.res_range,
                     tools=SPEC_TOOLS, x_axis_label=WAVE_LABEL, y_axis_label="obs - model")
        res.varea(x="wave", y1="neg", y2="hi_sigma", source=self.star, color="#999999", alpha=0.3)
        res.line(x="wave", y="residual", source=self.star, color=MODEL_COLOR, line_width=1)
        res.add_layout(Span(location=0, dimension="width", line_color="black", line_width=0.5))
        lean(top)
        lean(res)
        self.top, self.res = top, res
        self._place_labels()

    LABEL_GAP_PX = 12  # labels closer than this on screen go one level down
    LABEL_LEVEL = 0.16  # of the y range: each level's drop

    def _place_labels(self) -> None:
        """Line labels inside the plot, from the top of the y range down, one level lower
        for each neighbour closer than :data:`LABEL_GAP_PX` at the current zoom."""
        lo, hi = self.x_range.start, self.x_range.end
        y0, y1 = self.y_range.start, self.y_range.end
        inside = (self._label_x >= lo) & (self._label_x <= hi)
        xs = self._label_x[inside]
        texts = [t for t, k in zip(self._label_text, inside) if k]
        px = (xs - lo) * self.width / max(hi - lo, 1e-9)
        levels: list[int] = []
        last: dict[int, float] = {}
        for p in px:
            k = next(k for k in range(len(px) + 1) if p - last.get(k, -1e9) >= self.LABEL_GAP_PX)
            last[k] = p
            levels.append(k % 3)
        ys = y1 - (y1 - y0) * (0.02 + self.LABEL_LEVEL * np.asarray(levels, float))
        self.labels.data = {"x": xs, "y": ys, "text": texts}

    @staticmethod
    def _star_columns(spec=None) -> dict[str, np.ndarray]:
        if spec is None:
            e = np.zeros(0)
            return {"wave": e, "flux": e, "lo": e, "hi": e, "model": e, "residual": e, "neg": e,
                    "hi_sigma": e}
        wave = np.asarray(spec.wave, float)
        model = spec.model if spec.model is not None else np.full(wave.size, np.nan)
        return {"wave": wave, "flux": spec.flux, "lo": spec.flux - spec.sigma, "hi": spec.flux + spec.sigma,
                "model": model, "residual": spec.residual, "neg": -spec.sigma, "hi_sigma": spec.sigma}

    def show(self, spec, info: dict, zoom: tuple[float, float] | None = None) -> None:
        """Draw one star (a ``StarSpectrum``); ``info`` gives the predicted Teff/logg."""
        self.star.data = self._star_columns(spec)
        flux = np.asarray(spec.flux, float)
        good = np.isfinite(flux)
        ymax = float(np.nanpercentile(flux, 99.5)) if good.any() else 1.2
        ymin = float(np.nanmin(flux)) if good.any() else 0.0
        # headroom above the flux for the line labels
        self.y_range.start, self.y_range.end = max(-0.1, ymin - 0.05), ymax * 1.45
        res = np.asarray(spec.residual, float)
        res = res[np.isfinite(res)]
        r = float(np.percentile(np.abs(res), 99.5)) * 1.2 if res.size else 0.2
        self.res_range.start, self.res_range.end = -max(r, 1e-3), max(r, 1e-3)
        self.zoom(zoom)
        self.top.title.text = (f"star {spec.star_id}: Teff_pred {info.get('teff_pred', np.nan):.0f} K, "
                               f"logg_pred {info.get('logg_pred', np.nan):.2f}, "
                               f"chi2 {spec.info.get('chi2', np.nan):.2f}")

    def clear(self, title: str) -> None:
        """No star: empty curves and a title that says why."""
        self.star.data = self._star_columns()
        self.top.title.text = title

    def zoom(self, zoom: tuple[float, float] | None) -> None:
        """Show a wavelength range (None: the whole spectrum)."""
        lo, hi = zoom if zoom is not None else self.full_range
        self.x_range.start, self.x_range.end = float(lo), float(hi)
        self._place_labels()


# drawn in this order: the selection above the flagged stars, the picked star above both
# hover over the map: shown only where a star is (empty pixels carry star_id -1)
HOVER_ONLY_ON_STARS = "export default (_args, _tool, {value}) => value != null && value >= 0"


def map_hover(fig, tooltips: list[tuple[str, str]]) -> None:
    """Set the map's hover tooltips, hidden over pixels that hold no star."""
    for tool in fig.tools:
        if isinstance(tool, HoverTool):
            if tool.tooltips != tooltips:
                tool.tooltips = tooltips
            if "@star_id" not in tool.filters:
                tool.filters = {"@star_id": CustomJS(code=HOVER_ONLY_ON_STARS)}


OVERLAY_STYLES = {
    "flagged": {"color": "#d62728", "size": 5, "alpha": 0.7},
    "selected": {"color": SELECTED_COLOR, "size": 4, "alpha": 0.8},
    "picked": {"color": "#ffdd00", "size": 16, "alpha": 1.0, "marker": "star", "line_color": "black",
               "line_width": 1.5},
}


class MapOverlays:
    """The selected, flagged and picked stars drawn over the latent map as plain glyphs, so
    that a new selection changes one data source instead of re-rendering a plot. Above
    ``max_points`` stars an evenly spaced subset is drawn."""

    def __init__(self, max_points: int) -> None:
        self.max_points = max_points
        self.figure = None
        self.sources: dict[str, ColumnDataSource] = {}

    def attach(self, fig) -> bool:
        """Add the overlay glyphs and their legend to a (new) map figure; False if already there.

        The glyphs are display only: the figure's selection, tap and hover tools keep to the
        renderers that were there before (the map's image), so the browser never hit-tests
        the overlay points on a mouse move (a lasso stays smooth with 20,000 flagged stars)
        nor styles them as selected itself; what is drawn as selected comes from the
        server's selection alone."""
        if fig is self.figure:
            return False
        self.figure = fig
        base = [r for r in fig.renderers if isinstance(getattr(r, "glyph", None), Image)] or fig.renderers[:1]
        for tool in fig.tools:
            if isinstance(tool, (BoxSelectTool, LassoSelectTool, TapTool, HoverTool)):
                tool.renderers = base  # "auto" would take in the overlay glyphs too
        items = []
        for kind, style in OVERLAY_STYLES.items():
            src = ColumnDataSource({"x": np.zeros(0), "y": np.zeros(0)})
            style = dict(style)
            alpha = style.pop("alpha")
            line = {"line_color": style.pop("line_color", None), "line_width": style.pop("line_width", 1)}
            r = fig.scatter(x="x", y="y", source=src, fill_alpha=alpha, **style, **line)
            r.selection_glyph = r.nonselection_glyph = None  # no browser-side selection styling
            r.muted_glyph = "auto"
            self.sources[kind] = src
            items.append(LegendItem(label=kind, renderers=[r]))
        fig.add_layout(Legend(items=items, orientation="horizontal", location="top_left",
                              **LEGEND_STYLE), "above")
        return True

    def thin(self, idx: np.ndarray) -> np.ndarray:
        """At most ``max_points`` of ``idx``, evenly spaced."""
        if idx.size > self.max_points:
            idx = idx[np.linspace(0, idx.size - 1, self.max_points).astype(np.int64)]
        return idx

    def show(self, kind: str, idx: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> None:
        """Draw the stars at rows ``idx`` (already thinned) of the map's x/y arrays."""
        src = self.sources.get(kind)
        if src is not None:
            src.data = {"x": np.asarray(xs[idx], float), "y": np.asarray(ys[idx], float)}
