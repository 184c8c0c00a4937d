"""Give memory back to the system when browser sessions close (Linux/glibc; no-op elsewhere).

A session's plots, tables and masks are freed when it closes, but glibc keeps freed heap for
reuse, and by default it moves large blocks (a survey-sized numpy array) from ``mmap`` into
the heap once some have been freed, where holes pin them. The server therefore fixes the
``mmap`` threshold (blocks of 1 MiB and more are always mapped and unmapped on free) and
trims the heap after each session ends. docs/load-test.md has the measurements.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
import threading

log = logging.getLogger("chemlatent.memory")
M_MMAP_THRESHOLD = -3  # mallopt parameter numbers from glibc's malloc.h
MMAP_THRESHOLD_BYTES = 1 << 20


def _libc():
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        libc = ctypes.CDLL(name)
        return libc if hasattr(libc, "malloc_trim") and hasattr(libc, "mallopt") else None
    except OSError:
        return None


_LIBC = _libc()


def tune_allocator() -> bool:
    """Always ``mmap`` blocks of 1 MiB and more (large arrays go back to the system when
    freed). True when the C library took the setting."""
    if _LIBC is None:
        return False
    return bool(_LIBC.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))


def release_free_memory() -> bool:
    """Return freed heap pages to the system (glibc ``malloc_trim``); True if any were."""
    if _LIBC is None:
        return False
    return bool(_LIBC.malloc_trim(0))


class TrimAfterSessions:
    """Collect garbage and trim the heap a little after sessions end (once for a burst).
    ``schedule(delay_s, fn)`` runs ``fn`` later (default: a daemon timer thread)."""

    def __init__(self, delay_s: float = 3.0, schedule=None) -> None:
        self.delay_s = delay_s
        self._schedule = schedule or _timer
        self._pending = False
        self._lock = threading.Lock()

    def session_ended(self, session_context) -> None:  # the signature Bokeh requires
        with self._lock:
            if self._pending:
                return
            self._pending = True
        self._schedule(self.delay_s, self._run)

    def _run(self) -> None:
        with self._lock:
            self._pending = False
        gc.collect()
        release_free_memory()


def _timer(delay_s: float, fn) -> None:
    t = threading.Timer(delay_s, fn)
    t.daemon = True
    t.start()
