"""Encoding a whole survey on a Dask cluster, and the latents as a Dask dataframe.

:func:`encode_distributed` cuts the survey into partitions of whole zarr chunks (16 chunks,
8,192 stars, by default) and runs one task per partition. Each worker loads the model once
(a worker plugin, also run on workers that join or restart later), so tasks carry only a
survey path and a row range. A task writes its partition to
``latents/.parts/<model>-<fingerprint>/part-<first chunk>.parquet`` (temporary file, fsync,
rename), so a partition file is either complete or absent: a task retried after a worker
died rewrites the same file and nothing is counted twice, and a rerun of a failed or
interrupted encode skips the partitions already written. The finished partitions are then
concatenated in order into ``latents/<model>.parquet`` (atomically, each star exactly once:
checked against the catalog), the same file a local ``chemlatent encode`` writes.

The fingerprint covers the model's config and weights and the options that change the
numbers (precision, samples, seed), so partitions from another model or option set are
never reused. Workers must see the survey at the same path (see docs/cluster.md).

:func:`open_latents_dask` opens latents joined with the catalog lazily, for catalogs larger
than memory (local paths or any fsspec URL).
"""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from distributed import WorkerPlugin

from chemlatent.encode.precision import resolve_precision
from chemlatent.errors import ChemlatentError

PARTS_DIR = ".parts"
_STATE_ATTR = "_chemlatent_state"
_STATE_LOCK = threading.Lock()


@dataclass
class DistributedResult:
    path: Path
    n_stars: int
    partitions: int
    skipped: int
    seconds: float
    scheduler: str


