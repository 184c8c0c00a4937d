"""Time ``chemlatent demo`` to a served explorer: a first run (generate + encode + load) and
a later run (load only) on the same directory.

    python benchmarks/demo_first_run.py --dir /tmp/demo1m [--stars 1000000] [--json]

Starts the demo as a subprocess, waits until the page served at ``/`` is the explorer (not
the first-run progress page), prints the seconds, stops the server, and does it again.
Delete ``--dir`` beforehand to time a real first run.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _page(url: str) -> str:
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return r.read().decode("utf-8", "replace")
    except OSError:
        return ""


def time_demo(directory: str, stars: int, timeout: float = 1800) -> dict:
    """Seconds from starting ``chemlatent demo`` to the first page answer and to the explorer."""
    port = _free_port()
    cmd = [sys.executable, "-m", "chemlatent.app.cli", "demo", "--stars", str(stars), "--dir", directory,
           "--no-show", "--port", str(port)]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    first_page = explorer = None
    try:
        while time.perf_counter() - t0 < timeout:
            if proc.poll() is not None:
                raise SystemExit(f"demo exited early: {proc.stderr.read()[-2000:]}")
            html = _page(f"http://127.0.0.1:{port}/")
            if html and first_page is None:
                first_page = time.perf_counter() - t0
            if "<title>chemlatent explorer</title>" in html:  # not the progress page
                explorer = time.perf_counter() - t0
                break
            time.sleep(2)
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
    return {"first_page_s": None if first_page is None else round(first_page, 1),
            "explorer_s": None if explorer is None else round(explorer, 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", required=True)
    ap.add_argument("--stars", type=int, default=1_000_000)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    res = {"stars": args.stars, "first_run": time_demo(args.dir, args.stars),
           "later_run": time_demo(args.dir, args.stars)}
    print(json.dumps(res) if args.json else res)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
