"""Many users at once: N websocket sessions against one dashboard server.

    python benchmarks/load_test.py SURVEY_DIR --sessions 20 --seconds 60 [--json]

Starts ``chemlatent serve SURVEY_DIR --no-show`` in a subprocess (with ``PANEL_LOG_LEVEL=info``
so the server log names every session it creates and destroys, and ``--db`` in a temporary
directory so the survey directory is left untouched), then:

1. measures the server's resident memory (``VmRSS`` in ``/proc/PID/status``) once it listens;
2. unless ``--no-warmup``: opens one session, makes one box selection, one pick and one
   threshold change, closes it and waits until the server has discarded it (the first
   session compiles and caches what every later one reuses), and measures memory again;
3. opens ``--sessions`` sessions at once with ``bokeh.client.pull_session``, each in its own
   thread with its own event loop and document, waits until every page is ready (the map
   drawn with its first image, the controls and the selection, counts and spectrum texts
   there: "session ready", timed from the start of the pull, p50/p95 in the report), and then lets each
   one make a random mix of actions for ``--seconds`` seconds, one at a time with a random
   pause of 0.5 to 1.5 times ``--think`` seconds between them:

   * **select**: a box selection on the latent map, sent the way BokehJS sends it: a
     ``PATCH-DOC`` carrying a ``MessageSent`` ``bokeh_event`` whose data is a
     ``selectiongeometry`` event (``{"type": "rect", "x0", "x1", "y0", "y1"}``, ``final``)
     for the map figure (the one with a ``BoxSelectTool``). Answered when the selection text
     ("Selection: N of M stars") changes; N must equal the number of stars inside the box,
     counted here from the survey's latents table;
   * **pick**: sets the ``star_id`` input to a random star; answered when both the spectrum
     caption and the spectrum plot's title name that star;
   * **threshold**: moves one visible threshold slider (``value`` then ``value_throttled``,
     as a mouse release does); answered when the flag counts text changes and names the new
     threshold;

4. samples the server's memory every 0.25 s during the load (peak), closes every session,
   waits until the server log says every session was destroyed (Bokeh's default expiry:
   unused sessions are checked every 17 s and dropped 15 s after their last connection
   closed; ``--discard-timeout``), measures memory, then has the server count the
   ExplorerState / Dashboard / Document objects still alive and give free heap pages back to
   the system (``SERVER_BOOT``: a SIGUSR1 handler around the unchanged ``chemlatent serve``)
   and measures memory again.

Latency is the time from sending an action until the client document has received the
server's patch that answers it. Errors: sessions that fail to open or drop, actions not
answered within ``--timeout`` seconds, exceptions in the clients, and tracebacks and
``ERROR`` lines in the server log. Isolation: every session checks that its selection count
is exactly its own box's, that its counts text names its own threshold, and that its
selection, counts and spectrum texts never change unless it asked. Exit status 0 when there
were no errors and no isolation violations, every action was answered, and every session
was discarded with none of its state left alive; 1 otherwise. docs/load-test.md has the
details and measured figures.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import html
import json
import os
import random
import re
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
KINDS = ("select", "pick", "threshold")
X_AXIS, Y_AXIS = "z_fe", "z_c"  # the map's default axes (ExplorerState.x_axis / y_axis)
X_LABEL, Y_LABEL = "z_Fe", "z_C"
SERVER_ERROR = re.compile(r"Traceback|\bERROR\b|Exception")
SERVER_WARNING = re.compile(r"Warning|\bWARNING\b")
SESSION_LOG = re.compile(r"Session (\d+) (created|launching|destroyed)")


# --------------------------------------------------------------------------- server
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int, key: str = "VmRSS") -> float | None:
    """Resident memory of a process in MiB (``VmRSS``; ``VmHWM`` for its peak)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


