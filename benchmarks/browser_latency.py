"""What a user waits for, measured in a real browser: Chromium (playwright) against
``chemlatent serve``.

    python benchmarks/browser_latency.py SURVEY_DIR --repeats 20 [--json]

Starts ``python -m chemlatent.app.cli serve SURVEY_DIR --no-show`` (annotations in a temporary
directory), opens the page in /usr/bin/chromium and times, ``--repeats`` times each:

* **page open -> map drawn**: from ``goto`` until BokehJS reports the document idle (every
  view rendered, the map's first image included);
* **box: mouse-up -> count updated**: a box dragged on the map, from the mouse release
  until the "Selection: N of M stars" text changes;
* **lasso: mouse-up -> count updated**: the same with a 12-point lasso;
* between gestures the page is left 0.8 s to finish drawing (the counts come first, the
  selected or flagged stars a moment later: a user looks before the next gesture);
* a lasso or tap that changes nothing (around no stars or as many as before, a tap on empty
  sky: the page is right to do nothing) is a *miss*: counted, and another gesture drawn;
* **tap -> spectrum drawn**: a click on a star, until the spectrum caption names it;
* **slider -> counts updated**: the element-cut slider dragged and released, until the
  flag counts text changes;
* **lasso mouse-move with N flagged stars**: the page opened with thresholds that flag at
  least ``--flagged`` stars (the map draws at most 20,000 of them), then the time each of 20
  mouse moves of a lasso takes in the browser (playwright returns once the page has
  handled the event).

Also records every request the page makes and reports those that leave 127.0.0.1 (an
air-gapped page makes none). Prints a table of p50/p95 (ms), or JSON with ``--json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]

# find an element by CSS class through every shadow root (Panel renders into shadow DOM)
WALK = """(root, cls) => {
    const hit = root.querySelector('.' + cls)
    if (hit) return hit
    for (const el of root.querySelectorAll('*')) {
      if (el.shadowRoot) { const f = walk(el.shadowRoot, cls); if (f) return f }
    }
    return null
  }"""
DEEP_TEXT = """(cls) => {
  const walk = WALK_FN
  const el = walk(document, cls)
  return el ? (el.shadowRoot || el).textContent : null
}""".replace("WALK_FN", WALK)
# wait until that element's text differs from ``before`` (checked on every animation frame)
WAIT_CHANGE = """([cls, before, pattern, timeout]) => new Promise((resolve) => {
  const walk = WALK_FN
  let el = null
  const t0 = performance.now()
  const tick = () => {
    el = (el && el.isConnected) ? el : walk(document, cls)
    const text = el ? (el.shadowRoot || el).textContent : null
    if (text != null && text !== before && (!pattern || new RegExp(pattern).test(text))) {
      resolve(performance.now() - t0)
    } else if (performance.now() - t0 > timeout) {
      resolve(-1)
    } else {
      requestAnimationFrame(tick)
    }
  }
  tick()
})""".replace("WALK_FN", WALK)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stats(values: list[float]) -> dict:
    v = np.asarray([x for x in values if x >= 0], float)
    if not v.size:
        return {"n": 0, "failed": len(values)}
    return {"n": int(v.size), "failed": len(values) - int(v.size),
            "p50_ms": round(float(np.percentile(v, 50)), 1), "p95_ms": round(float(np.percentile(v, 95)), 1),
            "max_ms": round(float(v.max()), 1)}


class Server:
    def __init__(self, survey: str, port: int, db: str) -> None:
        self.port = port
        cmd = [sys.executable, "-m", "chemlatent.app.cli", "serve", survey, "--no-show", "--port", str(port),
               "--address", "127.0.0.1", "--db", db]
        self.log = tempfile.NamedTemporaryFile("w+", suffix=".log", delete=False)
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 600
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"server exited: {Path(self.log.name).read_text()[-2000:]}") from None
                time.sleep(0.5)
        raise RuntimeError("server did not start")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def _open(browser, url: str, requests: list[str]):
    """A new page at ``url``; returns (page, ms until the document is idle and the map drawn)."""
    ctx = browser.new_context(viewport={"width": 1600, "height": 1100})
    pg = ctx.new_page()
    pg.set_default_timeout(120_000)
    pg.on("request", lambda r: requests.append(r.url))
    t0 = time.perf_counter()
    pg.goto(url)
    pg.wait_for_function(f"""(cls) => window.Bokeh && Bokeh.documents.length > 0 &&
                             Bokeh.documents.every((d) => d.is_idle) && ({DEEP_TEXT})(cls) != null""",
                         arg="cl-selection", timeout=120_000, polling=20)
    ms = (time.perf_counter() - t0) * 1000
    return ctx, pg, ms


def _text(pg, cls: str) -> str:
    return pg.evaluate(DEEP_TEXT, cls) or ""


def _timed(pg, cls: str, action, pattern: str = "", timeout_ms: int = 15000) -> float:
    """Do ``action`` (which ends with the mouse release/click) and return ms until ``cls`` changes
    (-1: no change within ``timeout_ms``)."""
    before = _text(pg, cls)
    action()
    ms = float(pg.evaluate(WAIT_CHANGE, [cls, before, pattern, timeout_ms]))
    print(f"{cls}: {ms:.0f} ms", file=sys.stderr, flush=True)
    pg.wait_for_timeout(SETTLE_MS)  # a user's pause: the stars drawn after the count are done
    return ms


def _timed_gesture(pg, cls: str, make_action, pattern: str, misses: list, tries: int = 5) -> float:
    """Like :func:`_timed`, for gestures that may land where there is nothing to change (a tap
    on empty sky, a lasso around no stars, or around exactly as many as before): such a miss
    (no change within 3 s, the page answering correctly) is counted in ``misses`` and another
    gesture is drawn, up to ``tries`` times."""
    for _ in range(tries):
        ms = _timed(pg, cls, make_action(), pattern, timeout_ms=3000)
        if ms >= 0:
            return ms
        misses.append(1)
    return -1.0


SELECTION = r"Selection: [\d,]+ of"
SETTLE_MS = 800  # between gestures: the page has drawn the selected/flagged stars of the last one


def _mapper(pg):
    """(fraction across, fraction down) of the map -> page coordinates."""
    box = pg.locator(".cl-map").first.bounding_box()
    return lambda fx, fy: (box["x"] + box["width"] * fx, box["y"] + box["height"] * fy)


def _drag(pg, points) -> None:
    """Press at the first point, move through the others, release."""
    pg.mouse.move(*points[0])
    pg.mouse.down()
    for p in points[1:]:
        pg.mouse.move(*p, steps=2)
    pg.mouse.up()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("survey")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--flagged", type=int, default=20_000, help="flagged stars for the lasso mouse-move test")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--chromium", default=CHROMIUM)
    args = ap.parse_args(argv)

    from playwright.sync_api import sync_playwright

    from chemlatent.explore.state import ExplorerState
    from chemlatent.explore.survey import SurveyData

    # thresholds that flag at least --flagged stars (for the lasso mouse-move test)
    data = SurveyData(args.survey, load_model=False)
    probe = ExplorerState(data)
    flag_query = ""
    for s in (3.0, 2.0, 1.5, 1.0, 0.7, 0.5):
        for fe in (1.0, 0.5, 0.0):
            probe.param.update(element_sigma=s, fe_sigma=fe)
            if probe.n_flagged >= args.flagged:
                flag_query = f"?element_sigma={s}&fe_sigma={fe}"
                break
        if flag_query:
            break
    n_flagged = probe.n_flagged
    x, y = probe.xy
    del probe

    port = _free_port()
    tmp = tempfile.mkdtemp(prefix="browser-latency-")
    server = Server(args.survey, port, os.path.join(tmp, "ann.sqlite"))
    url = f"http://127.0.0.1:{port}/"
    requests: list[str] = []
    res: dict[str, list[float]] = {k: [] for k in ("page_open", "box", "lasso", "tap", "slider",
                                                   "lasso_move")}
    misses: dict[str, list] = {"lasso": [], "tap": []}  # gestures that changed nothing (see _timed_gesture)
    load = os.getloadavg()
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=args.chromium, args=ARGS)
            ctx, pg, _ = _open(browser, url, requests)  # warm-up
            ctx.close()
            for _ in range(args.repeats):
                ctx, pg, ms = _open(browser, url, requests)
                res["page_open"].append(ms)
                ctx.close()
            ctx, pg, _ = _open(browser, url, requests)
            pg.wait_for_timeout(1500)
            rng = np.random.default_rng(0)
            at = _mapper(pg)
            for _ in range(args.repeats):
                fx0, fy0 = rng.uniform(0.2, 0.4), rng.uniform(0.25, 0.45)
                corners = (at(fx0, fy0), at(fx0 + rng.uniform(0.15, 0.35), fy0 + rng.uniform(0.15, 0.4)))
                res["box"].append(_timed(pg, "cl-selection", lambda c=corners: _drag(pg, c), SELECTION))
            pg.locator(".bk-tool-icon-lasso-select").first.click()
            def lasso():
                cx, cy, r = rng.uniform(0.35, 0.6), rng.uniform(0.4, 0.7), rng.uniform(0.1, 0.2)
                ring = [at(cx + r * np.cos(a), cy + r * np.sin(a)) for a in np.linspace(0, 2 * np.pi, 12)]
                return lambda: _drag(pg, ring)

            def tap():  # the map's centre; its y range reaches the sparse carbon-rich tail
                point = at(0.5 + rng.uniform(-0.15, 0.15), 0.5 + rng.uniform(-0.1, 0.3))
                return lambda: pg.mouse.click(*point)

            for _ in range(args.repeats):
                res["lasso"].append(_timed_gesture(pg, "cl-selection", lasso, SELECTION, misses["lasso"]))
            for _ in range(args.repeats):
                res["tap"].append(_timed_gesture(pg, "cl-spec-info", tap, "survey row", misses["tap"]))
            handle = pg.locator(".noUi-handle").first
            for i in range(args.repeats):
                hb = handle.bounding_box()
                hx, hy = hb["x"] + hb["width"] / 2, hb["y"] + hb["height"] / 2
                path = [(hx, hy), (hx + (25 if i % 2 == 0 else -25), hy)]
                res["slider"].append(_timed(pg, "cl-counts", lambda c=path: _drag(pg, c), "flagged"))
            ctx.close()
            # lasso mouse moves with many flagged stars drawn
            ctx, pg, _ = _open(browser, url + flag_query, requests)
            pg.wait_for_timeout(2000)
            at = _mapper(pg)
            pg.locator(".bk-tool-icon-lasso-select").first.click()
            for _ in range(max(1, args.repeats // 5)):
                cx, cy = at(0.45, 0.55)
                pg.mouse.move(cx + 90, cy)
                pg.mouse.down()
                for a in np.linspace(0, 2 * np.pi, 21)[1:]:
                    t0 = time.perf_counter()
                    pg.mouse.move(cx + 90 * np.cos(a), cy + 90 * np.sin(a))
                    res["lasso_move"].append((time.perf_counter() - t0) * 1000)
                pg.mouse.up()
                pg.wait_for_timeout(500)
            ctx.close()
            browser.close()
    finally:
        server.stop()
    external = sorted({u for u in requests if not re.match(r"^(https?|wss?)://127\.0\.0\.1[:/]", u)
                       and not u.startswith(("data:", "blob:"))})
    with open("/proc/cpuinfo") as fh:
        cpu = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")),
                   platform.processor())
    out = {"survey": args.survey, "stars": int(len(x)), "repeats": args.repeats,
           "flagged_for_lasso_moves": int(n_flagged), "cpu": cpu, "cores": os.cpu_count(),
           "load_average_before": [round(v, 2) for v in load],
           "load_average_after": [round(v, 2) for v in os.getloadavg()],
           "external_requests": external, "n_requests": len(requests),
           "latency": {k: _stats(v) for k, v in res.items()},
           "misses": {k: len(v) for k, v in misses.items()}}
    if args.json:
        print(json.dumps(out, indent=1))
    else:
        names = {"page_open": "page open -> map drawn", "box": "box: mouse-up -> count",
                 "lasso": "lasso: mouse-up -> count", "tap": "tap -> spectrum drawn",
                 "slider": "slider -> counts", "lasso_move": f"lasso mouse-move ({n_flagged:,} flagged)"}
        print(f"{out['stars']:,} stars, {cpu}, load {out['load_average_before']}")
        print(f"{'':42s} {'p50 ms':>8s} {'p95 ms':>8s}")
        for k, s in out["latency"].items():
            print(f"{names[k]:42s} {s.get('p50_ms', float('nan')):8.1f} {s.get('p95_ms', float('nan')):8.1f}")
        print(f"requests leaving 127.0.0.1: {len(external)}; gestures that changed nothing (redrawn): "
              f"{out['misses']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
