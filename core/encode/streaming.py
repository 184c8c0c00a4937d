"""Encoding surveys with a trained model: streaming, bounded memory, atomic output.

On CPU the encoder's features are built from the store's float16 bits with numba while the
next block is read in a background thread. On a GPU (``features="torch"``, the default
there) the raw arrays go through pinned host memory and a side CUDA stream to the device,
the next block's copy overlapping the current block's compute, and features and chi2 are
computed on the device under bf16 autocast.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from queue import Queue

import numpy as np
import pandas as pd
import torch

from chemlatent import __version__
from chemlatent.encode.buffers import BufferPool
from chemlatent.encode.precision import resolve_precision
from chemlatent.encode.tiles import CPU_TILE, CUDA_TILE, default_workers, map_row_tiles, map_tiles
from chemlatent.errors import ChemlatentError
from chemlatent.io.rowreader import read_range, take_rows
from chemlatent.io.store import LATENTS_DIR, Survey
from chemlatent.model.devicefeatures import DeviceBlock, chi2_torch, features_torch, pixel_sigma, upload
from chemlatent.model.features import chi2_from_raw, features_from_raw, n_coverage_bins
from chemlatent.model.modelio import check_grid
from chemlatent.model.vae import DisentangledVAE, noise_from_features

LATENT_COLUMNS = ["z_fe", "z_c", "z_alpha"]
META_KEY = "chemlatent"


@dataclass
class RawBlock:
    """Rows [start, start + n) straight from the store (no float conversion); start is -1
    for a block of selected rows."""

    start: int
    flux16: np.ndarray
    mask: np.ndarray | None = None
    scale: np.ndarray | None = None
    ivar: np.ndarray | None = None

    @property
    def n(self) -> int:
        return self.flux16.shape[0]


def read_raw(survey: Survey, start: int, stop: int, sel: np.ndarray | None = None,
             buffers: BufferPool | None = None) -> RawBlock:
    """Rows [start, stop) of the store, or only rows ``sel`` (absolute, sorted) among them.
    The flux is read straight from its chunk files where the layout allows (a third of
    zarr's CPU time, which on 2 cores the model's threads would otherwise wait for). With
    ``buffers``, the arrays come from that pool (give them back with :func:`release`)."""
    stop = min(stop, survey.n_stars)
    pool = buffers or BufferPool()
    n, npix = stop - start, survey._flux.shape[1]
    f = read_range(survey._flux, start, stop, pool.take((n, npix), survey._flux.dtype))
    if survey.ivar_layout == "full":
        blk = RawBlock(start, f, ivar=read_range(survey._ivar, start, stop,
                                                 pool.take((n, npix), survey._ivar.dtype)))
    else:
        blk = RawBlock(start, f, mask=read_range(survey._mask, start, stop,
                                                 pool.take((n, npix), survey._mask.dtype)),
                       scale=survey._ivar_scale[start:stop])
    if sel is None:
        return blk
    loc = sel - start
    part = RawBlock(-1, blk.flux16[loc], None if blk.mask is None else blk.mask[loc],
                    None if blk.scale is None else blk.scale[loc],
                    None if blk.ivar is None else blk.ivar[loc])
    release(blk, pool)
    return part


def release(blk: RawBlock, buffers: BufferPool) -> None:
    """Give a block's arrays back to the pool it was read with, once nothing uses them."""
    buffers.give(blk.flux16, blk.mask, blk.ivar)


def read_rows_raw(survey: Survey, rows: np.ndarray) -> RawBlock:
    """Scattered rows (sorted) reading only those rows' flux (see :mod:`chemlatent.io.rowreader`)."""
    rows = np.asarray(rows, np.int64)
    flux = take_rows(survey._flux, rows)
    if survey.ivar_layout == "full":
        return RawBlock(-1, flux, ivar=take_rows(survey._ivar, rows))
    return RawBlock(-1, flux, mask=take_rows(survey._mask, rows), scale=survey._ivar_scale[rows])


def prefetched(jobs: Iterable, read: Callable, prefetch: int = 2) -> Iterator:
    """``read(job)`` for each job, computed ahead in a background thread (I/O overlaps compute)."""
    q: Queue = Queue(maxsize=max(1, prefetch))
    stop = threading.Event()

    def worker() -> None:
        try:
            for job in jobs:
                if stop.is_set():
                    return
                q.put(read(job))
        except BaseException as exc:  # forwarded to the consumer
            q.put(exc)
        q.put(None)

    th = threading.Thread(target=worker, daemon=True, name="chemlatent-read")
    th.start()
    try:
        while True:
            item = q.get()
            if item is None:
                break
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while th.is_alive():
            try:
                q.get_nowait()
            except Exception:
                pass
            th.join(timeout=0.05)