# ``python -m chemlatent.app.cli ARGS`` plus a SIGUSR1 handler that prints how many
# ExplorerState, Dashboard and Bokeh Document objects are alive (after a gc.collect()): once
# every session is discarded there must be none left. It then asks glibc to give free heap
# pages back to the system (malloc_trim), so that memory freed but kept by the allocator can
# be told apart from memory still in use.
SERVER_BOOT = """
import collections, gc, os, runpy, signal, sys
from chemlatent.app.dashboard.memory import release_free_memory
TRACE = os.environ.get("CHEMLATENT_LOADTEST_CENSUS") == "1"
first = []
def census(signum, frame):
    gc.collect()
    objs = gc.get_objects()
    types = collections.Counter(type(o).__name__ for o in objs)
    n = {k: types.get(k, 0) for k in ("ExplorerState", "Dashboard", "Document")}
    release_free_memory()
    print("census: " + " ".join(f"{k}={v}" for k, v in n.items()), flush=True)
    if TRACE:  # what is alive now that was not at the first census, and Python's allocator
        if not first:
            first.append(types)
        else:
            diff = sorted(((v - first[0].get(k, 0), k) for k, v in types.items()), reverse=True)[:15]
            print("census types: " + ", ".join(f"{k} {d:+d}" for d, k in diff), flush=True)
        refs, dead = collections.Counter(), []
        for o in objs:
            if type(o).__name__ == "ReferenceType":
                target = o()
                refs[type(target).__name__ if target is not None else "(dead)"] += 1
                if target is None and len(dead) < 20:
                    dead.append(o)
        del objs  # not to be counted among the referrers below
        for o in dead:  # who keeps weak references whose objects are gone
            refs["dead, held by " + "/".join(sorted({type(r).__name__ for r in gc.get_referrers(o)}))] += 1
        print("census weakrefs: " + ", ".join(f"{k} {v}" for k, v in refs.most_common(12)), flush=True)
        sys._debugmallocstats()  # pymalloc arenas: allocated vs in use (to stderr, the same log)
signal.signal(signal.SIGUSR1, census)
sys.argv = ["chemlatent", *sys.argv[1:]]
runpy.run_module("chemlatent.app.cli", run_name="__main__", alter_sys=True)
"""
CENSUS = re.compile(r"census: ExplorerState=(\d+) Dashboard=(\d+) Document=(\d+)")


