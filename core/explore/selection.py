"""Selections on a 2-D map of stars: box, lasso and tap, as boolean masks over all stars.

Everything here is plain NumPy/Numba and knows nothing of the GUI: the dashboard passes the
geometry it receives from its streams (a box's bounds, a lasso's vertices, a click
position with the visible ranges) and gets back a mask or a row index. That keeps a lasso
over millions of points fast (a bounding-box prefilter and a compiled even-odd
point-in-polygon test; the GUI library's own lasso on datashaded points is far slower).

Summaries (:func:`selection_summary`, :func:`compare_histograms`) describe a selection
against the whole survey for the dashboard's side panels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

MODES: tuple[str, ...] = ("replace", "add", "subtract", "intersect")


def _as_float(a) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype not in (np.float32, np.float64):
        a = a.astype(np.float64)
    return a


def box_mask(x, y, bounds) -> np.ndarray:
    """Stars with ``x0 <= x <= x1`` and ``y0 <= y <= y1``; ``bounds = (x0, y0, x1, y1)``.

    The corners may come in any order; NaN coordinates are never selected.
    """
    x, y = _as_float(x), _as_float(y)
    x0, y0, x1, y1 = (float(b) for b in bounds)
    x0, x1 = min(x0, x1), max(x0, x1)
    y0, y1 = min(y0, y1), max(y0, y1)
    m = x >= x0
    m &= x <= x1
    m &= y >= y0
    m &= y <= y1
    return m


@numba.njit(cache=True, nogil=True, parallel=True)
def _pip_banded(x, y, px, py, x0, y0, x1, y1, band_start, band_edges, dy, out):  # pragma: no cover
    """Even-odd point-in-polygon for every star; each star tests only the polygon edges
    that span its horizontal band (a handful instead of all of them)."""
    nb = band_start.shape[0] - 1
    for i in numba.prange(x.shape[0]):
        xi = x[i]
        yi = y[i]
        if not (xi >= x0 and xi <= x1 and yi >= y0 and yi <= y1):
            continue
        b = int((yi - y0) / dy)
        if b >= nb:
            b = nb - 1
        inside = False
        for k in range(band_start[b], band_start[b + 1]):
            m = band_edges[k]
            j = m - 1 if m > 0 else px.shape[0] - 1
            ym, yj = py[m], py[j]
            if (ym > yi) != (yj > yi):
                xc = px[m] + (yi - ym) * (px[j] - px[m]) / (yj - ym)
                if xi < xc:
                    inside = not inside
        out[i] = inside


def _edge_bands(py: np.ndarray, n_bands: int) -> tuple[np.ndarray, np.ndarray, float]:
    """CSR lists of the edges (m-1 -> m) overlapping each of ``n_bands`` horizontal bands."""
    y0, y1 = float(py.min()), float(py.max())
    dy = (y1 - y0) / n_bands if y1 > y0 else 1.0
    ya, yb = np.minimum(py, np.roll(py, 1)), np.maximum(py, np.roll(py, 1))
    first = np.clip(((ya - y0) / dy).astype(np.int64), 0, n_bands - 1)
    last = np.clip(((yb - y0) / dy).astype(np.int64), 0, n_bands - 1)
    counts = np.zeros(n_bands + 1, np.int64)
    for f, la in zip(first, last):
        counts[f + 1: la + 2] += 1
    start = np.cumsum(counts)
    edges = np.empty(start[-1], np.int64)
    fill = start[:-1].copy()
    for m, (f, la) in enumerate(zip(first, last)):
        for b in range(f, la + 1):
            edges[fill[b]] = m
            fill[b] += 1
    return start, edges, dy


def polygon_mask(x, y, xs, ys) -> np.ndarray:
    """Stars inside the polygon with vertices ``(xs, ys)`` (even-odd rule, so a lasso that
    crosses itself selects what a user sees as enclosed). Fewer than 3 vertices: nothing.
    """
    x, y = _as_float(x), _as_float(y)
    px = np.asarray(xs, dtype=np.float64).ravel()
    py = np.asarray(ys, dtype=np.float64).ravel()
    ok = np.isfinite(px) & np.isfinite(py)
    px, py = px[ok], py[ok]
    out = np.zeros(x.shape, bool)
    if px.size < 3:
        return out
    start, edges, dy = _edge_bands(py, int(min(4096, 4 * px.size)))
    _pip_banded(x, y, px, py, px.min(), py.min(), px.max(), py.max(), start, edges, dy, out)
    return out


def lasso_mask(x, y, geometry) -> np.ndarray:
    """Mask from a lasso geometry: an (n, 2) array of vertices (HoloViews ``Lasso``)."""
    g = np.asarray(geometry, dtype=np.float64)
    if g.ndim != 2 or g.shape[1] != 2:
        return np.zeros(np.shape(x), bool)
    return polygon_mask(x, y, g[:, 0], g[:, 1])


def combine(old: np.ndarray | None, new: np.ndarray, mode: str = "replace") -> np.ndarray:
    """Merge a new selection into the current one (replace, add, subtract, intersect)."""
    if mode not in MODES:
        raise ValueError(f"selection mode must be one of {', '.join(MODES)}, got {mode!r}")
    if old is None or mode == "replace":
        return new.copy()
    if mode == "add":
        return old | new
    if mode == "subtract":
        return old & ~new
    return old & new


def nearest_index(x, y, px: float, py: float, x_range=None, y_range=None,
                  max_distance: float | None = 0.03) -> int | None:
    """Row of the star nearest to the click ``(px, py)`` in screen-normalised units.

    Distances are measured after dividing each axis by its visible span (``x_range``,
    ``y_range``: (lo, hi); default the data's span), so a click picks what looks nearest
    whatever the axes' units. ``max_distance`` (a fraction of the view, None = any) keeps a
    click in empty space from picking a far-away star. Returns None when nothing is close.
    """
    x, y = _as_float(x), _as_float(y)
    if x.size == 0 or not (np.isfinite(px) and np.isfinite(py)):
        return None

    def span(v, r):
        if r is not None and all(np.isfinite(r)) and r[1] != r[0]:
            return abs(float(r[1]) - float(r[0]))
        fin = v[np.isfinite(v)]
        s = float(fin.max() - fin.min()) if fin.size else 1.0
        return s if s > 0 else 1.0

    sx, sy = span(x, x_range), span(y, y_range)
    md = np.inf if max_distance is None else float(max_distance)
    k = _nearest(x, y, float(px), float(py), 1.0 / sx, 1.0 / sy, md)
    return None if k < 0 else int(k)


@numba.njit(cache=True, nogil=True, parallel=True)
def _nearest(x, y, px, py, isx, isy, maxd):  # pragma: no cover - compiled
    """Row of the nearest finite star in screen-normalised distance within ``maxd`` (-1: none);
    one pass over the columns, split across threads."""
    n = x.shape[0]
    nchunk = 64
    best_d = np.full(nchunk, np.inf)
    best_i = np.full(nchunk, -1, np.int64)
    lim = maxd * maxd
    step = (n + nchunk - 1) // nchunk
    for c in numba.prange(nchunk):
        bd = lim
        bi = -1
        for i in range(c * step, min(n, (c + 1) * step)):
            dx = (x[i] - px) * isx
            if dx * dx > bd:
                continue
            dy = (y[i] - py) * isy
            d = dx * dx + dy * dy
            if d <= bd:
                bd = d
                bi = i
        best_d[c] = bd
        best_i[c] = bi
    k = -1
    d = np.inf
    for c in range(nchunk):
        if best_i[c] >= 0 and best_d[c] < d:
            d = best_d[c]
            k = best_i[c]
    return k


# --------------------------------------------------------------------------- summaries


@dataclass
class HistogramPair:
    """Histograms of one column for the selection and for all stars (same bins)."""

    column: str
    edges: np.ndarray
    selected: np.ndarray
    total: np.ndarray

    @property
    def centers(self) -> np.ndarray:
        return 0.5 * (self.edges[1:] + self.edges[:-1])

    def normalised(self) -> tuple[np.ndarray, np.ndarray]:
        """Both histograms as densities (each integrates to 1; zeros when empty)."""
        w = np.diff(self.edges)
        out = []
        for h in (self.selected, self.total):
            s = h.sum()
            out.append(h / (s * w) if s > 0 else np.zeros_like(w))
        return out[0], out[1]


def compare_histograms(values, mask: np.ndarray, bins: int = 40, column: str = "",
                       clip: tuple[float, float] = (0.5, 99.5)) -> HistogramPair | None:
    """Histogram a column for the selection and for all stars over the same range
    (percentile-clipped so a few outliers do not squash the plot). None if no finite value."""
    v = np.asarray(values, dtype=np.float64)
    fin = np.isfinite(v)
    if not fin.any():
        return None
    lo, hi = np.percentile(v[fin], clip)
    if not hi > lo:
        lo, hi = lo - 0.5, hi + 0.5
    edges = np.linspace(lo, hi, bins + 1)
    total, _ = np.histogram(np.clip(v[fin], lo, hi), edges)
    sel = fin & np.asarray(mask, bool)
    selected, _ = np.histogram(np.clip(v[sel], lo, hi), edges)
    return HistogramPair(column, edges, selected, total)


def selection_summary(frame, mask: np.ndarray, columns=("snr", "chi2", "score", "fe_h", "c_fe",
                                                       "alpha_fe", "teff_pred", "logg_pred")) -> dict:
    """Count and per-column median/16th/84th percentiles of the selection (columns present)."""
    mask = np.asarray(mask, bool)
    n = int(np.count_nonzero(mask))
    out = {"n_selected": n, "n_total": int(mask.size), "columns": {}}
    if n == 0:
        return out
    for c in columns:
        if c not in frame.columns:
            continue
        v = np.asarray(frame[c].to_numpy()[mask], dtype=np.float64)
        v = v[np.isfinite(v)]
        if v.size:
            p16, p50, p84 = np.percentile(v, [16, 50, 84])
            out["columns"][c] = {"median": float(p50), "p16": float(p16), "p84": float(p84),
                                 "n": int(v.size)}
    return out


# --------------------------------------------------------------------------- fast summaries
#
# On millions of stars, percentiles and fancy-indexed histograms of a selection cost tens of
# milliseconds per column. A :class:`ColumnDigest` fixes each column's binning once per
# survey (a fine histogram of FINE_PER_BIN sub-bins per display bin over the 0.5-99.5
# percentile range, plus one under- and one overflow bin), so a selection's histograms and
# quantiles need one compiled pass over the column and the mask, with no copies.

FINE_PER_BIN = 64


@numba.njit(cache=True, nogil=True, parallel=True)
def _masked_fine_hist(v, mask, lo, scale, nfine, use_mask):  # pragma: no cover - compiled
    """Counts in [underflow, nfine fine bins, overflow]; NaNs and unselected rows skipped
    (the rows are split into chunks histogrammed in parallel, then summed)."""
    n = v.shape[0]
    nchunk = 16
    step = (n + nchunk - 1) // nchunk
    parts = np.zeros((nchunk, nfine + 3), np.int64)  # last column: NaNs, dropped
    for c in numba.prange(nchunk):
        for i in range(c * step, min(n, (c + 1) * step)):
            x = v[i]
            t = (x - lo) * scale
            # branch-free binning (selections are unpredictable): clamp, NaN to the last bin
            b = nfine + 2
            if x == x:
                b = int(min(max(t + 1.0, 0.0), nfine + 1.0))
            parts[c, b] += mask[i] if use_mask else 1
    return parts[:, : nfine + 2].sum(axis=0)


@dataclass
class ColumnDigest:
    """A column's fixed binning and its whole-survey fine histogram (see module notes)."""

    column: str
    lo: float
    hi: float
    bins: int
    total_fine: np.ndarray  # (bins * FINE_PER_BIN + 2,) counts incl. under/overflow

    @classmethod
    def build(cls, values, column: str = "", bins: int = 30,
              clip: tuple[float, float] = (0.5, 99.5)) -> ColumnDigest | None:
        v = np.asarray(values)
        fin = np.isfinite(v)
        if not fin.any():
            return None
        lo, hi = (float(q) for q in np.percentile(v[fin], clip))
        if not hi > lo:
            lo, hi = lo - 0.5, hi + 0.5
        d = cls(column, lo, hi, bins, np.zeros(0, np.int64))
        d.total_fine = d.fine_counts(v, None)
        return d

    @property
    def nfine(self) -> int:
        return self.bins * FINE_PER_BIN

    @property
    def edges(self) -> np.ndarray:
        return np.linspace(self.lo, self.hi, self.bins + 1)

    def fine_counts(self, values, mask: np.ndarray | None) -> np.ndarray:
        v = np.asarray(values)
        if v.dtype not in (np.float32, np.float64):
            v = v.astype(np.float64)
        m = np.zeros(1, bool) if mask is None else np.asarray(mask, bool)
        return _masked_fine_hist(v, m, self.lo, self.nfine / (self.hi - self.lo), self.nfine,
                                 mask is not None)

    def display(self, fine: np.ndarray) -> np.ndarray:
        """Display-bin counts; out-of-range values land in the end bins (clipped)."""
        h = fine[1:-1].reshape(self.bins, FINE_PER_BIN).sum(axis=1)
        h[0] += fine[0]
        h[-1] += fine[-1]
        return h

    def histograms(self, values, mask: np.ndarray) -> HistogramPair:
        sel = self.fine_counts(values, mask)
        return HistogramPair(self.column, self.edges, self.display(sel), self.display(self.total_fine))

    def quantiles(self, values, mask: np.ndarray, qs=(16, 50, 84),
                  fine: np.ndarray | None = None) -> tuple[list[float], int]:
        """Selection percentiles (linear within a fine bin: error below one fine bin width,
        1/64 of a display bin). A quantile in the open under/overflow bins is computed
        exactly from the selected values. Returns (quantiles, number of finite values)."""
        fine = self.fine_counts(values, mask) if fine is None else fine
        n = int(fine.sum())
        if n == 0:
            return [], 0
        cum = np.cumsum(fine)
        width = (self.hi - self.lo) / self.nfine
        out: list[float] = []
        exact = None
        for q in qs:
            target = q / 100.0 * n
            k = int(np.searchsorted(cum, target, side="left"))
            k = min(k, fine.size - 1)
            if k == 0 or k == fine.size - 1:
                if exact is None:
                    v = np.asarray(values)[np.asarray(mask, bool)]
                    exact = v[np.isfinite(v)].astype(np.float64)
                out.append(float(np.percentile(exact, q)))
                continue
            before = cum[k - 1]
            frac = (target - before) / fine[k] if fine[k] else 0.5
            out.append(float(self.lo + (k - 1 + min(max(frac, 0.0), 1.0)) * width))
        return out, n