def iter_raw(survey: Survey, chunk: int = 8192, rows: np.ndarray | None = None,
             prefetch: int = 2, start: int = 0, stop: int | None = None,
             buffers: BufferPool | None = None) -> Iterator[RawBlock]:
    """Stream raw blocks of whole store chunks over rows [start, stop), reading ahead; with
    ``rows``, only those rows (chunks without any are skipped); ``buffers`` as in
    :func:`read_raw`."""
    cs = survey.chunk_stars
    chunk = max(cs, (chunk // cs) * cs)
    stop = survey.n_stars if stop is None else min(stop, survey.n_stars)
    jobs: list[tuple[int, int, np.ndarray | None]] = []
    if rows is None:
        jobs = [(s, min(s + chunk, stop), None) for s in range(start, stop, chunk)]
    else:
        rows = np.sort(np.asarray(rows, np.int64))
        for s in range(start, stop, chunk):
            sel = rows[(rows >= s) & (rows < min(s + chunk, stop))]
            if sel.size:
                jobs.append((s, min(s + chunk, stop), sel))
    return prefetched(jobs, lambda j: read_raw(survey, *j, buffers=buffers), prefetch)


def iter_rows(survey: Survey, rows: np.ndarray, batch: int = 4096,
              prefetch: int = 2) -> Iterator[RawBlock]:
    """Scattered rows (sorted here) in batches of ``batch``, read ahead in the background."""
    rows = np.sort(np.asarray(rows, np.int64))
    jobs = [rows[i:i + batch] for i in range(0, rows.size, max(1, batch))]
    return prefetched(jobs, lambda r: read_rows_raw(survey, r), prefetch)


@dataclass
class _Pending:
    """A launched batch: packed float32 columns (maybe still being copied) plus host columns."""

    names: list[str]
    packed: torch.Tensor | None
    ready: torch.cuda.Event | None = None
    host: dict[str, np.ndarray] = field(default_factory=dict)
    keep: tuple = ()  # inputs of asynchronous copies, alive until the results are collected


class Encoder:
    """Applies a model to raw blocks: posterior means/stds, w, predicted labels, chi2.

    ``features``: ``numba`` (CPU), ``torch`` (on the device, from raw arrays) or ``auto``
    (torch on CUDA, numba otherwise). ``samples`` > 0 adds Monte-Carlo uncertainties (see
    :meth:`launch`).
    """

    def __init__(self, model: DisentangledVAE, survey: Survey, device: str = "cpu",
                 precision: str = "auto", features: str = "auto") -> None:
        check_grid(model, survey.grid)
        self.model = model.eval()
        self.device = torch.device(device)
        self.model.to(self.device)
        self.precision = resolve_precision(precision, self.device.type)
        self.cuda = self.device.type == "cuda"
        if features == "auto":
            features = "torch" if self.cuda else "numba"
        if features not in ("numba", "torch"):
            raise ChemlatentError(f"unknown feature path {features!r}: use auto, numba or torch")
        self.features = features
        self.copy_stream = torch.cuda.Stream(self.device) if self.cuda else None
        self.profile = None if survey.ivar_layout == "full" else survey._ivar_profile
        prof = None if self.profile is None else torch.from_numpy(self.profile).to(self.device)
        self._prof, self._sqrt_prof = prof, None if prof is None else prof.sqrt()
        self.chi2_idx = model.chi2_idx.cpu().numpy()  # the pixels of chi2 (the element windows)
        self.label_mean = np.asarray(model.config.label_mean, np.float32)
        self.label_std = np.asarray(model.config.label_std, np.float32)
        self.tile = CUDA_TILE if self.cuda else CPU_TILE
        self.workers = default_workers()
        self._tile_buffers = BufferPool()

    def generator(self, seed: int) -> torch.Generator:
        """A seeded random generator on this encoder's device (for ``samples``)."""
        return torch.Generator(device=self.device).manual_seed(int(seed))

    def stage(self, blk: RawBlock, samples: int = 0) -> DeviceBlock | None:
        """Start copying a block to the device when the torch path (or sampling) needs it."""
        if self.features == "torch" or samples:
            return upload(blk, self.device, self.copy_stream)
        return None

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16")

    @torch.inference_mode()
    def launch(self, blk: RawBlock, dev: DeviceBlock | None, samples: int = 0,
               generator: torch.Generator | None = None) -> _Pending:
        """Queue one block's work (asynchronous on CUDA). With ``samples`` = K > 0, each
        star is also encoded K times with a fresh noise realisation drawn from its own ivar
        added to the flux, and z drawn from each encoding's posterior: ``z_*_mean`` and
        ``z_*_std`` are the mean and standard deviation of those K draws, ``z_*_sigma`` the
        posterior width of the observed spectrum."""
        names = LATENT_COLUMNS + [f"{c}_std" for c in LATENT_COLUMNS]
        if not self.cuda and self.features == "numba" and not samples and blk.n:
            mu, std, w, chi2, ngood = self._cpu_tiles(blk)
            names += [f"w_{i}" for i in range(w.shape[1])]
            return _Pending(names, torch.cat([mu, std, w], 1), None, {"chi2": chi2, "n_good": ngood})
        if dev is not None:
            dev.wait()
        keep: tuple = (dev,)
        if self.features == "torch":
            x = features_torch(dev, self._sqrt_prof)
        else:
            feats = features_from_raw(blk.flux16, mask=blk.mask, scale=blk.scale, profile=self.profile,
                                      ivar=blk.ivar)
            x = torch.from_numpy(feats)
            if self.cuda:
                pinned = x.pin_memory()
                keep += (pinned,)
                x = pinned.to(self.device, non_blocking=True)
        m = self.model
        mu, std, w, rec_all = map_tiles(self._forward, x, rows=self.tile, workers=self.workers)
        names += [f"w_{i}" for i in range(w.shape[1])]
        cols = [mu, std, w]
        host: dict[str, np.ndarray] = {}
        if self.features == "torch":
            chi2, ngood = chi2_torch(dev, m.chi2_idx, rec_all, self._prof)
            names += ["chi2", "n_good"]
            cols += [chi2.unsqueeze(1), ngood.float().unsqueeze(1)]
        else:
            host["chi2"], host["n_good"] = chi2_from_raw(
                blk.flux16, self.chi2_idx, rec_all.cpu().numpy(), mask=blk.mask, scale=blk.scale,
                profile=self.profile, ivar=blk.ivar)
        if samples:
            zmean, zstd = self._sample(x, dev, int(samples), generator)
            names += [f"{c}_mean" for c in LATENT_COLUMNS] + [f"{c}_sample_std" for c in LATENT_COLUMNS]
            cols += [zmean, zstd]
        packed = torch.cat(cols, 1)
        if not self.cuda:
            return _Pending(names, packed, None, host)
        out = torch.empty(packed.shape, dtype=packed.dtype, pin_memory=True)
        out.copy_(packed, non_blocking=True)
        ready = torch.cuda.Event()
        ready.record()
        return _Pending(names, out, ready, host, keep)

    def _cpu_tiles(self, blk: RawBlock) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                                 np.ndarray, np.ndarray]:
        """The CPU path, one pass per tile: each worker thread builds a tile's features, runs
        the model on it and computes its chi2, so a block's features never exist whole and
        stay in the cache (the same numbers as building them for the block first, ~25 %
        faster on a 2-core CPU)."""
        n, npix = blk.flux16.shape
        width = npix + n_coverage_bins(npix) + 1
        chi2, ngood = np.empty(n, np.float32), np.empty(n, np.int32)

        def tile(a: int, b: int) -> tuple[torch.Tensor, ...]:
            part = {"mask": None if blk.mask is None else blk.mask[a:b],
                    "scale": None if blk.scale is None else blk.scale[a:b],
                    "ivar": None if blk.ivar is None else blk.ivar[a:b], "profile": self.profile}
            x = self._tile_buffers.take((self.tile, width), np.float32)
            x[b - a:] = 0.0  # a fixed shape: rows past the block are zeros
            features_from_raw(blk.flux16[a:b], out=x[:b - a], threads=False, **part)
            mu, std, w, rec = self._forward(torch.from_numpy(x))
            self._tile_buffers.give(x)
            chi2[a:b], ngood[a:b] = chi2_from_raw(blk.flux16[a:b], self.chi2_idx, rec[:b - a].numpy(),
                                                  threads=False, **part)
            return mu[:b - a], std[:b - a], w[:b - a]

        mu, std, w = map_row_tiles(tile, n, rows=self.tile, workers=self.workers)
        return mu, std, w, chi2, ngood

    def _forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Posterior mean and standard deviation, w and the reconstruction of one fixed-shape
        tile (autocast and inference mode are per thread, so they are entered here)."""
        m = self.model
        with torch.inference_mode(), self._autocast():
            hid = m.encoder(x)
            mu = m.bound(m.mu(hid).float() * m.orient)
            std = torch.exp(0.5 * m.logvar(hid).float().clamp(-12, 6))
            w = m.w_head(hid).float()
            # line decoders emulate the continuum normalisation, which clips by the noise
            sigma = noise_from_features(x) if getattr(m, "form", None) == "lines" else None
            rec_all = m.decode_fast(mu, w, sigma).float()
        return mu, std, w, rec_all

    def _posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior mean and standard deviation of one fixed-shape tile."""
        m = self.model
        with torch.inference_mode(), self._autocast():
            hid = m.encoder(x)
            mu = m.bound(m.mu(hid).float() * m.orient)
            sd = torch.exp(0.5 * m.logvar(hid).float().clamp(-12, 6))
        return mu, sd

    def _sample(self, x: torch.Tensor, dev: DeviceBlock, k: int,
                generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
        npix = dev.flux16.shape[1]
        sigma = pixel_sigma(dev, self._sqrt_prof)
        draws = torch.empty((k, x.shape[0], 3), dtype=torch.float32, device=x.device)
        for i in range(k):
            xk = x.clone()
            noise = torch.randn(sigma.shape, generator=generator, device=x.device)
            xk[:, :npix].addcmul_(noise, sigma).clamp_(-1.0, 1.5)
            mu, sd = map_tiles(self._posterior, xk, rows=self.tile, workers=self.workers)
            eps = torch.randn(mu.shape, generator=generator, device=x.device)
            draws[i] = mu + sd * eps
        spread = draws.std(0) if k > 1 else torch.zeros_like(draws[0])
        return draws.mean(0), spread

    def collect(self, p: _Pending) -> dict[str, np.ndarray]:
        """Wait for a launched batch and return its columns as numpy arrays."""
        if p.ready is not None:
            p.ready.synchronize()
        arr = p.packed.numpy()
        col = {name: arr[:, i] for i, name in enumerate(p.names)}
        out = {c: col[c] for c in LATENT_COLUMNS}
        out.update({f"{c}_std": col[f"{c}_std"] for c in LATENT_COLUMNS})
        nw = sum(1 for n in p.names if n.startswith("w_"))
        for i in range(nw):
            out[f"w_{i}"] = col[f"w_{i}"]
        out["teff_pred"] = col["w_0"] * self.label_std[0] + self.label_mean[0]
        out["logg_pred"] = col["w_1"] * self.label_std[1] + self.label_mean[1]
        if "chi2" in p.host:
            out["chi2"], out["n_good"] = p.host["chi2"], p.host["n_good"]
        else:
            out["chi2"], out["n_good"] = col["chi2"], col["n_good"].astype(np.int32)
        if "z_fe_mean" in col:
            for c in LATENT_COLUMNS:  # the sampled spread becomes the reported uncertainty
                out[f"{c}_sigma"] = out[f"{c}_std"]
                out[f"{c}_std"] = col[f"{c}_sample_std"]
                out[f"{c}_mean"] = col[f"{c}_mean"]
        return out

    def __call__(self, blk: RawBlock, samples: int = 0,
                 generator: torch.Generator | None = None) -> dict[str, np.ndarray]:
        return self.collect(self.launch(blk, self.stage(blk, samples), samples, generator))

    def stream(self, blocks: Iterable[RawBlock], samples: int = 0,
               generator: torch.Generator | None = None) -> Iterator[tuple[RawBlock, dict]]:
        """Encode blocks in order, one batch in flight ahead: on CUDA the next block is pinned
        and copied while the current one computes."""
        pending: list[tuple[RawBlock, _Pending]] = []
        for blk in blocks:
            pending.append((blk, self.launch(blk, self.stage(blk, samples), samples, generator)))
            if len(pending) > 1:
                b, p = pending.pop(0)
                yield b, self.collect(p)
        for b, p in pending:
            yield b, self.collect(p)


def latents_meta(model: DisentangledVAE, survey: Survey, *, run: str, precision: str, device: str,
                 subset: bool, **extra) -> dict:
    """The provenance stored under the parquet key ``chemlatent``."""
    meta = {"model_name": model_name(model), "model_dir": str(getattr(model, "model_dir", "")),
            "run": run, "survey": str(survey.path), "precision": precision, "device": str(device),
            "software_version": __version__,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "subset": subset}
    meta.update(extra)
    return meta


def model_name(model: DisentangledVAE) -> str:
    return getattr(model, "name", model.config.name)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def remove_stale_temporaries(path: Path, unnamed_age_s: float = 3600.0) -> list[Path]:
    """Delete ``.<name>.tmp-<pid>-*`` files next to ``path`` left by a writer that was killed
    (its process is gone); ones without a process id are removed once an hour old."""
    removed = []
    for tmp in Path(path).parent.glob(f".{Path(path).name}.tmp-*"):
        tag = tmp.name.rsplit(".tmp-", 1)[-1]
        pid = tag.split("-", 1)[0]
        try:
            if "-" in tag and pid.isdigit():  # .<name>.tmp-<pid>-<random>
                stale = not _pid_alive(int(pid))
            else:  # an older name without the writer's process id
                stale = time.time() - tmp.stat().st_mtime > unnamed_age_s
            if stale:
                tmp.unlink()
                removed.append(tmp)
        except OSError:
            continue
    return removed


class LatentsWriter:
    """Latents rows streamed into a hidden temporary parquet file next to ``path``; only
    :meth:`commit` (fsync, rename) makes them appear, so a failure leaves ``path`` as it was.
    Temporaries of killed writers are removed when the next writer for ``path`` starts."""

    def __init__(self, path: Path, meta: dict) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.meta = meta
        remove_stale_temporaries(self.path)
        self.tmp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        self._writer = None
        self.rows = 0

    def write(self, df: pd.DataFrame) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pandas(df, preserve_index=False)
        if self._writer is None:
            schema = table.schema.with_metadata({META_KEY.encode(): json.dumps(self.meta).encode()})
            self._writer = pq.ParquetWriter(self.tmp, schema, compression="zstd")
        self._writer.write_table(table.cast(self._writer.schema))
        self.rows += len(df)

    def commit(self) -> Path:
        if self._writer is None:
            raise ChemlatentError("nothing to encode")
        self._writer.close()
        self._writer = None
        with open(self.tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> LatentsWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.abort()  # no-op after commit


def encode_survey(survey: Survey, model: DisentangledVAE, *, out_path: Path | None = None,
                  device: str = "cpu", precision: str = "auto", chunk: int | None = None,
                  rows: np.ndarray | None = None, run: str | None = None,
                  overwrite: bool = False, progress: Callable[[int], None] | None = None,
                  features: str = "auto", samples: int = 0, seed: int = 0) -> Path:
    """Encode a survey (or the given rows) and write ``latents/<model>.parquet`` atomically.
    ``chunk``: stars per block (default 4096 on CPU: less memory to touch, see
    :mod:`chemlatent.encode.buffers`; 32768 on a GPU); ``samples`` > 0 adds
    sampled uncertainties (see :meth:`Encoder.launch`)."""
    name = model_name(model)
    out_path = Path(out_path) if out_path else survey.path / LATENTS_DIR / f"{name}.parquet"
    if out_path.exists() and not overwrite:
        raise ChemlatentError(f"{out_path} already exists; pass --overwrite to replace it")
    enc = Encoder(model, survey, device=device, precision=precision, features=features)
    chunk = chunk or (32768 if enc.cuda else 4096)
    run = run or f"{name}@{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
    star_ids = survey.catalog["star_id"].to_numpy()
    meta = latents_meta(model, survey, run=run, precision=enc.precision, device=str(device),
                        subset=rows is not None, **({"samples": samples, "seed": seed} if samples else {}))
    gen = enc.generator(seed) if samples else None
    row_iter = None if rows is None else np.sort(np.asarray(rows, np.int64))
    buffers = BufferPool()
    with LatentsWriter(out_path, meta) as writer:
        done = 0
        for blk, res in enc.stream(iter_raw(survey, chunk, rows=row_iter, buffers=buffers), samples, gen):
            release(blk, buffers)
            if rows is None:
                ids = star_ids[blk.start:blk.start + blk.n]
            else:
                ids = star_ids[row_iter[done:done + blk.n]]
            df = pd.DataFrame({"star_id": ids, **res})
            df["run"] = run
            writer.write(df)
            done += blk.n
            if progress:
                progress(blk.n)
        return writer.commit()
