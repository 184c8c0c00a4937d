"""What every browser session shares and nobody changes: :class:`SurveyData` (GUI-free).

The survey, its latents row-aligned with the catalog in one flat table
(:attr:`SurveyData.frame`), the rule engine, the anomaly scores, the model (for
reconstructions) and its calibration, the annotations database. Each session's own view of
it is :class:`chemlatent.explore.state.ExplorerState`; both are as in glue's viewers (shared
data, small per-view state) and neither imports a GUI library.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd

from chemlatent.errors import ChemlatentError
from chemlatent.explore import selection
from chemlatent.flags.anomaly import compute_scores
from chemlatent.flags.engine import RuleEngine
from chemlatent.io.latents import find_latents, latents_metadata, latents_reading, read_latents
from chemlatent.io.store import Survey
from chemlatent.model.calibration import load_calibration

AXIS_COLUMNS: tuple[str, ...] = ("z_fe", "z_c", "z_alpha", "w_0", "w_1", "teff_pred", "logg_pred")
TRUTH_COLUMNS: tuple[str, ...] = ("fe_h", "c_fe", "alpha_fe", "teff", "logg")
COLOR_EXTRA: tuple[str, ...] = ("snr", "chi2", "score", "s_c_cond", "s_alpha_cond")
PRESET_NAMES: tuple[str, ...] = ("none", "cemp", "apmp")
DEFAULT_ELEMENT_DEX: dict[str, float] = {"cemp": 0.7, "apmp": 0.0}
TABLE_SOURCES: tuple[str, ...] = ("flagged", "selection", "flagged in selection", "best next")
TABLE_COLUMNS: tuple[str, ...] = ("star_id", "verdict", "note", "ra", "dec", "snr", "z_fe", "z_c",
                                  "z_alpha", "s_c_cond", "s_alpha_cond", "score", "teff_pred",
                                  "logg_pred", "chi2", "fe_h", "c_fe", "alpha_fe", "population")
MAX_EXPORT_ROWS = 2_000_000  # one browser download, built in server memory
HOVER_COLUMNS: tuple[str, ...] = ("star_id", "snr", "teff_pred", "logg_pred")
EXPORT_FORMATS: dict[str, str] = {"csv": "csv", "fits": "fits", "votable": "vot"}


class SurveyData:
    """A survey with its latents, scores, rule engine, model and calibration (shared).

    ``model``: a model directory or name (default: the latents file's own metadata
    ``model_dir``, else the bundled model); the reconstruction is simply unavailable
    (``model_note`` says why) when no model can be loaded.
    """

    def __init__(self, survey_dir: str | Path, model: str | Path | None = None, *,
                 db: str | None = None, who: str | None = None, load_model: bool = True) -> None:
        t0 = time.perf_counter()
        self.path = Path(survey_dir)
        self.survey = Survey(self.path)
        model_dir_arg = Path(model) if model is not None and Path(model).is_dir() else None
        info = find_latents(self.path, str(model) if model is not None else None)
        self.latents_path = info.path
        self.model_name = info.model_name
        self.model_dir: Path | None = model_dir_arg or info.model_dir or _model_dir_from_meta(
            info.path, self.path)
        self.notes: list[str] = [info.note] if info.note else []
        self.latents_reading = latents_reading(latents_metadata(info.path))
        latents = read_latents(info.path)
        catalog = self.survey.catalog
        row = pd.Index(catalog["star_id"]).get_indexer(latents["star_id"])
        if (row < 0).any():
            self.notes.append(f"{int((row < 0).sum())} latent rows name stars not in the catalog")
            latents = latents[row >= 0].reset_index(drop=True)
            row = row[row >= 0]
        self.calibration = load_calibration(self.model_dir) if self.model_dir else None
        self._attach(latents, row)
        self.db_location = db or str(self.path)
        self.who = who
        self._store = None
        self._store_lock = threading.Lock()
        self._digest_lock = threading.Lock()
        self.model = None
        self.model_note = ""
        if load_model:
            self._load_model()
        self.windows = model_windows(self.model)
        self.load_seconds = time.perf_counter() - t0

    def _attach(self, latents: pd.DataFrame, row: np.ndarray) -> None:
        """Build the engine, scores and the flat :attr:`frame` from latents whose rows map
        to catalog rows ``row``."""
        catalog = self.survey.catalog
        self.latents = latents
        self.engine = RuleEngine.from_latents(latents, calibration=self.calibration)
        cols: dict[str, np.ndarray] = {"star_id": latents["star_id"].to_numpy(np.int64),
                                       "row": row.astype(np.int64)}
        for c in latents.columns:
            if c in ("star_id", "run") or not pd.api.types.is_numeric_dtype(latents[c]):
                continue
            cols[c] = latents[c].to_numpy(np.float32)
        cols.update(_score_columns(latents, self.engine.ref))
        for c in ("snr", "ra", "dec", *TRUTH_COLUMNS):
            if c in catalog.columns:
                v = pd.to_numeric(catalog[c], errors="coerce").to_numpy(np.float64)[row]
                if c in ("ra", "dec") and not np.isfinite(v).any():
                    continue
                cols[c] = v.astype(np.float64 if c in ("ra", "dec") else np.float32)
        for c in catalog.columns:  # every other numeric catalog column, e.g. to colour the map
            if c not in cols and c != "star_id" and pd.api.types.is_numeric_dtype(catalog[c]) \
                    and not pd.api.types.is_bool_dtype(catalog[c]):
                cols[c] = pd.to_numeric(catalog[c], errors="coerce").to_numpy(np.float32)[row]
        if "population" in catalog.columns:
            pop = catalog["population"].astype("category")
            cols["population"] = pd.Categorical.from_codes(pop.cat.codes.to_numpy()[row],
                                                           pop.cat.categories)
        self.frame = pd.DataFrame(cols, copy=False)  # latent columns stay shared with latents
        self.n = len(self.frame)
        self.truth_available = all(c in self.frame.columns for c in ("fe_h", "c_fe", "alpha_fe")) and \
            bool(np.isfinite(self.frame["fe_h"].to_numpy()).any())
        self.axis_options = [c for c in AXIS_COLUMNS + TRUTH_COLUMNS if c in self.frame.columns]
        self.color_options = ["density", "flagged"] + [
            c for c in COLOR_EXTRA + TRUTH_COLUMNS + ("teff_pred", "logg_pred", "z_fe", "z_c", "z_alpha")
            if c in self.frame.columns]
        self.color_options += [c for c in self.frame.columns  # then any other numeric column
                               if c not in self.color_options and c not in ("star_id", "row")
                               and pd.api.types.is_numeric_dtype(self.frame[c])]
        self._digests: dict[str, selection.ColumnDigest | None] = {}
        self.__dict__.pop("_sid_index", None)

    def with_latents(self, latents: pd.DataFrame, note: str = "") -> SurveyData:
        """A copy over other latents of the same survey (e.g. a re-inference run applied);
        the survey, model, calibration and annotations are shared."""
        import copy as _copy

        catalog = self.survey.catalog
        row = pd.Index(catalog["star_id"]).get_indexer(latents["star_id"])
        if (row < 0).any():
            latents = latents[row >= 0].reset_index(drop=True)
            row = row[row >= 0]
        out = _copy.copy(self)
        out._digest_lock = threading.Lock()
        out.notes = [*self.notes, note] if note else list(self.notes)
        out._attach(latents.reset_index(drop=True), row)
        return out

    def tiled(self, copies: int, jitter: float = 0.05, seed: int = 0) -> SurveyData:
        """A copy holding ``copies`` jittered replicas of every star (new star_ids, same
        spectra): how the benchmarks build a 10M-star session from a 1M-star survey."""
        import copy as _copy

        rng = np.random.default_rng(seed)
        lat = self.latents
        n = len(lat)
        cols: dict[str, np.ndarray] = {}
        for c in lat.columns:
            if c == "run":
                continue
            v = lat[c].to_numpy()
            if c == "star_id":
                step = int(v.max()) + 1
                cols[c] = (np.tile(v.astype(np.int64), copies)
                           + np.repeat(np.arange(copies, dtype=np.int64) * step, n))
            else:
                cols[c] = np.tile(v, copies)
                if c in ("z_fe", "z_c", "z_alpha"):
                    cols[c][n:] += rng.normal(0, jitter, n * (copies - 1)).astype(cols[c].dtype)
        out = _copy.copy(self)
        out._digest_lock = threading.Lock()
        out._attach(pd.DataFrame(cols, copy=False), np.tile(self.frame["row"].to_numpy(), copies))
        return out

    def _load_model(self) -> None:
        self.model, self.model_note = load_survey_model(self.model_dir, self.survey.grid)
        if self.model_note:
            self.notes.append(self.model_note)

    @property
    def store(self):
        """The annotations database (opened on first use, shared by sessions)."""
        with self._store_lock:
            if self._store is None:
                from chemlatent.io.annotations import open_annotations

                self._store = open_annotations(self.db_location, who=self.who)
            return self._store

    def scores_for(self, idx: np.ndarray) -> pd.DataFrame:
        """All anomaly scores of the stars at frame rows ``idx`` (same reference as the map)."""
        return compute_scores(self.latents.iloc[idx], self.engine.ref, include_prior=False)

    def digest(self, column: str) -> selection.ColumnDigest | None:
        """The column's fixed binning for fast selection summaries (built once, shared)."""
        with self._digest_lock:
            if column not in self._digests:
                self._digests[column] = (selection.ColumnDigest.build(self.frame[column].to_numpy(), column)
                                         if column in self.frame.columns else None)
            return self._digests[column]

    RASTERS_KEPT = 8  # map views kept for every session to reuse (each about 2 MB)

    def map_raster(self, x: str, y: str, color: str, *, x_range=None, y_range=None, width: int = 560,
                   height: int = 480, hover: tuple[str, ...] = ()):
        """:func:`chemlatent.explore.mapraster.rasterize_map` of this survey's stars, shared by
        every session: a page opening on the default view, or a view another session has
        just drawn, costs no aggregation. The last :data:`RASTERS_KEPT` views are kept; the
        result must not be modified. Per-session colours (the flagged mask) do not come here."""
        from chemlatent.explore.mapraster import rasterize_map

        key = (x, y, color, None if x_range is None else tuple(map(float, x_range)),
               None if y_range is None else tuple(map(float, y_range)), int(width), int(height),
               tuple(hover))
        with self._digest_lock:
            frame, cache = self.__dict__.get("_rasters", (None, None))
            if frame is not self.frame:  # a copy with other latents: its own cache
                cache = {}
                self._rasters = (self.frame, cache)
            hit = cache.pop(key, None)
            if hit is not None:
                cache[key] = hit  # most recently used last
                return hit
        r = rasterize_map(self.frame, x, y, color, x_range=x_range, y_range=y_range, width=width,
                          height=height, hover=hover)
        with self._digest_lock:
            cache[key] = r
            while len(cache) > self.RASTERS_KEPT:
                cache.pop(next(iter(cache)))
        return r

    def latent_row(self, i: int) -> dict:
        return self.frame.iloc[int(i)].to_dict()

    def index_of(self, star_id: int) -> int | None:
        """Index into :attr:`frame` of a star_id (None when unknown)."""
        if not hasattr(self, "_sid_index"):
            self._sid_index = pd.Index(self.frame["star_id"])
        k = self._sid_index.get_indexer([int(star_id)])[0]
        return None if k < 0 else int(k)

    def spectrum(self, star_id: int):
        """Spectrum-panel data for one star (see :mod:`chemlatent.explore.spectrum`)."""
        from chemlatent.explore.spectrum import star_spectrum

        i = self.index_of(star_id)
        if i is None:
            raise ChemlatentError(f"star {star_id} is not in this survey's latents")
        r = self.frame.iloc[i]
        return star_spectrum(self.survey, int(r["row"]), r, self.model)


