"""The explorer's overview of a catalog larger than memory (a Dask dataframe).

:class:`LazySurvey` keeps only the lazy latents+catalog table
(:func:`chemlatent.encode.distributed.open_latents_dask`) and answers the map's questions by
streaming over its partitions: the density image for a view (Datashader aggregates Dask
dataframes partition by partition), a box selection's count and percentiles, and the star
nearest a click. Memory stays at a few partitions whatever the survey's size; each answer
costs one pass over the columns it needs. Spectra are read by random access as usual.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import datashader as ds
import numpy as np
import pandas as pd

from chemlatent.errors import ChemlatentError
from chemlatent.explore.mapraster import MapRaster, _spread, _spread_amount

SUMMARY_COLUMNS: tuple[str, ...] = ("snr", "chi2", "teff_pred", "logg_pred", "fe_h", "c_fe", "alpha_fe")


@dataclass
class BoxSummary:
    n_selected: int
    n_total: int
    columns: dict[str, dict[str, float]]


class LazySurvey:
    """A survey's latents and catalog as a Dask dataframe, never loaded whole."""

    def __init__(self, survey_dir: str | Path, model: str | None = None, *, scheduler: str | None = None,
                 storage_options: dict | None = None) -> None:
        from chemlatent.encode.distributed import open_latents_dask

        self.path = Path(survey_dir) if "://" not in str(survey_dir) else survey_dir
        self.df = open_latents_dask(survey_dir, model, storage_options=storage_options)
        self.scheduler = scheduler or "threads"
        self.columns = list(self.df.columns)
        self._n: int | None = None
        self._ranges: dict[str, tuple[float, float]] = {}

    @property
    def n(self) -> int:
        if self._n is None:
            self._n = int(self.df.map_partitions(len).sum().compute(scheduler=self.scheduler))
        return self._n

    def _check(self, *cols: str) -> None:
        bad = [c for c in cols if c not in self.columns]
        if bad:
            raise ChemlatentError(f"no column {bad[0]!r} in this survey (have: {', '.join(self.columns)})")

    def data_range(self, col: str) -> tuple[float, float]:
        """Finite min/max of a column (one pass, cached)."""
        self._check(col)
        if col not in self._ranges:
            import dask

            s = self.df[col]
            lo, hi = dask.compute(s.min(), s.max(), scheduler=self.scheduler)
            lo, hi = float(lo), float(hi)
            if not hi > lo:
                lo, hi = lo - 0.5, hi + 0.5
            pad = 0.02 * (hi - lo)
            self._ranges[col] = (lo - pad, hi + pad)
        return self._ranges[col]

    def raster(self, x: str, y: str, *, x_range=None, y_range=None, width: int = 560,
               height: int = 480) -> MapRaster:
        """Star counts per pixel and, per pixel, the highest star_id in it (for hover)."""
        self._check(x, y)
        x_range = tuple(map(float, x_range)) if x_range is not None else self.data_range(x)
        y_range = tuple(map(float, y_range)) if y_range is not None else self.data_range(y)
        sub = self.df[[x, y, "star_id"]].assign(_sid=self.df["star_id"].astype("float64"))
        canvas = ds.Canvas(plot_width=int(width), plot_height=int(height), x_range=x_range, y_range=y_range)
        import dask

        with dask.config.set(scheduler=self.scheduler):
            res = canvas.points(sub, x, y, agg=ds.summary(v=ds.count(), r=ds.max("_sid")))
        value = np.asarray(res["v"].data, dtype=np.float64)
        rowf = np.asarray(res["r"].data)
        sid = np.where(np.isfinite(rowf), rowf, -1).astype(np.int64)
        value = np.where(sid >= 0, value, np.nan)
        px = _spread_amount(sid >= 0)
        value, sid = _spread(value, sid, px)
        out = MapRaster(value, sid, np.asarray(res.coords[x].data), np.asarray(res.coords[y].data),
                        x_range, y_range, spread=px)
        out.hover["star_id"] = sid
        return out

    def box_summary(self, x: str, y: str, bounds, columns=SUMMARY_COLUMNS) -> BoxSummary:
        """Count and 16/50/84th percentiles of the stars inside a box, streamed."""
        self._check(x, y)
        x0, y0, x1, y1 = (float(b) for b in bounds)
        x0, x1 = min(x0, x1), max(x0, x1)
        y0, y1 = min(y0, y1), max(y0, y1)
        cols = [c for c in columns if c in self.columns]
        df = self.df
        inside = df[(df[x] >= x0) & (df[x] <= x1) & (df[y] >= y0) & (df[y] <= y1)][cols]
        sel = inside.compute(scheduler=self.scheduler)  # the selection itself is bounded by the box
        out: dict[str, dict[str, float]] = {}
        for c in cols:
            v = pd.to_numeric(sel[c], errors="coerce").to_numpy(np.float64)
            v = v[np.isfinite(v)]
            if v.size:
                p16, p50, p84 = np.percentile(v, [16, 50, 84])
                out[c] = {"median": float(p50), "p16": float(p16), "p84": float(p84), "n": int(v.size)}
        return BoxSummary(len(sel), self.n, out)

    def nearest(self, x: str, y: str, px: float, py: float, x_range, y_range,
                max_distance: float = 0.03) -> dict | None:
        """The star nearest a click (screen-normalised distance, within ``max_distance`` of
        the view) with its row of the table; None when nothing is close."""
        self._check(x, y)
        sx = abs(float(x_range[1]) - float(x_range[0])) or 1.0
        sy = abs(float(y_range[1]) - float(y_range[0])) or 1.0
        df = self.df
        near = df[(abs(df[x] - px) <= max_distance * sx) & (abs(df[y] - py) <= max_distance * sy)]
        cand = near.compute(scheduler=self.scheduler)
        if not len(cand):
            return None
        d2 = ((cand[x].to_numpy() - px) / sx) ** 2 + ((cand[y].to_numpy() - py) / sy) ** 2
        k = int(np.nanargmin(d2))
        if not d2[k] <= max_distance ** 2:
            return None
        return cand.iloc[k].to_dict()
