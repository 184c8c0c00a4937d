"""Ingest real survey spectrum files (SDSS, LAMOST, 1-D WCS FITS, tables) into a survey.

Pipeline per spectrum: read (:mod:`chemlatent.io.readers`; wavelengths in vacuum Angstrom, bad
pixels at ivar 0) -> :func:`resample_to_grid` (flux-conserving, inverse variance
propagated) -> :func:`chemlatent.spectra.continuum.normalise` (the same normalisation the synthetic
generator uses) -> streamed into a :class:`chemlatent.io.store.SurveyWriter` every ``batch``
spectra. Files that cannot be read are reported through ``on_error`` with one line each and
skipped; the others still go in. See ``docs/ingest.md``.
"""

from __future__ import annotations

import glob
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from chemlatent.errors import FormatError, SurveyError
from chemlatent.io.readers import (
    FORMATS,
    MEDIA,
    RawSpectrum,
    air_to_vacuum,
    iter_items,
    iter_spectra,
    read_spectrum,
)
from chemlatent.io.store import SURVEY_JSON, Survey, SurveyWriter
from chemlatent.spectra.continuum import normalise
from chemlatent.spectra.grid import DEFAULT_GRID, WavelengthGrid

__all__ = ["FORMATS", "MEDIA", "MIN_COVERAGE", "SPECTRUM_EXTENSIONS", "RawSpectrum",
           "air_to_vacuum", "expand_inputs", "ingest_files", "iter_spectra", "read_spectrum",
           "resample_to_grid"]

#: An output pixel needs at least this fraction of its width covered by good input pixels.
MIN_COVERAGE = 0.5
#: Files taken from a directory given on the command line.
SPECTRUM_EXTENSIONS = (".fits", ".fits.gz", ".fit", ".fit.gz", ".fts", ".h5", ".hdf5", ".parquet")

CORE_COLUMNS = ("star_id", "source_file", "source_row", "obj_id", "ra", "dec", "snr", "format",
                "ivar_estimated", "wave_medium")
#: Header values carried into the catalog when any ingested file has them (name -> dtype).
EXTRA_COLUMNS = {"class": "object", "subclass": "object", "z": "float64", "z_err": "float64",
                 "plate": "Int64", "mjd": "Int64", "fiberid": "Int64", "obsid": "Int64",
                 "designation": "object", "snr_g": "float64", "snr_r": "float64"}

ErrorCallback = Callable[[str, str], Any]


# --------------------------------------------------------------------------- resampling