def model_fingerprint(model_dir: str | Path | None, **options) -> str:
    """16 hex digits of sha256 over the model's config and weights and ``options``."""
    from chemlatent.model.modelio import CONFIG, WEIGHTS, resolve_model_dir

    path = resolve_model_dir(model_dir)
    h = hashlib.sha256()
    for name in (CONFIG, WEIGHTS):
        with open(path / name, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    h.update(repr(sorted(options.items())).encode())
    return h.hexdigest()[:16]


def _worker_state(worker) -> dict:
    with _STATE_LOCK:
        state = getattr(worker, _STATE_ATTR, None)
        if state is None:
            state = {"models": {}, "loads": 0, "surveys": {}, "lock": threading.Lock()}
            setattr(worker, _STATE_ATTR, state)
        return state


def _load_replica(worker, model_dir: str | None, device: str, weights_fp: str):
    """The worker's model for ``weights_fp``, loaded on first use (once per worker)."""
    from chemlatent.model.device import pick_device
    from chemlatent.model.modelio import load_model

    state = _worker_state(worker)
    key = f"{weights_fp}-{device}"
    with state["lock"]:
        model = state["models"].get(key)
        if model is None:
            if model_fingerprint(model_dir) != weights_fp:
                raise ChemlatentError(f"the model at {model_dir or 'the bundled path'} on worker "
                                      f"{worker.address} differs from the client's: use a shared path")
            model = load_model(model_dir, device=str(pick_device(device)))
            state["models"][key] = model
            state["loads"] += 1
        return model


class ModelReplica(WorkerPlugin):
    """Worker plugin: load the model once on every worker (now and on workers that join).
    Registering the same model and device again is a no-op: the replica stays loaded."""

    idempotent = True

    def __init__(self, model_dir: str | None, device: str, weights_fp: str) -> None:
        self.model_dir, self.device, self.weights_fp = model_dir, device, weights_fp
        self.name = f"chemlatent-model-{weights_fp}-{device}"

    def setup(self, worker) -> None:
        _load_replica(worker, self.model_dir, self.device, self.weights_fp)

    def teardown(self, worker) -> None:
        state = getattr(worker, _STATE_ATTR, None)
        if state is not None:
            state["models"].pop(f"{self.weights_fp}-{self.device}", None)


def _survey(worker, survey_dir: str):
    from chemlatent.io.store import Survey

    state = _worker_state(worker)
    with state["lock"]:
        if survey_dir not in state["surveys"]:
            state["surveys"][survey_dir] = Survey(survey_dir)
        return state["surveys"][survey_dir]


def star_ids_range(catalog: str | Path, start: int, stop: int) -> np.ndarray:
    """``star_id`` of catalog rows [start, stop), reading only the row groups that hold them."""
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(catalog)
    out, pos = [], 0
    for g in range(pf.metadata.num_row_groups):
        rows = pf.metadata.row_group(g).num_rows
        if pos + rows > start and pos < stop:
            col = pf.read_row_group(g, columns=["star_id"]).column(0).to_numpy()
            out.append(col[max(0, start - pos):stop - pos])
        pos += rows
        if pos >= stop:
            break
    return np.concatenate(out) if out else np.empty(0, np.int64)


def encode_rows(survey, model, start: int, stop: int, *, device: str, precision: str,
                samples: int = 0, seed: int = 0) -> pd.DataFrame:
    """Latents of rows [start, stop) (no ``run`` column), as ``encode_survey`` computes them."""
    from chemlatent.encode.streaming import Encoder, iter_raw
    from chemlatent.io.store import CATALOG

    enc = Encoder(model, survey, device=device, precision=precision)
    gen = enc.generator(seed + start) if samples else None
    ids = star_ids_range(survey.path / CATALOG, start, stop)
    frames = [pd.DataFrame({"star_id": ids[b.start - start:b.start - start + b.n], **res})
              for b, res in enc.stream(iter_raw(survey, stop - start, start=start, stop=stop, prefetch=1),
                                       samples, gen)]
    return pd.concat(frames, ignore_index=True)


def encode_partition(survey_dir: str, model_dir: str | None, weights_fp: str, start: int, stop: int,
                     out: str, device: str, precision: str, samples: int, seed: int) -> int:
    """The task: encode rows [start, stop) with this worker's model replica and write ``out``
    atomically. Returns the number of rows."""
    from distributed import get_worker

    from chemlatent.io.store import write_parquet_atomic
    from chemlatent.model.device import pick_device

    worker = get_worker()
    model = _load_replica(worker, model_dir, device, weights_fp)
    survey = _survey(worker, survey_dir)
    df = encode_rows(survey, model, start, stop, device=str(pick_device(device)), precision=precision,
                     samples=samples, seed=seed)
    write_parquet_atomic(df, Path(out), metadata={"chemlatent_part": {"start": start, "stop": stop}})
    return len(df)


def worker_model_loads(client) -> dict[str, int]:
    """How many times each worker has loaded a model (for checks: once per worker)."""
    def loads(dask_worker) -> int:
        return int(getattr(dask_worker, _STATE_ATTR, {}).get("loads", 0))

    return client.run(loads)


def _part_ok(path: Path, rows: int) -> bool:
    import pyarrow.parquet as pq

    try:
        return path.exists() and pq.read_metadata(path).num_rows == rows
    except Exception:
        return False


@contextlib.contextmanager
def connect(scheduler, workers: int = 1):
    """A Dask client: ``local`` (a LocalCluster of ``workers`` processes, one thread each),
    a scheduler address, or an existing Client (left open)."""
    from distributed import Client, LocalCluster

    if isinstance(scheduler, Client):
        yield scheduler
        return
    if scheduler == "local":
        with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                          dashboard_address=":0") as cluster, Client(cluster) as client:
            yield client
        return
    try:
        _probe(str(scheduler))
        client = Client(str(scheduler), timeout="20s")
    except OSError as exc:
        raise ChemlatentError(f"cannot reach the Dask scheduler at {scheduler} ({exc}); start one with "
                              "dask scheduler, or use --scheduler local") from None
    with client:
        yield client


def _probe(address: str, timeout: float = 5.0) -> None:
    """Fail fast (OSError) when a tcp:// scheduler port does not answer."""
    import socket
    from urllib.parse import urlsplit

    if not address.startswith(("tcp://", "tls://")):
        return
    u = urlsplit(address)
    if u.hostname and u.port:
        socket.create_connection((u.hostname, u.port), timeout=timeout).close()


