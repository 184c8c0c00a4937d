"""Reusable arrays for streams of equally shaped blocks.

A block of 4,096 stars is ~52 MB of raw arrays. Allocated afresh for every block, each one
is new memory the kernel must fault in and zero: on a 2-core machine that was ~20 % of an
encode's time (``clear_page`` in a profile). Blocks whose arrays go back to a pool once used
touch the same memory again instead.
"""

from __future__ import annotations

import threading
from collections import defaultdict

import numpy as np


class BufferPool:
    """Arrays handed out by shape and dtype, and taken back for reuse once their user is done.

    Only give back an array nothing else still reads or writes; the pool never holds more
    arrays than were out at the same time."""

    def __init__(self) -> None:
        self._free: dict[tuple, list[np.ndarray]] = defaultdict(list)
        self._lock = threading.Lock()

    def take(self, shape: tuple[int, ...], dtype) -> np.ndarray:
        """An uninitialised array of ``shape`` and ``dtype`` (a returned one where possible)."""
        key = (tuple(int(s) for s in shape), np.dtype(dtype).str)
        with self._lock:
            if self._free[key]:
                return self._free[key].pop()
        return np.empty(key[0], dtype=np.dtype(dtype))

    def give(self, *arrays: np.ndarray | None) -> None:
        """Take arrays back (``None`` and arrays that are views of others are ignored)."""
        with self._lock:
            for a in arrays:
                if isinstance(a, np.ndarray) and a.base is None and a.flags.c_contiguous:
                    self._free[(a.shape, a.dtype.str)].append(a)
