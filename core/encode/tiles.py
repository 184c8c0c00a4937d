"""Batch-invariant model evaluation: every matrix product runs on a tile of fixed shape.

A matrix library picks its kernel, its blocking and its split across threads from the
shape of the product and the number of threads. On some CPUs (bf16 with AMX, for example)
different kernels round differently, so a star's latents would depend on how many other
stars shared its batch. Here every batch is cut into tiles of exactly ``rows`` rows (the
last one padded with zeros), and on CPU each tile runs single-threaded in a small pool of
worker threads. A row's result then depends only on that row, the model and the CPU's
kernels: not on its neighbours, the chunk size, ``--ids``, Dask partitions or the number
of threads (docs/model.md, "Batch invariance").
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import torch

CPU_TILE = 256
CUDA_TILE = 8192

_pools: dict[int, ThreadPoolExecutor] = {}
_pools_lock = threading.Lock()


def _single_threaded() -> None:
    """Pool initializer: this thread's matrix products use one thread (OpenMP and MKL settings
    are per calling thread); the process-wide default is restored by :func:`tile_pool`."""
    torch.set_num_threads(1)


def tile_pool(workers: int) -> ThreadPoolExecutor:
    """A shared pool of ``workers`` single-threaded torch worker threads."""
    workers = max(1, int(workers))
    with _pools_lock:
        pool = _pools.get(workers)
        if pool is None:
            before = torch.get_num_threads()
            pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="chemlatent-tile",
                                      initializer=_single_threaded)
            # start every worker now, then give the process its own thread count back
            list(pool.map(lambda _: None, range(workers * 4)))
            torch.set_num_threads(before)
            _pools[workers] = pool
        return pool


def pad_rows(x: torch.Tensor, rows: int) -> torch.Tensor:
    """``x`` with zero rows appended up to a multiple of ``rows``."""
    extra = -x.shape[0] % rows
    if not extra:
        return x
    return torch.cat([x, x.new_zeros((extra, *x.shape[1:]))])


def map_tiles(fn: Callable[[torch.Tensor], tuple[torch.Tensor, ...]], x: torch.Tensor, *,
              rows: int, workers: int = 1) -> tuple[torch.Tensor, ...]:
    """``fn`` applied to fixed-shape tiles of ``x`` (``rows`` rows each), outputs re-joined
    and cut back to ``x``'s rows. On CPU the tiles run in ``workers`` single-threaded threads."""
    n = x.shape[0]
    if n == 0:
        return fn(x[:0])
    tiles = list(pad_rows(x, rows).split(rows))
    if x.device.type == "cpu" and workers > 1 and len(tiles) > 1:
        outs = list(tile_pool(workers).map(fn, tiles))
    elif x.device.type == "cpu":
        outs = list(tile_pool(1).map(fn, tiles))
    else:
        outs = [fn(t) for t in tiles]
    return tuple(torch.cat(parts)[:n] for parts in zip(*outs))


def default_workers() -> int:
    """Tile threads on CPU: the process's torch thread count (1 in a Dask worker)."""
    return max(1, torch.get_num_threads())
