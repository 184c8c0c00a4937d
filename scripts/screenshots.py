"""Serve the dashboard on a survey and save PNG screenshots of it (for the docs).

    python scripts/screenshots.py SURVEY_DIR --out docs/img [--model MODEL_DIR] [--db URL] [--width 1600]

Needs playwright and a Chromium at /usr/bin/chromium (``apt-get install -y chromium``).
Writes ``dashboard-explore.png`` (map with a box selection and a picked star's spectrum)
and ``dashboard-candidates.png`` (the candidate table).
"""

from __future__ import annotations

import argparse
import socket
import sys
import time
from pathlib import Path

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("survey")
    ap.add_argument("--out", default="docs/img")
    ap.add_argument("--model", default=None)
    ap.add_argument("--db", default=None,
                    help="annotations database (default: a temporary one; the survey is only read)")
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    ap.add_argument("--width", type=int, default=1600)
    ap.add_argument("--height", type=int, default=1000)
    args = ap.parse_args(argv)

    import panel as pn
    from playwright.sync_api import sync_playwright

    from chemlatent.app.dashboard import server as dashboard
    from chemlatent.explore.survey import SurveyData

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    import tempfile

    tmp = tempfile.TemporaryDirectory(prefix="screenshots-")
    data = SurveyData(args.survey, args.model, db=args.db or str(Path(tmp.name) / "annotations.sqlite"))
    dashboard.warm_up(data)
    port = _free_port()
    apps = []

    def app():
        tmpl = dashboard.make_app(data)
        apps.append(tmpl._dashboard)
        return tmpl

    server = pn.serve({"/": app}, port=port, address="127.0.0.1", show=False, threaded=True,
                      websocket_origin=[f"127.0.0.1:{port}"])
    time.sleep(2)
    try:
        with sync_playwright() as p:
            b = p.chromium.launch(executable_path=args.chromium, args=ARGS)
            pg = b.new_page(viewport={"width": args.width, "height": args.height})
            pg.set_default_timeout(120_000)
            f = data.frame
            sid = int(f["star_id"].iat[0])
            # pick the most carbon-rich flagged star when there is one
            st_probe = dashboard.ExplorerState(data, element_sigma=2.0)
            if st_probe.n_flagged:
                sid = int(st_probe.candidates()["star_id"].iat[0])
            pg.goto(f"http://127.0.0.1:{port}/?element_sigma=2.0&picked={sid}")
            pg.get_by_text("survey row").first.wait_for()
            box = pg.locator(".cl-map").first.bounding_box()
            pg.mouse.move(box["x"] + box["width"] * 0.2, box["y"] + box["height"] * 0.2)
            pg.mouse.down()
            pg.mouse.move(box["x"] + box["width"] * 0.45, box["y"] + box["height"] * 0.7, steps=10)
            pg.mouse.up()
            pg.get_by_text("Selection: 0 of").first.wait_for(state="detached")
            pg.wait_for_timeout(2500)
            pg.mouse.move(5, 300)  # no hover tooltip in the picture
            pg.wait_for_timeout(500)
            pg.screenshot(path=str(out / "dashboard-explore.png"))
            pg.get_by_text("Candidates", exact=True).first.click()
            pg.wait_for_timeout(2500)
            pg.screenshot(path=str(out / "dashboard-candidates.png"))
            b.close()
    finally:
        server.stop()
    for name in ("dashboard-explore.png", "dashboard-candidates.png"):
        path = out / name
        print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
