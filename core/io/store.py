"""The survey store: a directory with ``survey.json``, ``spectra.zarr`` and ``catalog.parquet``.

Layout (see README, "Data model"):

- ``survey.json``: schema version, wavelength grid, flux convention, ivar layout, provenance.
- ``spectra.zarr``: ``flux`` (N x P, float16), and either ``ivar`` (N x P, float32;
  ``ivar_layout = "full"``, real surveys) or ``ivar_scale`` (N) with ``ivar_profile`` (P)
  and ``mask`` (N x P, uint8, 1 = bad pixel) (``ivar_layout = "scaled_profile"``, synthetic
  surveys: ivar = ivar_scale[i] * ivar_profile[p] where mask is 0). Chunked along stars.
- ``catalog.parquet``: one row per star, ``star_id`` first.

Writes are atomic: everything is written into a hidden sibling directory which is renamed
onto the target only once complete, so an interrupted run never leaves a directory that
looks like a finished survey.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import zarr
from zarr.codecs import BloscCodec

from chemlatent import __version__
from chemlatent.errors import SurveyError
from chemlatent.spectra.grid import WavelengthGrid

SCHEMA_VERSION = 1
SURVEY_JSON = "survey.json"
SPECTRA = "spectra.zarr"
CATALOG = "catalog.parquet"
LATENTS_DIR = "latents"
MAX_STARS = 200_000_000  # one directory; larger surveys are split
FLUX_MAX = 60000.0  # float16 limit; normalised flux never gets near it
_FAST = BloscCodec(cname="lz4", clevel=1, shuffle="bitshuffle")  # masks: mostly zeros
_SMALL = BloscCodec(cname="zstd", clevel=3, shuffle="bitshuffle")  # float32 ivar
# flux is stored uncompressed: noisy float16 compresses by only ~35% and decompression
# would cost more CPU than the encoder's first layer; 1M stars need 8.5 GB
_FLUX = None


def _tmp_sibling(path: Path) -> Path:
    return path.parent / f".{path.name}.tmp-{uuid.uuid4().hex[:8]}"


def atomic_replace_dir(tmp: Path, target: Path, overwrite: bool) -> None:
    """Move a finished temporary directory onto ``target`` (old one removed only after)."""
    if target.exists():
        if not overwrite:
            shutil.rmtree(tmp, ignore_errors=True)
            raise SurveyError(f"{target} already exists; choose another directory or pass --overwrite")
        old = _tmp_sibling(target)
        os.replace(target, old)
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, target)


def write_parquet_atomic(df: pd.DataFrame, path: Path, metadata: dict | None = None) -> None:
    """Write a parquet file aside, fsync it, then rename it into place."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pandas(df, preserve_index=False)
    if metadata:
        meta = dict(table.schema.metadata or {})
        meta.update({k.encode(): json.dumps(v).encode() for k, v in metadata.items()})
        table = table.replace_schema_metadata(meta)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    pq.write_table(table, tmp, compression="zstd")
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def write_json_atomic(obj: dict, path: Path) -> None:
    tmp = Path(path).with_name(f".{Path(path).name}.tmp-{uuid.uuid4().hex[:8]}")
    tmp.write_text(json.dumps(obj, indent=2, default=str))
    os.replace(tmp, path)