class Server:
    """``chemlatent serve DIR --no-show --port P`` in a subprocess, its log in a file."""

    def __init__(self, survey: Path, port: int, workdir: Path, python: str = sys.executable) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}/"
        self.log_path = workdir / "server.log"
        self.args = ["serve", str(survey), "--no-show", "--port", str(port), "--address", "127.0.0.1",
                     "--db", str(workdir)]
        self.cmd = [python, "-m", "chemlatent.app.cli", *self.args]  # what runs, less the census hook
        env = dict(os.environ, PANEL_LOG_LEVEL="info", PYTHONUNBUFFERED="1")
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen([python, "-c", SERVER_BOOT, *self.args], stdout=self._log,
                                     stderr=subprocess.STDOUT, env=env, cwd=ROOT)

    def census(self, timeout: float = 60.0) -> dict | None:
        """Live ExplorerState / Dashboard / Document objects in the server (None: no answer)."""
        before = len(CENSUS.findall(self.log_text()))
        self.proc.send_signal(signal.SIGUSR1)
        end = time.perf_counter() + timeout
        while time.perf_counter() < end:
            found = CENSUS.findall(self.log_text())
            if len(found) > before:
                return dict(zip(("ExplorerState", "Dashboard", "Document"), map(int, found[-1])))
            time.sleep(0.5)
        return None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def wait_listening(self, timeout: float) -> float:
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log_text()[-3000:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return time.perf_counter() - t0
            except OSError:
                time.sleep(0.5)
        raise RuntimeError(f"server not listening after {timeout:.0f} s:\n{self.log_text()[-3000:]}")

    def sessions(self) -> tuple[set[str], set[str]]:
        """(ids of sessions the server made, ids it destroyed), from its log."""
        made, gone = set(), set()
        for sid, what in SESSION_LOG.findall(self.log_text()):
            (gone if what == "destroyed" else made).add(sid)
        return made, gone

    def wait_discarded(self, timeout: float) -> tuple[bool, float]:
        """Wait until every session the server made is destroyed; (all gone, seconds)."""
        t0 = time.perf_counter()
        while True:
            made, gone = self.sessions()
            if made and made <= gone:
                return True, time.perf_counter() - t0
            if time.perf_counter() - t0 > timeout:
                return False, time.perf_counter() - t0
            time.sleep(0.5)

    def errors(self) -> list[str]:
        """One line per error in the log: a traceback's final ``SomeError: message`` line, or
        an ERROR / Exception line outside a traceback."""
        out, in_tb = [], False
        for ln in self.log_text().splitlines():
            if ln.startswith("Traceback"):
                in_tb = True
            elif in_tb:
                if ln and not ln[0].isspace() and not ln.startswith(("During handling", "The above")):
                    out.append(ln.strip()[:300])
                    in_tb = False
            elif SERVER_ERROR.search(ln):
                out.append(ln.strip()[:300])
        return out

    def warning_lines(self) -> list[str]:
        return [ln for ln in self.log_text().splitlines()
                if SERVER_WARNING.search(ln) and not SERVER_ERROR.search(ln)]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()


class MemorySampler(threading.Thread):
    """The server's RSS every ``period`` seconds; ``peak`` since the last ``reset``."""

    def __init__(self, pid: int, period: float = 0.25) -> None:
        super().__init__(daemon=True)
        self.pid, self.period = pid, period
        self.peak = 0.0
        self._stop = threading.Event()

    def reset(self) -> None:
        self.peak = rss_mb(self.pid) or 0.0

    def run(self) -> None:
        while not self._stop.wait(self.period):
            v = rss_mb(self.pid)
            if v is not None:
                self.peak = max(self.peak, v)

    def stop(self) -> None:
        self._stop.set()


# --------------------------------------------------------------------------- survey facts
@dataclass
class Truth:
    """What the clients need to know about the survey: star ids, and the map coordinates
    to count the stars inside a box exactly as the server does."""

    star_ids: np.ndarray
    x: np.ndarray
    y: np.ndarray
    lo: tuple[float, float]
    hi: tuple[float, float]

    @classmethod
    def load(cls, survey: Path) -> Truth:
        from chemlatent.io.latents import find_latents, read_latents

        lat = read_latents(find_latents(survey).path)
        x = lat[X_AXIS].to_numpy(np.float32)  # as SurveyData keeps them
        y = lat[Y_AXIS].to_numpy(np.float32)
        ids = lat["star_id"].to_numpy(np.int64)
        del lat
        ok = np.isfinite(x) & np.isfinite(y)
        lo = (float(np.percentile(x[ok], 1)), float(np.percentile(y[ok], 1)))
        hi = (float(np.percentile(x[ok], 99)), float(np.percentile(y[ok], 99)))
        return cls(ids, x, y, lo, hi)

    def count(self, bounds) -> int:
        from chemlatent.explore.selection import box_mask

        return int(np.count_nonzero(box_mask(self.x, self.y, bounds)))


# --------------------------------------------------------------------------- client
def import_panel_models() -> None:
    """The client must know Panel's Bokeh models (Tabulator, templates, ...) to read the
    server's document."""
    import importlib
    import pkgutil

    import panel.models as pm

    for m in pkgutil.iter_modules(pm.__path__):
        try:
            importlib.import_module(f"panel.models.{m.name}")
        except Exception:  # an optional model whose extra dependency is missing
            pass


def plain(text) -> str:
    """The visible text of a Panel Markdown model (escaped HTML)."""
    if not isinstance(text, str):
        return ""
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", html.unescape(text)))).strip()


def _ui_event(name: str, values: dict):
    """A Bokeh UI event serialised as BokehJS serialises it: ``{"type": "event", "name",
    "values"}`` with every field (Python's own ``SelectionGeometry`` only sends ``model``)."""
    from bokeh.core.serialization import Serializable

    class UIEvent(Serializable):
        def to_serializable(self, serializer):
            return {"type": "event", "name": name, "values": serializer.encode(values)}

    return UIEvent()


@dataclass
class Record:
    latencies: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in KINDS})
    sent: dict[str, int] = field(default_factory=lambda: {k: 0 for k in KINDS})
    errors: list[str] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    checks: int = 0
    open_s: float | None = None
    ready_s: float | None = None


