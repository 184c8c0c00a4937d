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
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import torch

CPU_TILE = 256
CUDA_TILE = 8192

_start_lock = threading.Lock()


def _single_threaded() -> None:
    """Pool initializer: this thread's matrix products use one thread (OpenMP and MKL settings
    are per calling thread); the process-wide default is restored by :func:`tile_pool`."""
    torch.set_num_threads(1)


@contextmanager
def tile_pool(workers: int) -> Iterator[ThreadPoolExecutor]:
    """``workers`` single-threaded torch worker threads for one call; they end with it.

    Threads that ran torch stay known to the OpenMP runtime while they live, and with more of
    them than cores every later parallel region in the process (torch's own, scikit-learn's)
    hands its work over by sleeping instead of spinning: after one encode, a 3,000-star
    gradient-boosting fit took 4.5 s instead of 0.5 s. Starting two threads costs well under
    a millisecond against ~0.2 s for a block of 8,192 stars."""
    workers = max(1, int(workers))
    with _start_lock:
        before = torch.get_num_threads()
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="chemlatent-tile",
                                  initializer=_single_threaded)
        started = threading.Barrier(workers)
        # every worker starts (and runs its initializer) now, then the process gets its own
        # thread count back
        list(pool.map(lambda _: started.wait(), range(workers)))
        torch.set_num_threads(before)
    try:
        yield pool
    finally:
        pool.shutdown(wait=True)


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
    if x.device.type == "cpu":
        with tile_pool(workers if len(tiles) > 1 else 1) as pool:
            outs = list(pool.map(fn, tiles))
    else:
        outs = [fn(t) for t in tiles]
    return tuple(torch.cat(parts)[:n] for parts in zip(*outs))


def map_row_tiles(fn: Callable[[int, int], tuple[torch.Tensor, ...]], n: int, *, rows: int,
                  workers: int = 1) -> tuple[torch.Tensor, ...]:
    """``fn(a, b)`` for the row ranges [a, b) of ``rows`` rows (the last one shorter) that
    cover ``n`` rows, in ``workers`` single-threaded threads, outputs joined in order. ``fn``
    builds its own fixed-shape tile, so a block's inputs need never exist whole: features
    made, used and dropped per tile stay in the CPU's cache."""
    starts = range(0, n, rows)
    with tile_pool(workers if len(starts) > 1 else 1) as pool:
        outs = list(pool.map(lambda a: fn(a, min(a + rows, n)), starts))
    return tuple(torch.cat(parts) for parts in zip(*outs))


def default_workers() -> int:
    """Tile threads on CPU: the process's torch thread count (1 in a Dask worker)."""
    return max(1, torch.get_num_threads())