class SurveyWriter:
    """Stream spectra into a new survey directory; nothing appears at ``path`` until finish().

    Use as a context manager: an exception (or a kill) leaves only a hidden temporary
    directory, which the next writer for the same target removes.
    """

    def __init__(
        self,
        path: str | Path,
        grid: WavelengthGrid,
        *,
        ivar_layout: str = "full",
        ivar_profile: np.ndarray | None = None,
        capacity: int = 0,
        chunk_stars: int = 512,
        provenance: dict | None = None,
        overwrite: bool = False,
    ) -> None:
        self.path = Path(path)
        if self.path.exists() and not overwrite:
            raise SurveyError(f"{self.path} already exists; choose another directory or pass --overwrite")
        if self.path.exists() and not self.path.is_dir():
            raise SurveyError(f"{self.path} exists and is not a directory; refusing to replace it")
        if self.path.is_dir() and not (self.path / SURVEY_JSON).exists() and any(self.path.iterdir()):
            raise SurveyError(f"{self.path} exists and is not a survey directory; refusing to replace "
                              "it (remove it yourself if it should go)")
        if ivar_layout not in ("full", "scaled_profile"):
            raise ValueError(f"unknown ivar layout {ivar_layout!r}")
        if ivar_layout == "scaled_profile" and ivar_profile is None:
            raise ValueError("scaled_profile layout needs ivar_profile")
        if capacity > MAX_STARS:
            raise SurveyError(f"{capacity:,} stars is beyond what one survey directory supports "
                              f"({MAX_STARS:,})")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            for stale in self.path.parent.glob(f".{self.path.name}.tmp-*"):
                shutil.rmtree(stale, ignore_errors=True)
            need = int(capacity) * grid.npix * 2  # the float16 flux alone
            free = shutil.disk_usage(self.path.parent).free
            if need > free:
                raise SurveyError(f"{self.path}: {capacity:,} spectra need at least {need / 1e9:.1f} GB "
                                  f"but {free / 1e9:.1f} GB are free there; free space or choose "
                                  "another directory")
            self.tmp = _tmp_sibling(self.path)
            self.tmp.mkdir()
        except OSError as exc:
            raise SurveyError(f"cannot create {self.path} ({exc.strerror or exc}); choose a writable "
                              "directory") from None
        self.grid = grid
        self.ivar_layout = ivar_layout
        self.chunk_stars = chunk_stars
        self.provenance = provenance or {}
        self.overwrite = overwrite
        self.n = 0
        self.capacity = max(int(capacity), 0)
        root = zarr.open_group(self.tmp / SPECTRA, mode="w")
        shape = (self.capacity, grid.npix)
        chunks = (chunk_stars, grid.npix)
        # every flux chunk is written, even one equal to the fill value, so that a missing chunk
        # file always means a damaged or partly copied survey (see Survey)
        self.flux = root.create_array("flux", shape=shape, chunks=chunks, dtype="float16",
                                      compressors=_FLUX, fill_value=1.0,
                                      config={"write_empty_chunks": True})
        if ivar_layout == "full":
            self.ivar = root.create_array("ivar", shape=shape, chunks=chunks, dtype="float32",
                                          compressors=_SMALL, fill_value=0.0)
            self.arrays = [self.flux, self.ivar]
        else:
            self.ivar_scale = root.create_array("ivar_scale", shape=(self.capacity,),
                                                chunks=(chunk_stars * 64,), dtype="float32",
                                                compressors=_SMALL, fill_value=0.0)
            prof = root.create_array("ivar_profile", shape=(grid.npix,), dtype="float32")
            prof[:] = np.asarray(ivar_profile, dtype=np.float32)
            self.mask = root.create_array("mask", shape=shape, chunks=chunks, dtype="uint8",
                                          compressors=_FAST, fill_value=0)
            self.arrays = [self.flux, self.ivar_scale, self.mask]
        self._root = root

    def __enter__(self) -> SurveyWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()

    def abort(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)

    def _ensure(self, stop: int) -> None:
        if stop > self.capacity:
            self.capacity = max(stop, int(self.capacity * 1.5) + self.chunk_stars)
            for arr in self.arrays:
                arr.resize((self.capacity,) + arr.shape[1:])

    def write(self, start: int, flux: np.ndarray, ivar: np.ndarray | None = None,
              mask: np.ndarray | None = None, ivar_scale: np.ndarray | None = None) -> None:
        """Write rows [start, start + len(flux)). Starts should fall on chunk boundaries."""
        flux = np.asarray(flux)
        if flux.ndim != 2 or flux.shape[1] != self.grid.npix:
            raise ValueError(f"flux must be (n, {self.grid.npix}), got {flux.shape}")
        stop = start + flux.shape[0]
        self._ensure(stop)
        if flux.dtype != np.float16:
            flux = np.clip(np.nan_to_num(flux, nan=1.0), -FLUX_MAX, FLUX_MAX).astype(np.float16)
        self.flux[start:stop] = flux
        if self.ivar_layout == "full":
            if ivar is None:
                raise ValueError("full ivar layout needs ivar")
            iv = np.nan_to_num(np.asarray(ivar, dtype=np.float32), nan=0.0, posinf=0.0)
            iv[iv < 0] = 0.0
            self.ivar[start:stop] = iv
        else:
            if ivar_scale is None:
                raise ValueError("scaled_profile layout needs ivar_scale")
            self.ivar_scale[start:stop] = np.asarray(ivar_scale, dtype=np.float32)
            m = np.zeros(flux.shape, np.uint8) if mask is None else np.asarray(mask, np.uint8)
            self.mask[start:stop] = m
        self.n = max(self.n, stop)

    def append(self, flux: np.ndarray, **kw) -> int:
        """Write rows after the last written one; returns the first row index used."""
        start = self.n
        self.write(start, flux, **kw)
        return start

    def finish(self, catalog: pd.DataFrame, extra: dict | None = None) -> Survey:
        """Write catalog and survey.json, then atomically move the survey into place."""
        if len(catalog) != self.n:
            raise ValueError(f"catalog has {len(catalog)} rows but {self.n} spectra were written")
        if "star_id" not in catalog.columns:
            raise ValueError("catalog needs a star_id column")
        for arr in self.arrays:
            if arr.shape[0] != self.n:
                arr.resize((self.n,) + arr.shape[1:])
        cols = ["star_id"] + [c for c in catalog.columns if c != "star_id"]
        write_parquet_atomic(catalog[cols].reset_index(drop=True), self.tmp / CATALOG)
        meta = {
            "schema_version": SCHEMA_VERSION,
            "n_stars": int(self.n),
            "grid": self.grid.to_dict(),
            "flux_convention": "continuum-normalised",
            "ivar_layout": self.ivar_layout,
            "chunk_stars": self.chunk_stars,
            "software_version": __version__,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "provenance": self.provenance,
        }
        meta.update(extra or {})
        write_json_atomic(meta, self.tmp / SURVEY_JSON)
        atomic_replace_dir(self.tmp, self.path, self.overwrite)
        return Survey(self.path)


