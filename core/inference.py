"""Encoding surveys with a trained model: streaming, bounded memory, atomic output."""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from queue import Queue

import numpy as np
import pandas as pd
import torch

from . import __version__
from .errors import ChemlatentError
from .features import chi2_from_raw, features_from_raw
from .model import DisentangledVAE
from .modelio import check_grid
from .store import LATENTS_DIR, Survey

LATENT_COLUMNS = ["z_fe", "z_c", "z_alpha"]


@dataclass
class RawBlock:
    """Rows [start, start + n) straight from the store (no float conversion)."""

    start: int
    flux16: np.ndarray
    mask: np.ndarray | None = None
    scale: np.ndarray | None = None
    ivar: np.ndarray | None = None

    @property
    def n(self) -> int:
        return self.flux16.shape[0]


def iter_raw(survey: Survey, chunk: int = 8192, rows: np.ndarray | None = None,
             prefetch: int = 2) -> Iterator[RawBlock]:
    """Stream raw blocks, reading ahead in a background thread (I/O overlaps compute)."""
    cs = survey.chunk_stars
    chunk = max(cs, (chunk // cs) * cs)

    def read(s: int, e: int, sel: np.ndarray | None) -> RawBlock:
        f = np.asarray(survey._flux[s:e])
        if survey.ivar_layout == "full":
            iv = np.asarray(survey._ivar[s:e])
            blk = RawBlock(s, f, ivar=iv)
        else:
            blk = RawBlock(s, f, mask=np.asarray(survey._mask[s:e]), scale=survey._ivar_scale[s:e])
        if sel is not None:
            loc = sel - s
            blk = RawBlock(-1, blk.flux16[loc], None if blk.mask is None else blk.mask[loc],
                           None if blk.scale is None else blk.scale[loc],
                           None if blk.ivar is None else blk.ivar[loc])
        return blk

    jobs: list[tuple[int, int, np.ndarray | None]] = []
    if rows is None:
        jobs = [(s, min(s + chunk, survey.n_stars), None) for s in range(0, survey.n_stars, chunk)]
    else:
        rows = np.sort(np.asarray(rows, np.int64))
        for s in range(0, survey.n_stars, chunk):
            sel = rows[(rows >= s) & (rows < s + chunk)]
            if sel.size:
                jobs.append((s, min(s + chunk, survey.n_stars), sel))
    q: Queue = Queue(maxsize=prefetch)
    stop = threading.Event()

    def worker() -> None:
        try:
            for s, e, sel in jobs:
                if stop.is_set():
                    return
                q.put(read(s, e, sel))
        except BaseException as exc:  # forwarded to the consumer
            q.put(exc)
        q.put(None)

    th = threading.Thread(target=worker, daemon=True)
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


class Encoder:
    """Applies a model to raw blocks: posterior means/stds, w, predicted labels, chi2."""

    def __init__(self, model: DisentangledVAE, survey: Survey, device: str = "cpu",
                 precision: str = "auto") -> None:
        check_grid(model, survey.grid)
        self.model = model.eval()
        self.device = torch.device(device)
        self.model.to(self.device)
        if precision == "auto":
            precision = "bf16"
        if precision not in ("bf16", "fp32"):
            raise ChemlatentError(f"unknown precision {precision!r}: use auto, bf16 or fp32")
        self.precision = precision
        self.profile = None if survey.ivar_layout == "full" else survey._ivar_profile
        self.win_all = model.win_all.cpu().numpy()
        self.label_mean = np.asarray(model.config.label_mean, np.float32)
        self.label_std = np.asarray(model.config.label_std, np.float32)

    @torch.inference_mode()
    def __call__(self, blk: RawBlock) -> dict[str, np.ndarray]:
        feats = features_from_raw(blk.flux16, mask=blk.mask, scale=blk.scale, profile=self.profile,
                                  ivar=blk.ivar)
        x = torch.from_numpy(feats).to(self.device, non_blocking=True)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"):
            hid = self.model.encoder(x)
            mu = self.model.mu(hid).float() * self.model.orient
            logvar = self.model.logvar(hid).float().clamp(-12, 6)
            w = self.model.w_head(hid).float()
            rec_all = self.model.decode(mu, w, selective=False).float().cpu().numpy()
        chi2, ngood = chi2_from_raw(blk.flux16, self.win_all, rec_all, mask=blk.mask,
                                    scale=blk.scale, profile=self.profile, ivar=blk.ivar)
        mu, std, wn = mu.cpu().numpy(), torch.exp(0.5 * logvar).cpu().numpy(), w.cpu().numpy()
        out = {c: mu[:, i] for i, c in enumerate(LATENT_COLUMNS)}
        out.update({f"{c}_std": std[:, i] for i, c in enumerate(LATENT_COLUMNS)})
        for i in range(wn.shape[1]):
            out[f"w_{i}"] = wn[:, i]
        out["teff_pred"] = wn[:, 0] * self.label_std[0] + self.label_mean[0]
        out["logg_pred"] = wn[:, 1] * self.label_std[1] + self.label_mean[1]
        out["chi2"] = chi2
        out["n_good"] = ngood
        return out


def encode_survey(survey: Survey, model: DisentangledVAE, *, out_path: Path | None = None,
                  device: str = "cpu", precision: str = "auto", chunk: int = 8192,
                  rows: np.ndarray | None = None, run: str | None = None,
                  overwrite: bool = False, progress: Callable[[int], None] | None = None) -> Path:
    """Encode a survey (or the given rows) and write ``latents/<model>.parquet`` atomically."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    name = getattr(model, "name", model.config.name)
    out_path = Path(out_path) if out_path else survey.path / LATENTS_DIR / f"{name}.parquet"
    if out_path.exists() and not overwrite:
        raise ChemlatentError(f"{out_path} already exists; pass --overwrite to replace it")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    enc = Encoder(model, survey, device=device, precision=precision)
    run = run or f"{name}@{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
    star_ids = survey.catalog["star_id"].to_numpy()
    meta = {"model_name": name, "model_dir": str(getattr(model, "model_dir", "")), "run": run,
            "survey": str(survey.path), "precision": enc.precision, "device": str(device),
            "software_version": __version__,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "subset": rows is not None}
    tmp = out_path.with_name(f".{out_path.name}.tmp-{uuid.uuid4().hex[:8]}")
    writer = None
    try:
        row_iter = None if rows is None else np.sort(np.asarray(rows, np.int64))
        done = 0
        for blk in iter_raw(survey, chunk, rows=row_iter):
            res = enc(blk)
            if rows is None:
                ids = star_ids[blk.start:blk.start + blk.n]
            else:
                ids = star_ids[row_iter[done:done + blk.n]]
            df = pd.DataFrame({"star_id": ids, **res})
            df["run"] = run
            table = pa.Table.from_pandas(df, preserve_index=False)
            if writer is None:
                schema = table.schema.with_metadata({b"chemlatent": json.dumps(meta).encode()})
                writer = pq.ParquetWriter(tmp, schema, compression="zstd")
            writer.write_table(table.cast(writer.schema))
            done += blk.n
            if progress:
                progress(blk.n)
        if writer is None:
            raise ChemlatentError("nothing to encode")
        writer.close()
        writer = None
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, out_path)
    finally:
        if writer is not None:
            writer.close()
        if tmp.exists():
            tmp.unlink()
    return out_path