def encode_distributed(survey_dir: str | Path, model_dir: str | Path | None = None, *,
                       scheduler="local", workers: int = 1, device: str = "auto",
                       precision: str = "auto", samples: int = 0, seed: int = 0,
                       partition_stars: int = 8192, overwrite: bool = False,
                       progress: Callable[[int], None] | None = None) -> DistributedResult:
    """Encode every star on a Dask cluster into ``latents/<model>.parquet`` (see module doc)."""
    from distributed import as_completed

    from chemlatent.encode.streaming import latents_meta, model_name
    from chemlatent.io.store import LATENTS_DIR, Survey
    from chemlatent.model.modelio import check_grid, load_model, resolve_model_dir

    t0 = time.perf_counter()
    survey = Survey(survey_dir)
    mdir = None if model_dir is None else str(resolve_model_dir(model_dir).resolve())
    model = load_model(mdir)
    check_grid(model, survey.grid)
    name = model_name(model)
    out_path = survey.path / LATENTS_DIR / f"{name}.parquet"
    if out_path.exists() and not overwrite:
        raise ChemlatentError(f"{out_path} already exists; pass --overwrite to replace it")
    weights_fp = model_fingerprint(mdir)
    from chemlatent.model.device import pick_device

    # decided once, here, so every partition of the run shares it (and the fingerprint)
    prec = resolve_precision(precision, device if device in ("cpu", "cuda") else pick_device(device).type)
    run_fp = model_fingerprint(mdir, precision=prec, samples=int(samples), seed=int(seed))
    parts = survey.path / LATENTS_DIR / PARTS_DIR / f"{name}-{run_fp}"
    parts.mkdir(parents=True, exist_ok=True)
    for stale in parts.glob(".*.tmp-*"):
        stale.unlink(missing_ok=True)
    cs, n = survey.chunk_stars, survey.n_stars
    step = max(1, int(partition_stars) // cs)
    plan = [(first, first * cs, min((first + step) * cs, n)) for first in range(0, -(-n // cs), step)]
    path_of = {first: parts / f"part-{first:08d}.parquet" for first, _, _ in plan}
    todo = [p for p in plan if not _part_ok(path_of[p[0]], p[2] - p[1])]
    skipped = len(plan) - len(todo)
    if progress and skipped:
        progress(sum(e - s for f, s, e in plan if (f, s, e) not in todo))
    address = scheduler if isinstance(scheduler, str) else \
        getattr(getattr(scheduler, "scheduler", None), "address", None) or str(scheduler)
    if todo:
        with connect(scheduler, workers) as client:
            client.register_plugin(ModelReplica(mdir, device, weights_fp))
            token = uuid.uuid4().hex[:8]
            futures = {client.submit(encode_partition, str(survey.path), mdir, weights_fp, s, e,
                                     str(path_of[f]), device, prec, int(samples), int(seed),
                                     key=f"chemlatent-encode-{token}-{f:08d}", retries=2): f
                       for f, s, e in todo}
            failed: list[tuple[int, BaseException]] = []
            for fut in as_completed(futures):  # let every other partition finish: a rerun keeps them
                exc = fut.exception()
                if exc is not None:
                    failed.append((futures[fut], exc))
                elif progress:
                    progress(fut.result())
            if failed:
                first, exc = min(failed, key=lambda f: f[0])
                if isinstance(exc, ChemlatentError):
                    raise ChemlatentError(str(exc))
                raise ChemlatentError(
                    f"{len(failed)} of {len(todo)} partitions failed (first at chunk {first}: "
                    f"{type(exc).__name__}: {exc}); the {len(plan) - len(failed)} finished ones are kept "
                    f"in {parts}: run the same command again to resume")
    run = f"{name}@{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
    meta = latents_meta(model, survey, run=run, precision=prec, device=str(device), subset=False,
                        scheduler=address, partitions=len(plan), samples=int(samples))
    _merge(survey, [path_of[f] for f, _, _ in plan], out_path, meta, run)
    shutil.rmtree(parts, ignore_errors=True)
    with contextlib.suppress(OSError):
        parts.parent.rmdir()  # only when no other model's partitions are there
    return DistributedResult(out_path, n, len(plan), skipped, time.perf_counter() - t0, address)


def _merge(survey, files: list[Path], out_path: Path, meta: dict, run: str) -> None:
    """Concatenate partition files in order into the latents file, checking every star is
    there exactly once (against the catalog, streamed)."""
    import pyarrow.parquet as pq

    from chemlatent.encode.streaming import LatentsWriter
    from chemlatent.io.store import CATALOG

    batches = pq.ParquetFile(survey.path / CATALOG).iter_batches(batch_size=1 << 16, columns=["star_id"])
    pending = np.empty(0, np.int64)
    pos = 0
    with LatentsWriter(out_path, meta) as writer:
        for f in files:
            df = pq.read_table(f).to_pandas()
            while pending.size < len(df):
                nxt = next(batches, None)
                if nxt is None:
                    break
                pending = np.concatenate([pending, nxt.column(0).to_numpy()])
            if not np.array_equal(df["star_id"].to_numpy(), pending[:len(df)]):
                raise ChemlatentError(f"{f} does not hold the stars it should (rows from {pos}); "
                                      "delete it and run again")
            pending = pending[len(df):]
            df["run"] = run
            writer.write(df)
            pos += len(df)
        if pos != survey.n_stars or pending.size or next(batches, None) is not None:
            raise ChemlatentError(f"partitions hold {pos} stars, the survey {survey.n_stars}")
        writer.commit()


def open_latents_dask(survey: str | Path, model: str | None = None, *, columns: list[str] | None = None,
                      catalog_columns: list[str] | None = None, storage_options: dict | None = None):
    """Latents joined with the catalog (by star_id) as a lazy ``dask.dataframe``.

    ``survey``: a local directory or an fsspec URL (``s3://bucket/survey``); ``model``: the
    latents name (default: the only or newest file, as ``chemlatent serve`` picks it).
    When both tables are sorted by star_id (surveys written by chemlatent are) the join is
    partition-aligned; otherwise Dask shuffles.
    """
    import dask.dataframe as dd

    base = str(survey).rstrip("/")
    latents = _latents_url(base, model, storage_options)
    catalog = f"{base}/catalog.parquet"
    cols = None if columns is None else [c for c in columns if c != "star_id"]
    ccols = None if catalog_columns is None else [c for c in catalog_columns if c != "star_id"]
    try:
        lat = dd.read_parquet(latents, columns=cols, index="star_id", calculate_divisions=True,
                              storage_options=storage_options)
        cat = dd.read_parquet(catalog, columns=ccols, index="star_id", calculate_divisions=True,
                              storage_options=storage_options)
    except (KeyError, ValueError) as exc:
        raise ChemlatentError(f"{latents} and {catalog} both need a star_id column ({exc})") from None
    if "run" in lat.columns:
        lat = lat.drop(columns="run")
    dup = [c for c in cat.columns if c in lat.columns]
    if dup:
        cat = cat.drop(columns=dup)
    if lat.known_divisions and cat.known_divisions:
        return lat.join(cat, how="left").reset_index()  # sorted by star_id: no shuffle
    return lat.reset_index().merge(cat.reset_index(), on="star_id", how="left")


def _latents_url(base: str, model: str | None, storage_options: dict | None) -> str:
    if "://" not in base:
        from chemlatent.io.latents import find_latents

        return str(find_latents(base, model).path)
    if model:
        name = model[:-8] if model.endswith(".parquet") else model
        return f"{base}/latents/{name}.parquet"
    import fsspec

    fs, root = fsspec.core.url_to_fs(f"{base}/latents", **(storage_options or {}))
    found = sorted(p for p in fs.glob(f"{root}/*.parquet") if not p.rsplit("/", 1)[-1].startswith("."))
    if len(found) != 1:
        raise ChemlatentError(f"{base}/latents holds {len(found)} latents files: name one with model=")
    return f"{base.split('://', 1)[0]}://{found[0]}"