class _Checked:
    """A read-only zarr array whose read errors name the damaged file and what to do.

    Attributes other than the reads pass through to the zarr array.
    """

    def __init__(self, array, path: Path) -> None:
        self._array = array
        self._path = path

    def _fail(self, exc: Exception) -> SurveyError:
        msg = " ".join(str(exc).split())[:120]
        return SurveyError(f"{self._path} is damaged ({type(exc).__name__}: {msg}); "
                           "regenerate or re-ingest the survey")

    def __getitem__(self, key):
        try:
            return self._array[key]
        except Exception as exc:
            raise self._fail(exc) from None

    def get_orthogonal_selection(self, *args, **kwargs):
        try:
            return self._array.get_orthogonal_selection(*args, **kwargs)
        except Exception as exc:
            raise self._fail(exc) from None

    def get_basic_selection(self, *args, **kwargs):
        try:
            return self._array.get_basic_selection(*args, **kwargs)
        except Exception as exc:
            raise self._fail(exc) from None

    def __getattr__(self, name: str):
        return getattr(self._array, name)

    def __len__(self) -> int:
        return len(self._array)


def _missing_chunks(array, path: Path) -> int:
    """How many chunk files of a 2-D array split along rows are missing (0 when unknown).

    SurveyWriter writes every flux chunk, so a missing one means a partial copy.
    """
    try:
        n_chunks = -(-int(array.shape[0]) // int(array.chunks[0]))
        key = array.metadata.encode_chunk_key((0, 0))
        if key != "c/0/0" or int(array.chunks[1]) != int(array.shape[1]):
            return 0
        cdir = path / "c"
        found = sum(1 for e in os.scandir(cdir) if e.name.isdigit()) if cdir.is_dir() else 0
    except Exception:  # another zarr layout: no check
        return 0
    return max(n_chunks - found, 0)


@dataclass
class Chunk:
    """A block of consecutive stars read from the store."""

    start: int
    flux: np.ndarray  # (n, P) float32
    ivar: np.ndarray  # (n, P) float32, 0 where masked or not covered

    @property
    def stop(self) -> int:
        return self.start + self.flux.shape[0]


class Survey:
    """Read access to a finished survey directory."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        meta_path = self.path / SURVEY_JSON
        if not self.path.is_dir():
            raise SurveyError(f"{self.path} is not a survey directory (it does not exist)")
        if not meta_path.exists():
            raise SurveyError(f"{self.path} has no {SURVEY_JSON}: not a survey, or an unfinished one")
        try:
            self.meta = json.loads(meta_path.read_text())
        except (OSError, ValueError) as exc:
            raise SurveyError(f"{meta_path} is not valid JSON ({exc}); regenerate or re-ingest "
                              "the survey") from None
        if not isinstance(self.meta, dict):
            raise SurveyError(f"{meta_path} is not a survey description (a JSON object)")
        if self.meta.get("schema_version") != SCHEMA_VERSION:
            raise SurveyError(f"{self.path}: unsupported schema version {self.meta.get('schema_version')}")
        try:
            self.grid = WavelengthGrid.from_dict(self.meta["grid"])
            self.n_stars = int(self.meta["n_stars"])
            if self.n_stars < 0 or self.grid.npix <= 0:
                raise ValueError("negative size")
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            raise SurveyError(f"{meta_path} is damaged (bad or missing grid/n_stars: "
                              f"{type(exc).__name__}: {exc}); regenerate or re-ingest the survey") from None
        self.ivar_layout = self.meta.get("ivar_layout", "full")
        if self.ivar_layout not in ("full", "scaled_profile"):
            raise SurveyError(f"{meta_path}: unknown ivar layout {self.ivar_layout!r}")
        if not (self.path / CATALOG).is_file():
            raise SurveyError(f"{self.path} has no {CATALOG}: the survey is incomplete (an interrupted "
                              "copy?); copy it again, or regenerate or re-ingest it")
        spectra = self.path / SPECTRA
        try:
            self._root = zarr.open_group(spectra, mode="r")
            self._flux = _Checked(self._root["flux"], spectra / "flux")
            if self.ivar_layout == "full":
                self._ivar = _Checked(self._root["ivar"], spectra / "ivar")
            else:
                self._ivar_scale = np.asarray(self._root["ivar_scale"][:], dtype=np.float32)
                self._ivar_profile = np.asarray(self._root["ivar_profile"][:], dtype=np.float32)
                self._mask = _Checked(self._root["mask"], spectra / "mask")
        except Exception as exc:  # zarr raises a variety of errors for damaged stores
            raise SurveyError(f"{spectra} is missing or damaged ({type(exc).__name__}); "
                              "regenerate or re-ingest the survey") from None
        if self._flux.shape != (self.n_stars, self.grid.npix):
            raise SurveyError(
                f"{self.path}: flux has shape {self._flux.shape}, survey.json says "
                f"({self.n_stars}, {self.grid.npix})"
            )
        if self.ivar_layout == "scaled_profile" and (
                self._ivar_scale.shape != (self.n_stars,) or self._ivar_profile.shape != (self.grid.npix,)):
            raise SurveyError(f"{spectra}: ivar_scale/ivar_profile do not match the flux shape; "
                              "regenerate the survey")
        missing = _missing_chunks(self._root["flux"], spectra / "flux")
        if missing:
            raise SurveyError(f"{spectra / 'flux'} is incomplete ({missing} of its chunk files are "
                              "missing: an interrupted copy?); copy it again, or regenerate or re-ingest it")
        self._catalog: pd.DataFrame | None = None

    def __len__(self) -> int:
        return self.n_stars

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def chunk_stars(self) -> int:
        return int(self._flux.chunks[0])

    @property
    def catalog(self) -> pd.DataFrame:
        if self._catalog is None:
            try:
                self._catalog = pd.read_parquet(self.path / CATALOG)
            except Exception as exc:
                raise SurveyError(f"{self.path / CATALOG} is missing or unreadable ({exc})") from None
            if len(self._catalog) != self.n_stars:
                raise SurveyError(
                    f"{self.path}: catalog has {len(self._catalog)} rows, expected {self.n_stars}")
        return self._catalog

    def read(self, start: int, stop: int) -> Chunk:
        """Flux and ivar (float32) for stars [start, stop)."""
        start, stop = max(0, int(start)), min(self.n_stars, int(stop))
        flux = np.asarray(self._flux[start:stop], dtype=np.float32)
        if self.ivar_layout == "full":
            ivar = np.asarray(self._ivar[start:stop], dtype=np.float32)
        else:
            mask = np.asarray(self._mask[start:stop])
            ivar = self._ivar_scale[start:stop, None] * self._ivar_profile[None, :]
            ivar[mask != 0] = 0.0
        return Chunk(start, flux, ivar)

    def read_rows(self, rows: np.ndarray) -> Chunk:
        """Flux and ivar for arbitrary star indices (sorted internally, returned in given order)."""
        rows = np.asarray(rows, dtype=np.int64)
        if rows.size and (rows.min() < 0 or rows.max() >= self.n_stars):
            raise SurveyError(f"star index out of range 0..{self.n_stars - 1}")
        order = np.argsort(rows)
        flux = np.empty((rows.size, self.grid.npix), np.float32)
        ivar = np.empty_like(flux)
        sorted_rows = rows[order]
        cs = self.chunk_stars
        i = 0
        while i < sorted_rows.size:
            c0 = (sorted_rows[i] // cs) * cs
            j = np.searchsorted(sorted_rows, c0 + cs)
            block = self.read(c0, min(c0 + cs, self.n_stars))
            flux[order[i:j]] = block.flux[sorted_rows[i:j] - c0]
            ivar[order[i:j]] = block.ivar[sorted_rows[i:j] - c0]
            i = j
        return Chunk(-1, flux, ivar)

    def spectrum(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Flux and ivar of one star (random access)."""
        if not 0 <= i < self.n_stars:
            raise SurveyError(f"star index {i} out of range 0..{self.n_stars - 1}")
        c = self.read(i, i + 1)
        return c.flux[0], c.ivar[0]

    def iter_chunks(self, chunk: int | None = None, start: int = 0,
                    stop: int | None = None) -> Iterator[Chunk]:
        """Stream the survey in blocks of whole store chunks (bounded memory)."""
        cs = self.chunk_stars
        step = max(cs, ((chunk or 8 * cs) // cs) * cs)
        stop = self.n_stars if stop is None else min(stop, self.n_stars)
        for s in range(start, stop, step):
            yield self.read(s, min(s + step, stop))

    def latents_path(self, model_name: str) -> Path:
        return self.path / LATENTS_DIR / f"{model_name}.parquet"
