"""Re-encoding chosen stars as a new *run*: ``latents/runs/<run_id>.parquet``.

A run holds the re-encoded stars only (same columns as ``latents/<model>.parquet``, plus
``z_*_mean`` and ``z_*_sigma`` when posterior samples were asked for) and, under the parquet
key ``chemlatent``, which model, which options, when, how many stars and which latents file
it is to be compared with (``base``). Runs never replace anything: the survey's latents stay
as they are, and a failed or cancelled run leaves no file (rows go to a hidden temporary
file that is renamed into place only when complete).

- :class:`SubsetEncoding` advances one batch at a time (what :mod:`chemlatent.jobs.queue` drives);
  :func:`encode_subset` runs one to the end.
- :func:`list_runs`, :func:`read_run`, :func:`compare_runs` (old and new positions by
  star_id) and :func:`merged_latents` (the base with the run's stars replaced, for scores,
  flags and candidate tables) read them back.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from chemlatent.encode.posterior_mean import apply_prior, base_prior
from chemlatent.encode.streaming import (
    LATENT_COLUMNS,
    Encoder,
    LatentsWriter,
    iter_rows,
    latents_meta,
    model_name,
)
from chemlatent.errors import ChemlatentError
from chemlatent.io.store import CATALOG, LATENTS_DIR, Survey

RUNS_DIR = "runs"
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,120}$")


@dataclass
class RunInfo:
    """What a run file says about itself."""

    run_id: str
    path: Path
    model_name: str
    model_dir: str
    n_stars: int
    samples: int
    device: str
    precision: str
    created: str
    base: str | None
    seconds: float
    spectra_per_s: float
    median_std: dict[str, float] = field(default_factory=dict)
    meta: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["path"] = str(self.path)
        return d

    @classmethod
    def from_meta(cls, path: Path, meta: dict) -> RunInfo:
        opts = meta.get("options", {})
        return cls(run_id=str(meta.get("run", path.stem)), path=path,
                   model_name=str(meta.get("model_name", "")), model_dir=str(meta.get("model_dir", "")),
                   n_stars=int(meta.get("n_stars", 0)), samples=int(opts.get("samples", 0)),
                   device=str(meta.get("device", "")), precision=str(meta.get("precision", "")),
                   created=str(meta.get("created", "")), base=meta.get("base"),
                   seconds=float(meta.get("seconds", 0.0)),
                   spectra_per_s=float(meta.get("spectra_per_s", 0.0)),
                   median_std=dict(meta.get("median_std", {})), meta=meta)


def runs_dir(survey_dir: str | Path) -> Path:
    return Path(survey_dir) / LATENTS_DIR / RUNS_DIR


def new_run_id(model: str) -> str:
    """``<UTC time>-<model>-<random>``: sorts by time, safe as a file name."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", model)[:60] or "model"
    return f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{safe}-{uuid.uuid4().hex[:6]}"


def run_path(survey_dir: str | Path, run_id: str) -> Path:
    """The file of an existing run (a clear error naming the runs there otherwise)."""
    run_id = str(run_id)
    if run_id.endswith(".parquet"):
        run_id = run_id[:-8]
    if not _RUN_ID.match(run_id):
        raise ChemlatentError(f"{run_id!r} is not a run id (letters, digits, '.', '_', '+', '-')")
    path = runs_dir(survey_dir) / f"{run_id}.parquet"
    if not path.exists():
        have = [p.stem for p in _run_files(survey_dir)]
        hint = f"there are: {', '.join(have[-5:])}" if have else "this survey has no runs yet"
        raise ChemlatentError(f"no run {run_id!r} in {runs_dir(survey_dir)}; {hint}")
    return path


def _run_files(survey_dir: str | Path) -> list[Path]:
    d = runs_dir(survey_dir)
    return sorted(p for p in d.glob("*.parquet") if not p.name.startswith(".")) if d.is_dir() else []


@lru_cache(maxsize=4)
def _star_ids(catalog: str, mtime_ns: int) -> tuple[np.ndarray, pd.Index]:
    ids = pd.read_parquet(catalog, columns=["star_id"])["star_id"].to_numpy(np.int64)
    return ids, pd.Index(ids)


def star_ids_of(survey: Survey) -> tuple[np.ndarray, pd.Index]:
    """The catalog's star_id column (store order) and an index on it (cached per file)."""
    cat = survey.path / CATALOG
    try:
        return _star_ids(str(cat), cat.stat().st_mtime_ns)
    except ChemlatentError:
        raise
    except Exception as exc:
        raise ChemlatentError(f"{cat} is missing or unreadable ({exc})") from None