SCORE_COLUMNS: dict[str, str] = {"score": "mahal_d2", "s_fe": "s_fe", "s_c": "s_c", "s_alpha": "s_alpha",
                                 "s_c_cond": "s_c_cond", "s_alpha_cond": "s_alpha_cond"}


def _score_columns(latents: pd.DataFrame, ref, block: int = 1_000_000) -> dict[str, np.ndarray]:
    """The map's score columns, computed a million stars at a time (bounded scratch memory)."""
    n = len(latents)
    out = {k: np.empty(n, np.float32) for k in SCORE_COLUMNS}
    for s in range(0, n, block):
        sc = compute_scores(latents.iloc[s:s + block], ref, include_prior=False)
        for k, c in SCORE_COLUMNS.items():
            out[k][s:s + block] = sc[c].to_numpy(np.float32)
    return out


def _model_dir_from_meta(latents_path: Path, survey_dir: Path) -> Path | None:
    """The model directory named by the latents file (as written by ``chemlatent encode``),
    tried as given, relative to the survey and to the survey's parent."""
    try:
        meta = latents_metadata(latents_path)
    except Exception:
        return None
    text = meta.get("model_dir")
    if not text:
        return None
    p = Path(str(text))
    for cand in (p, survey_dir / p, survey_dir.parent / p):
        if (cand / "config.json").exists():
            return cand
    return None


def load_survey_model(model: str | Path | None, grid) -> tuple[object | None, str]:
    """(model, "") for reconstructions on the survey's ``grid``, or (None, why not) when the
    model cannot be loaded or was trained on another grid."""
    from chemlatent.model.modelio import check_grid, load_model

    try:
        loaded = load_model(model)
        check_grid(loaded, grid)
    except ChemlatentError as exc:
        return None, f"no reconstruction: {exc}"
    return loaded, ""


def model_windows(model) -> dict:
    """The element windows of a model (the default ones without a model)."""
    return model.config.windows if model is not None else _default_windows()


def _default_windows() -> dict:
    from chemlatent.spectra.grid import default_windows

    return default_windows()