class Client(threading.Thread):
    """One user: a websocket session with its own document, driven from its own loop."""

    def __init__(self, idx: int, url: str, truth: Truth, *, seconds: float, think: float, timeout: float,
                 weights: dict[str, float], start: threading.Barrier | None, seed: int,
                 plan: list[str] | None = None) -> None:
        super().__init__(name=f"client-{idx}", daemon=True)
        self.idx, self.url, self.truth = idx, url, truth
        self.seconds, self.think, self.timeout = seconds, think, timeout
        self.weights, self.start_barrier, self.plan = weights, start, plan
        self.rng = random.Random(seed * 1009 + idx)
        self.rec = Record()
        self.pending: str | None = None
        self.late: set[str] = set()
        self.session = None
        self._wake: asyncio.Event | None = None

    # -- set up ------------------------------------------------------------------
    def run(self) -> None:
        from bokeh.client import pull_session
        from tornado.ioloop import IOLoop

        loop = IOLoop()
        self.t0 = t0 = time.perf_counter()
        try:
            self.session = pull_session(url=self.url, io_loop=loop)
            self.rec.open_s = time.perf_counter() - t0
            self.doc = self.session.document
            # every model came from the server: without this the first patch that names a model
            # would carry its full definition (the server warns "reference already known")
            self.doc.models.flush_synced()
        except Exception as exc:
            self.rec.errors.append(f"session {self.idx}: could not open: {type(exc).__name__}: {exc}")
            if self.start_barrier is not None:
                self.start_barrier.abort()
            if self.session is not None:
                self.session.close()
            loop.close(all_fds=True)
            return
        self.doc.on_change(self._on_change)
        loop.add_callback(self._ready)
        loop.add_callback(self._drive)
        try:
            self.session._loop_until_closed()  # runs the loop (patches, our driver) until closed
        except Exception as exc:
            self.rec.errors.append(f"session {self.idx}: {type(exc).__name__}: {exc}")
        finally:
            loop.close(all_fds=True)

    async def _until_ready(self) -> None:
        """Wait until the page is usable: the map figure with its first image, the star_id
        input, the sliders and the selection, counts and spectrum texts (parts the server
        adds after ``document_ready`` arrive as patches). Records ``ready_s``, the time from
        the start of the pull."""
        end = time.perf_counter() + self.timeout
        while True:
            try:
                self._find_models()
                if self._map_drawn():
                    break
                why = "the map has no image"
            except RuntimeError as exc:
                why = str(exc)
            if time.perf_counter() > end:
                raise RuntimeError(f"page not ready in {self.timeout:.0f} s: {why}")
            await asyncio.sleep(0.02)
        self.rec.ready_s = time.perf_counter() - self.t0

    def _map_drawn(self) -> bool:
        from bokeh.models import Image

        return any(isinstance(getattr(r, "glyph", None), Image) and len(r.data_source.data.get("image", ()))
                   for r in self.map.renderers)

    def _ready(self) -> None:
        """Tell the server the page is ready, as BokehJS does once it has rendered the
        document. Panel counts a session as connected only after this ``document_ready``
        event; until then HoloViews re-schedules every plot refresh, forever."""
        from bokeh.events import DocumentReady

        self.doc.callbacks.send_event(DocumentReady())

    def _find_models(self) -> None:
        from bokeh.models import BoxSelectTool, Plot, Slider, Title

        models = list(self.doc.models)
        maps = [m for m in models if isinstance(m, Plot)
                and any(isinstance(t, BoxSelectTool) for t in m.toolbar.tools)]
        if len(maps) != 1:
            raise RuntimeError(f"expected one map figure with a box-select tool, found {len(maps)}")
        self.map = maps[0]
        xl, yl = (getattr(a[0], "axis_label", None) if a else None for a in (self.map.below, self.map.left))
        self.exact = (xl, yl) == (X_LABEL, Y_LABEL)
        stars = [m for m in models if getattr(m, "title", None) == "star_id" and hasattr(m, "value")]
        if len(stars) != 1:
            raise RuntimeError(f"expected one star_id input, found {len(stars)}")
        self.star_input = stars[0]
        self.sliders = [m for m in models if isinstance(m, Slider)]
        self.text_models: dict[str, object] = {}
        for m in models:
            t = plain(getattr(m, "text", None)) if not isinstance(m, Title) else ""
            if t.startswith("Selection:"):
                self.text_models["select"] = m
            elif re.match(r"^[\d,]+ flagged of", t) or t.startswith("No rule"):
                self.text_models["threshold"] = m
            elif t.startswith("Click a star") or re.match(r"^star \d+ \(survey row", t):
                self.text_models["pick"] = m
        missing = set(KINDS) - set(self.text_models)
        if missing:
            raise RuntimeError(f"page texts not found: {sorted(missing)}")
        self._by_id = {m.id: k for k, m in self.text_models.items()}

    def text(self, kind: str) -> str:
        return plain(self.text_models[kind].text)

    def sel_count(self) -> int | None:
        m = re.match(r"Selection: ([\d,]+) of", self.text("select"))
        return int(m.group(1).replace(",", "")) if m else None

    def _titles(self) -> list[str]:
        from bokeh.models import Title

        return [m.text for m in self.doc.models if isinstance(m, Title) and isinstance(m.text, str)]

    # -- patches from the server -------------------------------------------------------
    def _on_change(self, event) -> None:
        model = getattr(event, "model", None)
        if (model is not None and hasattr(self, "_by_id") and getattr(event, "attr", None) == "text"
                and event.setter is self.session):
            kind = self._by_id.get(model.id)
            if kind is not None and kind != self.pending:
                if kind in self.late:  # the answer to an action that timed out
                    self.late.discard(kind)
                else:
                    self.rec.violations.append(
                        f"session {self.idx}: its {kind} text changed without its asking: "
                        f"{plain(event.new)[:80]!r}")
        if self._wake is not None:
            self._wake.set()

    async def _wait(self, pred, timeout: float) -> bool:
        end = time.perf_counter() + timeout
        while True:
            if pred():
                return True
            left = end - time.perf_counter()
            if left <= 0:
                return False
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), left)
            except asyncio.TimeoutError:
                pass

    def _answered(self, kind: str, t0: float, ok: bool, what: str) -> bool:
        if ok:
            self.rec.latencies[kind].append(time.perf_counter() - t0)
        else:
            self.rec.errors.append(f"session {self.idx}: {kind} {what} not answered in {self.timeout:.0f} s")
            self.late.add(kind)
        self.pending = None
        return ok

    # -- actions -----------------------------------------------------------------
    async def select(self) -> None:
        tr = self.truth
        old = self.sel_count()
        for _ in range(50):
            w = [self.rng.uniform(0.05, 0.6) * (h - lo) for lo, h in zip(tr.lo, tr.hi)]
            x0 = self.rng.uniform(tr.lo[0], tr.hi[0] - w[0])
            y0 = self.rng.uniform(tr.lo[1], tr.hi[1] - w[1])
            bounds = (x0, y0, x0 + w[0], y0 + w[1])
            expected = tr.count(bounds)
            if expected > 0 and expected != old:
                break
        geometry = {"type": "rect", "x0": bounds[0], "x1": bounds[2], "y0": bounds[1], "y1": bounds[3]}
        event = _ui_event("selectiongeometry", {"model": self.map, "geometry": geometry, "final": True})
        self.pending = "select"
        self.rec.sent["select"] += 1
        t0 = time.perf_counter()
        self.doc.callbacks.send_event(event)
        ok = await self._wait(lambda: self.sel_count() != old, self.timeout)
        if self._answered("select", t0, ok, f"of box {tuple(round(b, 3) for b in bounds)}") and self.exact:
            self.rec.checks += 1
            got = self.sel_count()
            if got != expected:
                self.rec.violations.append(f"session {self.idx}: box {tuple(round(b, 3) for b in bounds)} "
                                           f"holds {expected:,} stars but its page says {got}")

    async def pick(self) -> None:
        cur = self.star_input.value
        sid = cur
        while sid == cur:
            sid = int(self.truth.star_ids[self.rng.randrange(len(self.truth.star_ids))])

        def shown() -> bool:
            return (self.text("pick").startswith(f"star {sid} ")
                    and any(t.startswith(f"star {sid}:") for t in self._titles()))

        self.pending = "pick"
        self.rec.sent["pick"] += 1
        t0 = time.perf_counter()
        self.star_input.value = sid
        self._answered("pick", t0, await self._wait(shown, self.timeout), f"of star {sid}")

    async def threshold(self) -> None:
        sliders = [s for s in self.sliders if s.visible]
        if not sliders:
            raise RuntimeError("no visible threshold slider")
        s = self.rng.choice(sliders)
        step = s.step or 0.1
        n = int(round((s.end - s.start) / step))
        v = s.value
        while abs(v - s.value) < step / 2:
            v = round(s.start + step * self.rng.randint(0, n), 6)
        old = self.text("threshold")
        # the rule names a sigma cut as "+2.5 sigma" and a dex cut as "[Fe/H] < -2.4"
        label = (re.escape(f"{v:g} sigma") if "sigma" in (s.title or "")
                 else rf"[<>] \+?{re.escape(f'{v:g}')}(?![\d.])")

        def answered() -> bool:
            t = self.text("threshold")
            return t != old and re.search(label, t) is not None

        self.pending = "threshold"
        self.rec.sent["threshold"] += 1
        t0 = time.perf_counter()
        s.value = v
        s.set_from_json("value_throttled", v)  # read-only in Python; BokehJS sets it on release
        ok = await self._wait(answered, self.timeout)
        if self._answered("threshold", t0, ok, f"{s.title!r} = {v:g}"):
            self.rec.checks += 1

    async def _drive(self) -> None:
        self._wake = asyncio.Event()
        try:
            try:
                await self._until_ready()
            except RuntimeError as exc:
                self.rec.errors.append(f"session {self.idx}: {exc}")
                if self.start_barrier is not None:
                    self.start_barrier.abort()
                return
            if self.start_barrier is not None:
                await asyncio.get_running_loop().run_in_executor(None, self.start_barrier.wait)
            kinds, w = list(self.weights), list(self.weights.values())
            end = time.perf_counter() + self.seconds
            plan = list(self.plan) if self.plan is not None else None
            while (plan if plan is not None else time.perf_counter() < end):
                kind = plan.pop(0) if plan is not None else self.rng.choices(kinds, w)[0]
                await getattr(self, kind)()
                if not self.session.connected:
                    self.rec.errors.append(f"session {self.idx}: connection lost")
                    return
                await asyncio.sleep(self.think * self.rng.uniform(0.5, 1.5))
        except threading.BrokenBarrierError:
            self.rec.errors.append(f"session {self.idx}: not started (another session failed to open)")
        except Exception as exc:
            self.rec.errors.append(f"session {self.idx}: {type(exc).__name__}: {exc}")
        finally:
            self.pending = None
            self.session.close()