def _input_edges(lam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lower/upper log10-wavelength edges of input pixels (midpoints; gaps kept as gaps)."""
    n = lam.size
    d = np.diff(lam)
    lo = np.empty(n)
    hi = np.empty(n)
    mid = 0.5 * (lam[1:] + lam[:-1])
    hi[:-1] = mid
    lo[1:] = mid
    lo[0] = lam[0] - 0.5 * d[0]
    hi[-1] = lam[-1] + 0.5 * d[-1]
    if n > 2:
        # a step much wider than its neighbours is a gap (e.g. between two arms), not a pixel
        ref = np.minimum(np.r_[np.inf, d[:-1]], np.r_[d[1:], np.inf])
        gap = np.flatnonzero(d > 3.0 * ref)
        hi[gap] = lam[gap] + 0.5 * ref[gap]
        lo[gap + 1] = lam[gap + 1] - 0.5 * ref[gap]
    return lo, hi


def resample_to_grid(raw: RawSpectrum, grid: WavelengthGrid = DEFAULT_GRID,
                     min_coverage: float = MIN_COVERAGE) -> tuple[np.ndarray, np.ndarray]:
    """Flux-conserving resampling onto ``grid`` with inverse variance propagated.

    Each output pixel's flux is the overlap-weighted mean of the good input pixels under it
    (input pixels extend halfway to their neighbours in log10 wavelength; weights are the
    overlap widths w_j): ``f = sum w_j f_j / sum w_j`` and ``var = sum w_j^2 var_j /
    (sum w_j)^2``, so ``ivar = 1 / var``. Input pixels with ivar 0 contribute nothing. An
    output pixel less than ``min_coverage`` covered by good input pixels, or outside the
    file's coverage, gets flux 1 and ivar 0. Covariance between neighbouring output pixels
    (when input pixels are wider than output ones) is not tracked: ivar is per-pixel.

    Returns ``(flux, ivar)``, float64 arrays of ``grid.npix``.
    """
    npix = grid.npix
    flux_out = np.ones(npix)
    ivar_out = np.zeros(npix)
    lam = np.log10(np.asarray(raw.wave, dtype=np.float64))
    if lam.size < 2:
        return flux_out, ivar_out
    lo, hi = _input_edges(lam)
    edges = grid.loglam0 + (np.arange(npix + 1) - 0.5) * grid.dloglam
    start, stop = max(lo[0], edges[0]), min(hi[-1], edges[-1])
    if stop <= start:
        return flux_out, ivar_out
    pts = np.union1d(np.concatenate([lo, hi]), edges)
    pts = pts[(pts >= start) & (pts <= stop)]
    if pts.size < 2:
        return flux_out, ivar_out
    mids = 0.5 * (pts[1:] + pts[:-1])
    width = np.diff(pts)
    j = np.searchsorted(lo, mids, side="right") - 1
    k = np.searchsorted(edges, mids, side="right") - 1
    ok = (j >= 0) & (k >= 0) & (k < npix)
    j_safe = np.clip(j, 0, lam.size - 1)
    ok &= mids < hi[j_safe]
    ivar_in = np.asarray(raw.ivar, dtype=np.float64)
    ok &= ivar_in[j_safe] > 0
    j, k, w = j_safe[ok], k[ok], width[ok]
    f = np.asarray(raw.flux, dtype=np.float64)[j]
    den = np.bincount(k, weights=w, minlength=npix)
    num = np.bincount(k, weights=w * f, minlength=npix)
    vnum = np.bincount(k, weights=w * w / ivar_in[j], minlength=npix)
    good = (den >= min_coverage * grid.dloglam) & (vnum > 0)
    flux_out[good] = num[good] / den[good]
    ivar_out[good] = den[good] ** 2 / vnum[good]
    return flux_out, ivar_out


# --------------------------------------------------------------------------- inputs


def _is_spectrum_file(path: Path) -> bool:
    name = path.name.lower()
    return path.is_file() and any(name.endswith(ext) for ext in SPECTRUM_EXTENSIONS)


def expand_inputs(files: Iterable[str | Path]) -> tuple[list[Path], list[tuple[str, str]]]:
    """Expand glob patterns and directories; returns (files in order, problems).

    A directory stands for its spectrum files (``*.fits``, ``*.fits.gz``, ``*.fit``, ``*.h5``,
    ``*.hdf5``, ``*.parquet``; not recursive). Duplicates are dropped.
    """
    out: list[Path] = []
    problems: list[tuple[str, str]] = []
    seen: set[Path] = set()

    def add(p: Path) -> None:
        key = p.resolve()
        if key not in seen:
            seen.add(key)
            out.append(p)

    for item in files:
        text = str(item)
        path = Path(text)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if _is_spectrum_file(p))
            if not found:
                problems.append((text, "directory holds no spectrum files "
                                       f"({', '.join('*' + e for e in SPECTRUM_EXTENSIONS)})"))
            for p in found:
                add(p)
        elif path.exists():
            add(path)
        elif glob.has_magic(text):
            matches = sorted(glob.glob(text, recursive=True))
            hits = [Path(m) for m in matches if Path(m).is_file()]
            for m in matches:
                if Path(m).is_dir():
                    hits += sorted(p for p in Path(m).iterdir() if _is_spectrum_file(p))
            if not hits:
                problems.append((text, "no files match this pattern"))
            for p in hits:
                add(p)
        else:
            problems.append((text, "no such file"))
    return out, problems


def _check_target(out: Path, paths: list[Path], overwrite: bool) -> None:
    """Refuse to clobber something that is not a survey, or the input files themselves."""
    if not out.exists():
        return
    if not overwrite:
        raise SurveyError(f"{out} already exists; choose another directory or pass --overwrite")
    if not out.is_dir():
        raise SurveyError(f"{out} exists and is not a directory; refusing to replace it")
    if not (out / SURVEY_JSON).exists() and any(out.iterdir()):
        raise SurveyError(f"{out} exists and is not a survey directory; refusing to replace it")
    root = out.resolve()
    for p in paths:
        if root in p.resolve().parents:
            raise SurveyError(f"refusing to overwrite {out}: input file {p.name} lives inside it")


# --------------------------------------------------------------------------- catalog


def _catalog(frames: list[pd.DataFrame]) -> pd.DataFrame:
    cat = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    cat["star_id"] = np.arange(len(cat), dtype=np.int64)
    cols = list(CORE_COLUMNS)
    for name, dtype in EXTRA_COLUMNS.items():
        if name not in cat.columns:
            continue
        col = cat[name]
        if dtype == "object":
            if not col.notna().any():
                continue
            cat[name] = col.astype(object).where(col.notna(), None)
        else:
            col = pd.to_numeric(col, errors="coerce")
            if not col.notna().any():
                continue
            cat[name] = col.round().astype("Int64") if dtype == "Int64" else col.astype(dtype)
        cols.append(name)
    cat["ra"] = cat["ra"].astype("float64")
    cat["dec"] = cat["dec"].astype("float64")
    cat["snr"] = cat["snr"].astype("float32")
    cat["source_row"] = cat["source_row"].astype("int64")
    cat["ivar_estimated"] = cat["ivar_estimated"].astype(bool)
    for name in ("source_file", "obj_id", "format", "wave_medium"):
        cat[name] = cat[name].astype(str)
    return cat[cols]


def _catalog_row(meta: dict[str, Any], snr: float) -> dict[str, Any]:
    row = {
        "source_file": meta.get("source_file"),
        "source_row": int(meta.get("source_row", 0)),
        "obj_id": str(meta.get("obj_id")),
        "ra": float(meta.get("ra", np.nan)),
        "dec": float(meta.get("dec", np.nan)),
        "snr": snr,
        "format": meta.get("format"),
        "ivar_estimated": bool(meta.get("ivar_estimated", False)),
        "wave_medium": meta.get("medium", "vacuum"),
    }
    for name in EXTRA_COLUMNS:
        if meta.get(name) is not None:
            row[name] = meta[name]
    return row


# --------------------------------------------------------------------------- ingestion


def prepare(raw: RawSpectrum, grid: WavelengthGrid = DEFAULT_GRID,
            ) -> tuple[np.ndarray, np.ndarray, float]:
    """Resample and continuum-normalise one spectrum: (flux, ivar, snr) on ``grid``.

    Pixels with ivar 0 (masked, uncovered) get flux 1. Raises FormatError when nothing
    usable lands on the grid.
    """
    with np.errstate(all="ignore"):
        flux, ivar = resample_to_grid(raw, grid)
    if not (ivar > 0).any():
        lo, hi = float(raw.wave[0]), float(raw.wave[-1])
        g = grid.wave
        if hi < g[0] or lo > g[-1]:
            raise FormatError(f"no overlap with the survey grid (file covers {lo:.0f}-{hi:.0f} A, "
                              f"grid {g[0]:.0f}-{g[-1]:.0f} A)")
        raise FormatError("no usable pixels on the survey grid (all masked or ivar 0)")
    with np.errstate(all="ignore"):
        nflux, nivar, _ = normalise(flux, ivar)
    bad = ~(nivar > 0) | ~np.isfinite(nflux) | ~np.isfinite(nivar)
    nflux[bad] = 1.0
    nivar[bad] = 0.0
    good = ~bad
    if not good.any():
        raise FormatError("continuum could not be fitted (too few usable pixels on the grid)")
    snr = float(np.median(nflux[good] * np.sqrt(nivar[good])))
    return nflux, nivar, snr


def _message(exc: BaseException) -> str:
    if isinstance(exc, FormatError):
        text = str(exc)
    else:
        text = f"unreadable ({type(exc).__name__}: {exc})"
    text = " ".join(text.split())
    return text if len(text) <= 240 else text[:237] + "..."


def ingest_files(out_dir: str | Path, files: Iterable[str | Path], fmt: str | None = None,
                 overwrite: bool = False, on_error: ErrorCallback | None = None, *,
                 grid: WavelengthGrid = DEFAULT_GRID, medium: str | None = None,
                 batch: int = 512, progress: bool = False, debug: bool = False,
                 ) -> tuple[Survey | None, list[tuple[str, str]]]:
    """Read, resample, normalise and write spectrum files as a survey at ``out_dir``.

    ``files`` may hold paths, glob patterns and directories. ``fmt`` forces a reader
    (``sdss``, ``lamost``, ``wcs1d``, ``table``); None detects each file's layout from its
    content. ``medium`` ('vacuum' or 'air') is assumed for wcs1d/table files that do not
    declare their wavelength medium (default vacuum). Spectra are written every ``batch``.

    Each file (or table row) that cannot be ingested calls ``on_error(file, message)`` and is
    listed in the returned problems; with ``debug`` unexpected exceptions propagate instead.
    Returns ``(survey, problems)``; survey is None when nothing could be ingested (then no
    directory is written). An existing ``out_dir`` needs ``overwrite`` (and must be a survey).
    """
    if fmt is not None and fmt not in FORMATS:
        raise FormatError(f"unknown format {fmt!r} (choose from {', '.join(FORMATS)})")
    if medium is not None and medium not in MEDIA:
        raise FormatError(f"unknown wavelength medium {medium!r} (vacuum or air)")
    out = Path(out_dir)
    problems: list[tuple[str, str]] = []

    def report(name: str, message: str) -> None:
        problems.append((name, message))
        if on_error is not None:
            on_error(name, message)

    paths, bad_inputs = expand_inputs(files)
    for name, message in bad_inputs:
        report(name, message)
    _check_target(out, paths, overwrite)
    if not paths:
        return None, problems

    from tqdm import tqdm

    batch = max(int(batch), 1)
    buf_flux = np.ones((batch, grid.npix), np.float32)
    buf_ivar = np.zeros((batch, grid.npix), np.float32)
    rows: list[dict[str, Any]] = []
    frames: list[pd.DataFrame] = []
    formats: dict[str, str] = {}

    writer = SurveyWriter(out, grid, ivar_layout="full", chunk_stars=batch, overwrite=overwrite)

    def flush() -> None:
        if rows:
            writer.append(buf_flux[: len(rows)], ivar=buf_ivar[: len(rows)])
            frames.append(pd.DataFrame(rows))
            rows.clear()

    bar = tqdm(total=len(paths), unit="file", file=sys.stderr, dynamic_ncols=True,
               disable=not progress or not sys.stderr.isatty())
    n_done = 0
    with writer:
        try:
            for path in paths:
                name = str(path)
                try:
                    for item in iter_items(path, fmt, medium):
                        if isinstance(item, FormatError):
                            report(name, _message(item))
                            continue
                        try:
                            nflux, nivar, snr = prepare(item, grid)
                        except FormatError as exc:
                            row = item.meta.get("source_row", 0)
                            prefix = f"row {row}: " if item.meta.get("multi") else ""
                            report(name, prefix + _message(exc))
                            continue
                        i = len(rows)
                        buf_flux[i] = nflux
                        buf_ivar[i] = nivar
                        rows.append(_catalog_row(item.meta, snr))
                        formats[path.name] = item.meta["format"]
                        n_done += 1
                        if len(rows) == batch:
                            flush()
                except FormatError as exc:
                    report(name, _message(exc))
                except (KeyboardInterrupt, MemoryError):
                    raise
                except Exception as exc:
                    if debug:
                        raise
                    report(name, _message(exc))
                bar.update(1)
                bar.set_postfix(spectra=n_done, skipped=len(problems), refresh=False)
            flush()
        finally:
            bar.close()
        if writer.n == 0:
            writer.abort()
            return None, problems
        provenance = {
            "kind": "ingested",
            "files": list(formats),
            "formats": formats,
            "skipped": [{"file": f, "reason": m} for f, m in problems[:1000]],
            "n_skipped": len(problems),
            "resampling": "flux-conserving (overlap-weighted mean), ivar propagated",
            "continuum": "chemlatent.continuum.normalise",
            "wavelengths": "vacuum",
        }
        survey = writer.finish(_catalog(frames), extra={"provenance": provenance})
    return survey, problems
