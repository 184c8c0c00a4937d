"""GUI-free state of the explorer (the dashboard is a thin layer over these classes).

Two levels, as in glue's viewers:

- :class:`SurveyData`: what every browser session shares and nobody changes: the survey,
  its latents row-aligned with the catalog in one flat table (:attr:`SurveyData.frame`),
  the rule engine, the anomaly scores, the model (for reconstructions) and its
  calibration, the annotations database.
- :class:`ExplorerState`: one per browser session (``param.Parameterized``, no GUI
  import): axes and colour of the latent map, the selection mask, the picked star, the
  active rule and its thresholds with live counts, the candidate table's paging and
  sorting, annotation and export actions. Tests drive it directly, without a server.

Only ``param`` is imported here: the Panel/Bokeh/HoloViews code lives in ``chemlatent.app``.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import param

from chemlatent.errors import ChemlatentError
from chemlatent.explore import selection
from chemlatent.flags.anomaly import compute_scores
from chemlatent.flags.engine import RuleCounts, RuleEngine
from chemlatent.flags.pipeline import candidate_frame, flag_stars, provenance_extra, truth_for
from chemlatent.flags.presets import preset as preset_rule
from chemlatent.flags.tree import Rule
from chemlatent.io.latents import find_latents, latents_metadata, read_latents
from chemlatent.io.store import Survey
from chemlatent.model.calibration import load_calibration

AXIS_COLUMNS: tuple[str, ...] = ("z_fe", "z_c", "z_alpha", "w_0", "w_1", "teff_pred", "logg_pred")
TRUTH_COLUMNS: tuple[str, ...] = ("fe_h", "c_fe", "alpha_fe", "teff", "logg")
COLOR_EXTRA: tuple[str, ...] = ("snr", "chi2", "score", "s_c_cond", "s_alpha_cond")
PRESET_NAMES: tuple[str, ...] = ("none", "cemp", "apmp")
DEFAULT_ELEMENT_DEX: dict[str, float] = {"cemp": 0.7, "apmp": 0.0}
TABLE_SOURCES: tuple[str, ...] = ("flagged", "selection", "flagged in selection")
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
        self.windows = (self.model.config.windows if self.model is not None else _default_windows())
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
        from chemlatent.model.modelio import check_grid, load_model

        try:
            self.model = load_model(self.model_dir)
            check_grid(self.model, self.survey.grid)
        except ChemlatentError as exc:
            self.model = None
            self.model_note = f"no reconstruction: {exc}"
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


def _default_windows() -> dict:
    from chemlatent.spectra.grid import default_windows

    return default_windows()


class ExplorerState(param.Parameterized):
    """One browser session's view of a :class:`SurveyData` (see module docstring)."""

    x_axis = param.Selector(default="z_fe", objects=list(AXIS_COLUMNS), doc="map x axis")
    y_axis = param.Selector(default="z_c", objects=list(AXIS_COLUMNS), doc="map y axis")
    color_by = param.Selector(default="density", objects=["density"], doc="map colour")
    selection_mode = param.Selector(default="replace", objects=list(selection.MODES))
    picked = param.Integer(default=None, allow_None=True, doc="star_id of the picked star")
    preset = param.Selector(default="cemp", objects=list(PRESET_NAMES))
    unit = param.Selector(default="sigma", objects=["sigma", "dex"])
    element_sigma = param.Number(default=3.0, bounds=(0.5, 10.0), step=0.1,
                                 doc="element cut (metallicity-conditional sigma)")
    fe_sigma = param.Number(default=1.0, bounds=(0.0, 5.0), step=0.1,
                            doc="metal-poor: z_fe below the survey median by this many sigma")
    element_dex = param.Number(default=0.7, bounds=(-1.5, 3.0), step=0.05,
                               doc="element cut in dex ([C/Fe] > t or [alpha/Fe] < t)")
    fe_dex = param.Number(default=-1.0, bounds=(-4.0, 0.5), step=0.05, doc="[Fe/H] < t")
    table_source = param.Selector(default="flagged", objects=list(TABLE_SOURCES))
    page = param.Integer(default=1, bounds=(1, None))
    page_size = param.Integer(default=20, bounds=(1, 1000))
    sort_by = param.String(default="score")
    ascending = param.Boolean(default=False)
    export_format = param.Selector(default="csv", objects=list(EXPORT_FORMATS))
    message = param.String(default="", doc="last status message for the user")
    selection_version = param.Integer(default=0, doc="bumped when the selection changes")
    flag_version = param.Integer(default=0, doc="bumped when the flagged set changes")
    annotation_version = param.Integer(default=0, doc="bumped when a verdict is written")

    def __init__(self, data: SurveyData, user: str | None = None, **params) -> None:
        super().__init__(**{k: v for k, v in params.items() if k not in ("x_axis", "y_axis", "color_by")})
        self.data = data
        self.user = user  # the logged-in user, recorded with verdicts (None: the server's user)
        self.param.x_axis.objects = list(data.axis_options)
        self.param.y_axis.objects = list(data.axis_options)
        self.param.color_by.objects = list(data.color_options)
        if data.calibration is None:
            self.param.unit.objects = ["sigma"]
        for k in ("x_axis", "y_axis", "color_by"):
            if k in params:
                setattr(self, k, params[k])
        self.selected: np.ndarray = np.zeros(data.n, bool)
        self.flagged: np.ndarray = np.zeros(data.n, bool)
        self.counts: RuleCounts | None = None
        self._truth_cache: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._fine_cache: dict[tuple[int, str], tuple] = {}
        self._update_flags()

    def set_data(self, data: SurveyData) -> None:
        """Switch to other latents of the same survey (a re-inference run applied, or back):
        the selection and the picked star are kept by star_id; flags are recomputed."""
        old_ids = self.data.frame["star_id"].to_numpy()[self.selected]
        self.data = data
        self._truth_cache.clear()
        self.selected = data.frame["star_id"].isin(old_ids).to_numpy()
        self.flagged = np.zeros(data.n, bool)
        self._fine_cache.clear()
        if self.picked is not None and data.index_of(self.picked) is None:
            self.picked = None
        self._update_flags()
        self.selection_version += 1

    # -- columns -------------------------------------------------------------
    def values(self, column: str) -> np.ndarray:
        if column == "flagged":
            return self.flagged.astype(np.float32)
        if column == "selected":
            return self.selected.astype(np.float32)
        return self.data.frame[column].to_numpy()

    @property
    def xy(self) -> tuple[np.ndarray, np.ndarray]:
        return self.values(self.x_axis), self.values(self.y_axis)

    # -- selection -----------------------------------------------------------
    def _set_selection(self, new: np.ndarray, mode: str | None) -> int:
        self.selected = selection.combine(self.selected, new, mode or self.selection_mode)
        n = int(np.count_nonzero(self.selected))
        self.message = f"{n:,} stars selected"
        if self.table_source != "flagged":
            self.page = 1
        self.selection_version += 1
        return n

    def select_box(self, bounds, mode: str | None = None) -> int:
        """Select the stars inside ``bounds = (x0, y0, x1, y1)`` on the current axes."""
        x, y = self.xy
        return self._set_selection(selection.box_mask(x, y, bounds), mode)

    def select_lasso(self, geometry, mode: str | None = None) -> int:
        """Select the stars inside a lasso polygon ((n, 2) vertices) on the current axes."""
        x, y = self.xy
        return self._set_selection(selection.lasso_mask(x, y, geometry), mode)

    def select_ids(self, star_ids, mode: str | None = None) -> int:
        new = self.data.frame["star_id"].isin(np.asarray(star_ids, np.int64)).to_numpy()
        return self._set_selection(new, mode)

    def clear_selection(self) -> None:
        self.selected = np.zeros(self.data.n, bool)
        self.message = "selection cleared"
        self.selection_version += 1

    @property
    def n_selected(self) -> int:
        return int(np.count_nonzero(self.selected))

    SUMMARY_COLUMNS: tuple[str, ...] = ("snr", "chi2", "score", "fe_h", "c_fe", "alpha_fe",
                                        "teff_pred", "logg_pred")

    def _selection_fine(self, column: str):
        """(digest, fine counts of the selection) for a column, cached per selection."""
        key = (self.selection_version, column)
        cache = self._fine_cache
        if key not in cache:
            if len(cache) > 64:
                cache.clear()
            d = self.data.digest(column)
            cache[key] = (d, None if d is None else d.fine_counts(self.values(column), self.selected))
        return cache[key]

    def selection_summary(self) -> dict:
        """Count and per-column median/16th/84th percentiles of the selection (one compiled
        pass per column; see :class:`chemlatent.explore.selection.ColumnDigest`)."""
        n = self.n_selected
        out = {"n_selected": n, "n_total": self.data.n, "columns": {}}
        if n == 0:
            return out
        for c in self.SUMMARY_COLUMNS:
            d, fine = self._selection_fine(c)
            if d is None:
                continue
            q, k = d.quantiles(self.values(c), self.selected, fine=fine)
            if k:
                out["columns"][c] = {"median": q[1], "p16": q[0], "p84": q[2], "n": k}
        return out

    def selection_histograms(self, columns=("snr", "score", "fe_h", "c_fe", "alpha_fe")
                             ) -> dict[str, selection.HistogramPair]:
        """The selection's histograms against the whole survey's (30 fixed bins per column)."""
        out = {}
        for c in columns:
            d, fine = self._selection_fine(c)
            if d is not None:
                out[c] = selection.HistogramPair(c, d.edges, d.display(fine), d.display(d.total_fine))
        return out

    # -- picking -------------------------------------------------------------
    def pick_at(self, x: float, y: float, x_range=None, y_range=None,
                max_distance: float = 0.03) -> int | None:
        """Pick the star nearest a click on the map (screen-normalised); returns its star_id."""
        xs, ys = self.xy
        k = selection.nearest_index(xs, ys, x, y, x_range, y_range, max_distance)
        if k is None:
            self.message = "no star near the click"
            return None
        sid = int(self.data.frame["star_id"].iat[k])
        self.picked = sid
        return sid

    def pick_star(self, star_id: int | None) -> None:
        if star_id is not None and self.data.index_of(star_id) is None:
            raise ChemlatentError(f"star {star_id} is not in this survey")
        self.picked = None if star_id is None else int(star_id)

    def picked_spectrum(self):
        """StarSpectrum of the picked star (None when none is picked)."""
        if self.picked is None:
            return None
        return self.data.spectrum(self.picked)

    def picked_info(self) -> dict:
        if self.picked is None:
            return {}
        i = self.data.index_of(self.picked)
        return {} if i is None else self.data.latent_row(i)

    def selection_stacks(self, max_stars: int = 300):
        """(selection stack, matched survey stack) at similar predicted Teff/logg."""
        from chemlatent.explore.spectrum import stacked_spectra

        f = self.data.frame
        return stacked_spectra(self.data.survey, f["teff_pred"].to_numpy(), f["logg_pred"].to_numpy(),
                               self.selected, f["row"].to_numpy(), max_stars=max_stars)

    # -- rules ---------------------------------------------------------------
    @property
    def rule(self) -> Rule | None:
        """The active rule from the preset and the thresholds (None for preset 'none'),
        built by the same :func:`chemlatent.flags.presets.preset` as ``chemlatent flag``."""
        if self.preset == "none":
            return None
        if self.unit == "dex":
            return preset_rule(self.preset, element_dex=float(self.element_dex), fe_dex=float(self.fe_dex))
        return preset_rule(self.preset, sigma=float(self.element_sigma), calibration=self.data.calibration,
                           fe_sigma=float(self.fe_sigma), fe_dex=float(self.fe_dex))

    @property
    def fe_in_dex(self) -> bool:
        """Whether the metal-poor condition is in dex in every unit (a calibrated Fe axis)."""
        cal = self.data.calibration
        return cal is not None and cal.has("fe")

    def _truth(self, rule: Rule):
        if not self.data.truth_available:
            return None, None
        key = rule.truth_definition().describe() if rule.truth_definition() is not None else ""
        if key not in self._truth_cache:
            truth, known = truth_for(rule, self.data.frame)
            if truth is None:
                return None, None
            self._truth_cache[key] = (truth, known)
        return self._truth_cache[key]

    @param.depends("preset", "unit", "element_sigma", "fe_sigma", "element_dex", "fe_dex", watch=True)
    def _update_flags(self) -> None:
        rule = self.rule
        if rule is None:
            self.flagged = np.zeros(self.data.n, bool)
            self.counts = None
        else:
            truth, known = self._truth(rule)
            try:
                self.counts = flag_stars(self.data.engine, rule, truth=truth, known=known)
            except ChemlatentError as exc:
                self.message = str(exc)
                self.counts = None
                self.flagged = np.zeros(self.data.n, bool)
            else:
                self.flagged = self.counts.extra["mask"]
        if self.table_source != "selection":
            self.page = 1
        self.flag_version += 1

    @param.depends("preset", watch=True)
    def _preset_defaults(self) -> None:
        if self.preset in DEFAULT_ELEMENT_DEX:
            self.element_dex = DEFAULT_ELEMENT_DEX[self.preset]

    @property
    def n_flagged(self) -> int:
        return int(np.count_nonzero(self.flagged))

    def counts_summary(self) -> dict:
        """Flagged, expected by chance, and precision/recall when truth labels are known."""
        if self.counts is None:
            return {"rule": "none", "n_flagged": 0, "n_stars": self.data.n, "expected": 0.0}
        c = self.counts
        out = {"rule": self.rule.describe(), "n_flagged": c.n_flagged, "n_stars": c.n_stars,
               "expected": float(c.expected), "seconds": c.seconds}
        if c.metrics:
            out.update(precision=c.metrics["precision"], recall=c.metrics["recall"],
                       f1=c.metrics["f1"], n_true=c.metrics["n_true"])
        return out

    # -- candidate table -----------------------------------------------------
    def table_mask(self) -> np.ndarray:
        if self.table_source == "flagged":
            return self.flagged
        if self.table_source == "selection":
            return self.selected
        return self.flagged & self.selected

    def candidates(self) -> pd.DataFrame:
        """The table's rows (all of them, sorted), with the current verdicts merged in."""
        f = self.data.frame
        idx = np.flatnonzero(self.table_mask())
        cols = [c for c in TABLE_COLUMNS if c in f.columns]
        df = f.iloc[idx][cols].reset_index(drop=True)
        v = self._verdicts(df["star_id"].to_numpy()) if len(df) else None
        if v is not None and len(v):
            df = df.merge(v[["star_id", "verdict", "note"]], on="star_id", how="left")
        else:
            df["verdict"] = pd.Series([None] * len(df), dtype=object)
            df["note"] = pd.Series([None] * len(df), dtype=object)
        df["verdict"] = df["verdict"].fillna("")
        df["note"] = df["note"].fillna("")
        cols = [c for c in TABLE_COLUMNS if c in df.columns]
        df = df[cols]
        if self.sort_by in df.columns:
            df = df.sort_values(self.sort_by, ascending=self.ascending, kind="stable",
                                na_position="last").reset_index(drop=True)
        return df

    def _verdicts(self, ids: np.ndarray) -> pd.DataFrame | None:
        try:
            return self.data.store.verdicts(ids)
        except ChemlatentError as exc:
            self.message = str(exc)
            return None

    def candidate_page(self, page: int | None = None) -> tuple[pd.DataFrame, int]:
        """(rows of one page, total rows); ``page`` counts from 1 (default: :attr:`page`)."""
        df = self.candidates()
        total = len(df)
        n_pages = max(1, -(-total // self.page_size))
        p = min(max(1, int(page or self.page)), n_pages)
        s = (p - 1) * self.page_size
        return df.iloc[s:s + self.page_size].reset_index(drop=True), total

    # -- annotations ---------------------------------------------------------
    def annotate(self, star_ids, verdict: str, note: str = "") -> int:
        """Record a verdict (candidate/accepted/rejected, or accept/reject) for stars."""
        verdict = {"accept": "accepted", "reject": "rejected"}.get(verdict, verdict)
        ids = np.atleast_1d(np.asarray(star_ids, np.int64))
        if ids.size == 0:
            self.message = "no star to annotate: pick one or select table rows"
            return 0
        self.data.store.set_verdicts(ids, verdict, note, who=self.user)
        self.message = f"{verdict}: {ids.size} star(s)" + (f" ({note})" if note else "")
        self.annotation_version += 1
        return int(ids.size)

    def verdicts(self, star_ids=None) -> pd.DataFrame:
        return self.data.store.verdicts(star_ids)

    # -- export --------------------------------------------------------------
    def export_frame(self) -> pd.DataFrame:
        """The table's stars with latents, scores, calibrated dex and catalog columns."""
        idx = np.flatnonzero(self.table_mask())
        if idx.size > MAX_EXPORT_ROWS:
            raise ChemlatentError(f"{idx.size:,} stars is more than a download may hold "
                                  f"({MAX_EXPORT_ROWS:,}): narrow the table, or use chemlatent flag "
                                  "on the command line")
        frame = candidate_frame(self.data.latents, idx, self.data.engine.ref,
                                catalog=self.data.survey.catalog, calibration=self.data.calibration,
                                include_prior=False)
        v = self._verdicts(frame["star_id"].to_numpy()) if len(frame) else None
        if v is not None and len(v):
            frame = frame.merge(v[["star_id", "verdict", "note"]], on="star_id", how="left")
            frame["verdict"] = frame["verdict"].fillna("")
            frame["note"] = frame["note"].fillna("")
        return frame

    def export_meta(self) -> dict:
        from chemlatent.io.export import provenance

        extra = {"n_stars": self.data.n, "n_flagged": self.n_flagged,
                 "table": self.table_source}
        if self.counts is not None:
            extra.update(provenance_extra(self.counts, calibration=self.data.calibration))
        return provenance(survey_path=self.data.path, model_name=self.data.model_name,
                          model_dir=str(self.data.model_dir) if self.data.model_dir else None,
                          rule=self.rule, extra=extra)

    def export_filename(self, fmt: str | None = None) -> str:
        fmt = fmt or self.export_format
        what = self.preset if self.table_source == "flagged" and self.preset != "none" else \
            self.table_source.replace(" ", "_")
        return f"{self.data.path.name}_{what}.{EXPORT_FORMATS[fmt]}"

    def export(self, fmt: str | None = None) -> tuple[str, bytes]:
        """(file name, file bytes) of the candidate table in csv, fits or votable."""
        from chemlatent.io.export import export_bytes

        fmt = fmt or self.export_format
        frame = self.export_frame()
        data = export_bytes(frame, fmt, self.export_meta())
        self.message = f"exported {len(frame):,} stars as {fmt}"
        return self.export_filename(fmt), data

    def send_samp(self, hub_timeout: float = 3.0) -> str:
        """Send the table to TOPCAT/Aladin; returns (and shows) a message, never raises."""
        from chemlatent.io.export import send_table_samp

        try:
            frame = self.export_frame()
            res = send_table_samp(frame, f"chemlatent {self.export_filename().rsplit('.', 1)[0]}",
                                  hub_timeout=hub_timeout, meta=self.export_meta())
        except ChemlatentError as exc:
            self.message = f"SAMP: {exc}"
            return self.message
        n = len(res["loaded_by"])
        self.message = f"sent {len(frame):,} stars over SAMP to {n} client(s)"
        return self.message

    # -- shareable state -----------------------------------------------------
    URL_PARAMS: tuple[str, ...] = ("x_axis", "y_axis", "color_by", "preset", "unit", "element_sigma",
                                   "fe_sigma", "element_dex", "fe_dex", "picked", "table_source")

    def url_state(self) -> dict:
        """The view's shareable parameters (those kept in the URL)."""
        return {k: getattr(self, k) for k in self.URL_PARAMS}

    def apply_url_state(self, state: dict) -> None:
        """Set parameters from a URL-like dict, ignoring unknown or invalid values."""
        ok = {}
        for k, v in state.items():
            if k not in self.URL_PARAMS:
                continue
            p = self.param[k]
            try:
                if isinstance(p, param.Number) and not isinstance(p, param.Integer):
                    v = float(v)
                elif isinstance(p, param.Integer):
                    v = None if v in (None, "", "None") else int(v)
                p._validate(v)
            except (TypeError, ValueError):
                continue
            ok[k] = v
        self.param.update(**ok)