def run_clients(url: str, truth: Truth, n: int, *, seconds: float, think: float, timeout: float,
                weights: dict[str, float], seed: int, plan: list[str] | None = None) -> list[Client]:
    barrier = threading.Barrier(n) if n > 1 else None
    clients = [Client(i, url, truth, seconds=seconds, think=think, timeout=timeout, weights=weights,
                      start=barrier, seed=seed, plan=plan) for i in range(n)]
    for c in clients:
        c.start()
    for c in clients:
        c.join()
    return clients


# --------------------------------------------------------------------------- report
def stats(seconds: list[float], unit: str = "ms") -> dict:
    """n, p50, p95 and max of durations given in seconds, in ``unit`` (ms or s)."""
    if not seconds:
        return {"n": 0}
    a = np.asarray(seconds) * (1000 if unit == "ms" else 1)
    nd = 1 if unit == "ms" else 2
    return {"n": int(a.size), **{f"{k}_{unit}": round(float(v), nd) for k, v in (
        ("p50", np.percentile(a, 50)), ("p95", np.percentile(a, 95)), ("max", a.max()))}}


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process (``/proc/PID/stat``)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def loadavg() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def run(args) -> dict:
    survey = Path(args.survey).resolve()
    weights = dict(zip(KINDS, (float(w) for w in args.mix.split(","))))
    import_panel_models()
    t0 = time.perf_counter()
    truth = Truth.load(survey)
    out: dict = {"command": " ".join(shlex.quote(a) for a in [Path(sys.executable).name, *sys.argv]),
                 "survey": str(survey), "n_stars": int(truth.star_ids.size), "sessions": args.sessions,
                 "seconds": args.seconds, "think_s": args.think, "timeout_s": args.timeout, "mix": weights,
                 "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="cl-load-") as tmp:
        server = Server(survey, args.port or free_port(), Path(tmp), python=args.python)
        out["server_command"] = " ".join(shlex.quote(a) for a in server.cmd)
        sampler = MemorySampler(server.pid)
        try:
            out["server_start_s"] = round(server.wait_listening(args.start_timeout), 1)
            time.sleep(1.0)
            sampler.start()
            rss = {"listening": rss_mb(server.pid)}
            if not args.no_warmup:
                w = run_clients(server.url, truth, 1, seconds=0, think=0.0, timeout=args.timeout,
                                weights=weights, seed=args.seed + 7, plan=list(KINDS))
                warm_errors = [f"warm-up {e}" for e in w[0].rec.errors]
                out["warmup"] = {"errors": warm_errors, "open_s": w[0].rec.open_s,
                                 "ready_s": w[0].rec.ready_s}
                ok, secs = server.wait_discarded(args.discard_timeout)
                out["warmup"]["discarded"], out["warmup"]["discard_wait_s"] = ok, round(secs, 1)
                time.sleep(1.0)
                rss["after_warmup"] = rss_mb(server.pid)
                out["warmup"]["alive_after"] = server.census()
                rss["after_warmup_trim"] = rss_mb(server.pid)
            made_before = len(server.sessions()[0])
            out["loadavg_before"] = loadavg()
            rss["before"] = rss_mb(server.pid)
            clients: list[Client] = []
            out["rounds"] = []
            peak = 0.0
            for rnd in range(args.rounds):
                sampler.reset()
                t_load = time.perf_counter()
                cpu0, own0 = cpu_seconds(server.pid), time.process_time()
                clients += run_clients(server.url, truth, args.sessions, seconds=args.seconds,
                                       think=args.think, timeout=args.timeout, weights=weights,
                                       seed=args.seed + 1000 * rnd)
                peak = max(peak, sampler.peak)
                cpu1 = cpu_seconds(server.pid)
                rd = {"wall_s": round(time.perf_counter() - t_load, 1), "loadavg": loadavg(),
                      "peak_mb": round(sampler.peak, 1),
                      "server_cpu_s": round(cpu1 - cpu0, 1) if None not in (cpu0, cpu1) else None,
                      "clients_cpu_s": round(time.process_time() - own0, 1)}
                if args.discard_timeout > 0:
                    ok, secs = server.wait_discarded(args.discard_timeout)
                    time.sleep(2.0)
                    rd.update(discarded=ok, discard_wait_s=round(secs, 1),
                              after_mb=round(rss_mb(server.pid) or 0, 1), alive_after=server.census())
                    rd["after_trim_mb"] = round(rss_mb(server.pid) or 0, 1)
                out["rounds"].append(rd)
            out["loadavg_after"] = out["rounds"][-1]["loadavg"]
            rss["peak"] = peak
            out["server_sessions_made"] = len(server.sessions()[0]) - made_before
            if args.discard_timeout > 0:
                out["sessions_discarded"] = all(rd["discarded"] for rd in out["rounds"])
                out["discard_wait_s"] = max(rd["discard_wait_s"] for rd in out["rounds"])
                rss["after"] = out["rounds"][-1]["after_mb"]
                rss["after_trim"] = out["rounds"][-1]["after_trim_mb"]
                out["alive_after"] = out["rounds"][-1]["alive_after"]
            rss["hwm"] = rss_mb(server.pid, "VmHWM")
            server_errors = server.errors()
            out["server_warning_lines"] = server.warning_lines()[:20]
            out["server_alive"] = server.proc.poll() is None
        finally:
            sampler.stop()
            server.stop()
            if args.server_log:
                Path(args.server_log).write_text(server.log_text())
    recs = [c.rec for c in clients]
    lat = {k: stats([v for r in recs for v in r.latencies[k]]) for k in KINDS}
    lat["all"] = stats([v for r in recs for k in KINDS for v in r.latencies[k]])
    sent = {k: sum(r.sent[k] for r in recs) for k in KINDS}
    answered = sum(len(r.latencies[k]) for r in recs for k in KINDS)
    client_errors = out.get("warmup", {}).get("errors", []) + [e for r in recs for e in r.errors]
    violations = [v for r in recs for v in r.violations]
    out.update({
        "open": stats([r.open_s for r in recs if r.open_s is not None], "s"),
        "ready": stats([r.ready_s for r in recs if r.ready_s is not None], "s"),
        "latency": lat, "sent": sent, "sent_total": sum(sent.values()), "answered": answered,
        "actions_per_s": round(answered / (args.seconds * args.rounds), 2) if args.seconds else None,
        "errors": len(client_errors) + len(server_errors) + (0 if out.get("server_alive") else 1),
        "client_errors": client_errors[:50], "server_errors": len(server_errors),
        "server_error_kinds": dict(collections.Counter(server_errors).most_common(20)),
        "isolation": {"checks": sum(r.checks for r in recs), "violations": len(violations),
                      "details": violations[:50], "exact_counts": all(c.exact for c in clients
                                                                      if hasattr(c, "exact"))},
        "rss_mb": {k: (round(v, 1) if v is not None else None) for k, v in rss.items()},
        "total_wall_s": round(time.perf_counter() - t0, 1),
    })
    if rss.get("after") is not None and rss.get("before") is not None:
        out["rss_growth_mb"] = round(rss["after"] - rss["before"], 1)
        out["rss_growth_trimmed_mb"] = round(rss["after_trim"] - rss["before"], 1)
    alive = out.get("alive_after")
    out["leaked_sessions"] = None if alive is None else alive["ExplorerState"]
    freed = args.discard_timeout <= 0 or (out["sessions_discarded"] and out["leaked_sessions"] == 0)
    out["ok"] = out["errors"] == 0 and not violations and answered == out["sent_total"] and freed
    return out


def print_report(r: dict) -> None:
    rounds = f" x {len(r['rounds'])} rounds" if len(r["rounds"]) > 1 else ""
    print(f"{r['sessions']} sessions x {r['seconds']:g} s{rounds}, {r['n_stars']:,} stars, think "
          f"{r['think_s']} s, {r['cpus']} CPUs")
    print(f"server: {r['server_command']}")
    o = r["open"]
    print(f"server listening after {r['server_start_s']} s; sessions opened ({r['sessions']} at once) in p50 "
          f"{o.get('p50_s')} s, p95 {o.get('p95_s')} s, max {o.get('max_s')} s")
    rd = r["ready"]
    print(f"session ready (map drawn, texts and controls there; {rd.get('n')} of {r['sessions']} x "
          f"{len(r['rounds'])}): p50 {rd.get('p50_s')} s, p95 {rd.get('p95_s')} s, max {rd.get('max_s')} s")
    print(f"load average before {r['loadavg_before']}, after {r['loadavg_after']}")
    for i, rd in enumerate(r["rounds"], 1):
        print(f"round {i}: {rd['wall_s']} s from the first open to the last close; CPU seconds: server "
              f"{rd['server_cpu_s']}, load-test clients {rd['clients_cpu_s']}")
    print(f"{'action':<10} {'n':>6} {'p50 ms':>9} {'p95 ms':>9} {'max ms':>9}")
    for k, st in r["latency"].items():
        cells = [st.get(f"{q}_ms", "-") for q in ("p50", "p95", "max")]
        print(f"{k:<10} {st['n']:>6} {cells[0]:>9} {cells[1]:>9} {cells[2]:>9}")
    print(f"sent {r['sent_total']} actions, answered {r['answered']} ({r['actions_per_s']} per s)")
    print(f"errors: {r['errors']} ({len(r['client_errors'])} in the clients, {r['server_errors']} in the "
          f"server log; server alive: {r['server_alive']})")
    for e in r["client_errors"][:10]:
        print(f"  {e}")
    for e, n in r["server_error_kinds"].items():
        print(f"  {n} x server: {e}")
    iso = r["isolation"]
    print(f"isolation: {iso['checks']} checks, {iso['violations']} violations"
          + ("" if iso["exact_counts"] else " (map axes not z_Fe/z_C: box counts not checked)"))
    for v in iso["details"][:10]:
        print(f"  {v}")
    print("server RSS (MiB): " + ", ".join(f"{k} {v}" for k, v in r["rss_mb"].items()))
    if len(r["rounds"]) > 1:
        print("after each round (MiB; then after malloc_trim): "
              + ", ".join(f"{rd.get('after_mb')} ({rd.get('after_trim_mb')})" for rd in r["rounds"]))
    if "sessions_discarded" in r:
        print(f"every session discarded by the server: {r['sessions_discarded']} (within "
              f"{r['discard_wait_s']} s of closing); after minus before: {r.get('rss_growth_mb')} MiB, "
              f"{r.get('rss_growth_trimmed_mb')} MiB once glibc gave free pages back (malloc_trim)")
        print(f"alive in the server after that (after gc.collect()): {r.get('alive_after')}")
    print("OK" if r["ok"] else "FAILED")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("survey", help="an encoded survey directory (with latents/)")
    p.add_argument("--sessions", type=int, default=20, help="concurrent sessions (default 20)")
    p.add_argument("--seconds", type=float, default=60.0, help="seconds of actions per session (default 60)")
    p.add_argument("--think", type=float, default=1.0,
                   help="mean pause between a session's actions, seconds (default 1)")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for an answer (default 60)")
    p.add_argument("--mix", default="4,3,3", help="weights of select,pick,threshold (default 4,3,3)")
    p.add_argument("--port", type=int, default=0, help="server port (default: a free one)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rounds", type=int, default=1,
                   help="repeat the load this many times on the same server, measuring memory after "
                        "each (default 1): growth from round to round is a leak, not a high-water mark")
    p.add_argument("--no-warmup", action="store_true", help="skip the single warm-up session")
    p.add_argument("--start-timeout", type=float, default=900.0, help="seconds for the server to start")
    p.add_argument("--discard-timeout", type=float, default=120.0,
                   help="seconds to wait for the server to discard closed sessions; 0: do not wait "
                        "(no memory-after figure)")
    p.add_argument("--python", default=sys.executable, help="interpreter that runs the server")
    p.add_argument("--server-log", default=None, help="keep the server's log in this file")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument("--census", action="store_true",
                   help="at each census also log the object types that grew since the first one "
                        "and Python's allocator statistics (see --server-log)")
    args = p.parse_args(argv)
    if args.census:
        os.environ["CHEMLATENT_LOADTEST_CENSUS"] = "1"
    # Bokeh's Python client works through queued messages by recursion, a few frames per
    # message: a client thread that fell behind needs more depth and stack than the defaults
    # (a browser does not work this way)
    sys.setrecursionlimit(200_000)
    threading.stack_size(512 * 1024 * 1024)
    r = run(args)
    if args.json:
        print(json.dumps(r, indent=1))
    else:
        print_report(r)
    return 0 if r["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