def rows_for(survey: Survey, star_ids) -> np.ndarray:
    """Sorted store rows of the given star_ids (duplicates dropped); unknown ids are an error."""
    ids = np.unique(np.asarray(star_ids, dtype=np.int64))
    if ids.size == 0:
        raise ChemlatentError("no stars to re-encode: the list of star_ids is empty")
    _, index = star_ids_of(survey)
    rows = index.get_indexer(ids)
    bad = ids[rows < 0]
    if bad.size:
        some = ", ".join(str(int(b)) for b in bad[:5])
        raise ChemlatentError(f"{bad.size} of {ids.size} star_ids are not in {survey.path}'s catalog "
                              f"(e.g. {some}); check the ids and the survey directory")
    return np.sort(rows.astype(np.int64))


def default_base(survey_dir: str | Path, model: str) -> str | None:
    """The latents file a run of ``model`` is compared with: the same model's latents, else
    the survey's only (or newest) latents file, else none."""
    ldir = Path(survey_dir) / LATENTS_DIR
    if (ldir / f"{model}.parquet").exists():
        return f"{model}.parquet"
    from chemlatent.io.latents import find_latents

    try:
        return find_latents(survey_dir).path.name
    except ChemlatentError:
        return None


def default_batch(device: str, samples: int) -> int:
    """Stars per step: large on a GPU; on CPU about a second of work per step."""
    if str(device).startswith("cuda"):
        return max(1024, 32768 // (1 + samples // 8))
    return max(128, 4096 // (1 + samples))


class SubsetEncoding:
    """Re-encode the stars ``star_ids`` of a survey, one batch per :meth:`step`.

    ``model``: a loaded model, a model directory, or None for the bundled model.
    ``samples``: posterior samples per star for the uncertainties (0: the encoder's own
    posterior width). Nothing is written until :meth:`finish`; :meth:`abort` discards.
    """

    def __init__(self, survey_dir: str | Path, star_ids, model=None, *, samples: int = 0,
                 device: str = "auto", precision: str = "auto", batch: int | None = None,
                 seed: int = 0, base: str | None = None, run_id: str | None = None,
                 features: str = "auto") -> None:
        from chemlatent.model.device import pick_device
        from chemlatent.model.modelio import load_model

        if int(samples) < 0:
            raise ChemlatentError(f"samples must be 0 or more, got {samples}")
        self.survey = Survey(survey_dir)
        self.rows = rows_for(self.survey, star_ids)
        dev = pick_device(device)
        if model is None or isinstance(model, (str, Path)):
            model = load_model(model, device=str(dev))
        self.model = model
        self.samples = int(samples)
        self.encoder = Encoder(model, self.survey, device=str(dev), precision=precision, features=features)
        self.batch = int(batch or default_batch(str(dev), self.samples))
        self.total, self.done = int(self.rows.size), 0
        name = model_name(model)
        self.run_id = run_id or new_run_id(name)
        self.base = base if base is not None else default_base(self.survey.path, name)
        self.path = runs_dir(self.survey.path) / f"{self.run_id}.parquet"
        self.options = {"samples": self.samples, "device": str(device), "precision": precision,
                        "batch": self.batch, "seed": int(seed), "features": self.encoder.features}
        self._gen = self.encoder.generator(seed) if self.samples else None
        self._ids = star_ids_of(self.survey)[0][self.rows]
        self._parts: list[pd.DataFrame] = []
        self._it = self._rows_it = None
        self.started: float | None = None
        self.seconds = 0.0

    def step(self) -> bool:
        """Encode the next batch; False once every star is done."""
        t0 = time.perf_counter()
        if self._it is None:
            self.started = time.time()
            self._rows_it = iter_rows(self.survey, self.rows, self.batch)
            self._it = self.encoder.stream(self._rows_it, self.samples, self._gen)
        try:
            blk, res = next(self._it)
        except StopIteration:
            return False
        df = pd.DataFrame({"star_id": self._ids[self.done:self.done + blk.n], **res})
        df["run"] = self.run_id
        self._parts.append(df)
        self.done += blk.n
        self.seconds += time.perf_counter() - t0
        return self.done < self.total

    def finish(self) -> RunInfo:
        """Encode what is left, then write the run atomically."""
        while self.step():
            pass
        if self.done != self.total:
            raise ChemlatentError(f"re-encoding stopped after {self.done} of {self.total} stars")
        df = pd.concat(self._parts, ignore_index=True)
        prior = base_prior(self.survey, self.base, model_name(self.model))
        if prior is not None:  # the survey's latents are posterior means: the same footing
            apply_prior(df, self.survey, self.model, prior)
        med = {c: float(np.nanmedian(df[f"{c}_std"])) for c in LATENT_COLUMNS}
        extra = {"kind": "subset", "n_stars": self.total, "options": self.options, "base": self.base,
                 "seconds": round(self.seconds, 3),
                 "spectra_per_s": round(self.total / self.seconds, 1) if self.seconds else 0.0,
                 "median_std": med}
        if prior is not None:
            extra["posterior_mean"] = prior.to_dict()
        if self.samples:
            extra["median_sigma"] = {c: float(np.nanmedian(df[f"{c}_sigma"])) for c in LATENT_COLUMNS}
        meta = latents_meta(self.model, self.survey, run=self.run_id, precision=self.encoder.precision,
                            device=str(self.encoder.device), subset=True, **extra)
        with LatentsWriter(self.path, meta) as writer:
            writer.write(df)
            writer.commit()
        self._parts = []
        return RunInfo.from_meta(self.path, meta)

    def abort(self) -> None:
        """Stop reading and drop what was encoded (nothing was written)."""
        for it in (self._it, self._rows_it):
            if it is not None:
                it.close()
        self._it = self._rows_it = None
        self._parts = []


def encode_subset(survey_dir: str | Path, star_ids, model=None, *, samples: int = 0,
                  device: str = "auto", precision: str = "auto", batch: int | None = None,
                  seed: int = 0, base: str | None = None,
                  progress: Callable[[int, int], None] | None = None,
                  should_stop: Callable[[], bool] | None = None) -> RunInfo:
    """Re-encode ``star_ids`` and write ``latents/runs/<run_id>.parquet``; returns its
    :class:`RunInfo`. ``progress(done, total)`` after each batch; ``should_stop()`` is
    checked between batches and cancels (nothing written) when it returns True."""
    job = SubsetEncoding(survey_dir, star_ids, model, samples=samples, device=device,
                         precision=precision, batch=batch, seed=seed, base=base)
    try:
        while True:
            if should_stop is not None and should_stop():
                raise ChemlatentError(f"re-encoding cancelled after {job.done} of {job.total} stars")
            more = job.step()
            if progress:
                progress(job.done, job.total)
            if not more:
                break
        return job.finish()
    finally:
        job.abort()


def run_info(survey_dir: str | Path, run_id: str) -> RunInfo:
    from chemlatent.io.latents import latents_metadata

    path = run_path(survey_dir, run_id)
    return RunInfo.from_meta(path, latents_metadata(path))


def list_runs(survey_dir: str | Path) -> list[RunInfo]:
    """The survey's runs, newest first (unreadable files are skipped)."""
    from chemlatent.io.latents import latents_metadata

    out = []
    for p in _run_files(survey_dir):
        try:
            out.append(RunInfo.from_meta(p, latents_metadata(p)))
        except ChemlatentError:
            continue
    def when(r: RunInfo) -> tuple:  # ``created`` has whole seconds: the file's time breaks ties
        try:
            return (r.created, r.path.stat().st_mtime_ns)
        except OSError:
            return (r.created, 0)

    return sorted(out, key=when, reverse=True)


def read_run(survey_dir: str | Path, run_id: str) -> pd.DataFrame:
    """A run's rows (star_id, latents, uncertainties, ...)."""
    from chemlatent.io.latents import read_latents

    return read_latents(run_path(survey_dir, run_id))


def _read_base(survey_dir: str | Path, base: str) -> pd.DataFrame:
    from chemlatent.io.latents import read_latents

    name = base[:-8] if base.endswith(".parquet") else base
    path = Path(survey_dir) / LATENTS_DIR / f"{name}.parquet"
    if path.exists():
        return read_latents(path)
    if (runs_dir(survey_dir) / f"{name}.parquet").exists():
        return read_run(survey_dir, name)
    raise ChemlatentError(f"no latents {name!r} in {Path(survey_dir) / LATENTS_DIR} (nor a run of that id)")


def _resolve_base(survey_dir, info: RunInfo, base: str | None) -> str:
    base = base or info.base
    if not base:
        raise ChemlatentError(f"run {info.run_id} names no base latents and none was given: "
                              "pass base=<latents name or run id>")
    return base


def compare_runs(survey_dir: str | Path, run_id: str, base: str | None = None,
                 columns: list[str] | None = None) -> pd.DataFrame:
    """Old and new positions of the run's stars, aligned by star_id.

    ``base``: a latents name (``chemvae-v2``), file name, or another run id; default: the
    base the run recorded. Columns: ``star_id``, ``<col>_old``, ``<col>_new``, ``d_<col>``
    (new - old) for each of ``columns`` (default z_fe, z_c, z_alpha and their ``_std``), and
    ``in_base`` (False where the base has no row for the star; old values NaN there).
    """
    info = run_info(survey_dir, run_id)
    new = read_run(survey_dir, run_id)
    old = _read_base(survey_dir, _resolve_base(survey_dir, info, base))
    cols = columns or LATENT_COLUMNS + [f"{c}_std" for c in LATENT_COLUMNS]
    missing = [c for c in cols if c not in new.columns or c not in old.columns]
    if missing:
        raise ChemlatentError(f"column(s) {', '.join(missing)} missing from the run or its base")
    pos = pd.Index(old["star_id"]).get_indexer(new["star_id"])
    out = {"star_id": new["star_id"].to_numpy(np.int64), "in_base": pos >= 0}
    for c in cols:
        o = old[c].to_numpy(np.float64)[np.maximum(pos, 0)]
        o[pos < 0] = np.nan
        n = new[c].to_numpy(np.float64)
        out[f"{c}_old"], out[f"{c}_new"], out[f"d_{c}"] = o, n, n - o
    df = pd.DataFrame(out)
    df.attrs.update(run=info.run_id, base=_resolve_base(survey_dir, info, base), model=info.model_name)
    return df


def merged_latents(survey_dir: str | Path, run_id: str, base: str | None = None) -> pd.DataFrame:
    """The base latents with the run's stars replaced by their new rows (``run`` column says
    which run each row comes from); stars only in the run are appended. Columns only the run
    has (``z_*_mean``, ``z_*_sigma``) are NaN elsewhere. Scores, flags and candidate tables
    computed from this follow the re-encoding."""
    info = run_info(survey_dir, run_id)
    new = read_run(survey_dir, run_id)
    old = _read_base(survey_dir, _resolve_base(survey_dir, info, base))
    pos = pd.Index(old["star_id"]).get_indexer(new["star_id"])
    out = old.copy()
    for c in new.columns:
        if c not in out.columns:
            out[c] = np.nan if pd.api.types.is_numeric_dtype(new[c]) else None
    hit = pos >= 0
    for c in new.columns:
        if isinstance(out[c].dtype, pd.CategoricalDtype):  # e.g. ``run`` read back as categories
            out[c] = out[c].astype(object)
        out.loc[pos[hit], c] = new[c].to_numpy()[hit]
    if (~hit).any():
        out = pd.concat([out, new[~hit]], ignore_index=True)
    return out


def read_star_ids(path: str | Path) -> np.ndarray:
    """star_ids from a file: plain text with one per line (``#`` comments allowed), a CSV or
    other delimited table with a ``star_id`` column, or a parquet file with one."""
    p = Path(path)
    what = "a text file with one star_id per line, or a CSV/parquet table with a star_id column"
    if not p.is_file():
        raise ChemlatentError(f"ids file {p} does not exist: give {what}")
    if p.suffix.lower() in (".parquet", ".pq"):
        try:
            table = pd.read_parquet(p)
        except Exception as exc:
            raise ChemlatentError(f"{p} is not a readable parquet file ({exc})") from None
        return _id_column(table, p, what)
    try:
        text = p.read_text()
    except (UnicodeDecodeError, OSError) as exc:
        raise ChemlatentError(f"{p} is not a text file ({type(exc).__name__}): give {what}") from None
    lines = [(i + 1, ln.strip()) for i, ln in enumerate(text.splitlines())]
    lines = [(i, ln) for i, ln in lines if ln and not ln.startswith("#")]
    if not lines:
        raise ChemlatentError(f"{p} lists no star_id: give {what}")
    first = lines[0][1]
    if not re.fullmatch(r"[+-]?\d+", first):
        import io

        sep = next((c for c in (",", "\t", ";", "|") if c in first), r"\s+")
        try:
            table = pd.read_csv(io.StringIO(text), comment="#", sep=sep, engine="python")
        except Exception as exc:
            raise ChemlatentError(f"{p} is not a readable table ({exc}): give {what}") from None
        return _id_column(table, p, what)
    for i, ln in lines:
        if not re.fullmatch(r"[+-]?\d+", ln):
            raise ChemlatentError(f"{p} line {i}: {ln[:40]!r} is not a star_id (a whole number)")
    return np.array([int(ln) for _, ln in lines], dtype=np.int64)


def _id_column(table: pd.DataFrame, p: Path, what: str) -> np.ndarray:
    cols = {str(c).strip().lower(): c for c in table.columns}
    if "star_id" not in cols:
        names = ", ".join(map(str, list(table.columns)[:8]))
        raise ChemlatentError(f"{p} has no star_id column (columns: {names}): give {what}")
    col = table[cols["star_id"]]
    num = pd.to_numeric(col, errors="coerce")
    bad = num.isna() | (num != np.round(num))
    if bad.any():
        k = int(np.flatnonzero(bad.to_numpy())[0])
        raise ChemlatentError(f"{p} row {k + 1}: star_id {str(col.iloc[k])[:40]!r} is not a whole number")
    if len(num) == 0:
        raise ChemlatentError(f"{p} lists no star_id: give {what}")
    return num.to_numpy().astype(np.int64)
