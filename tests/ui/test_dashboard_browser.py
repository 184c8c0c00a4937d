"""Browser tests of the dashboard: a real Chromium (playwright) against ``pn.serve``.

A 3,000-star survey and a tiny model are made once per session in a temporary directory
(the fixtures are in conftest.py, shared with the other browser test modules).
Run with ``pytest -m browser tests/ui``; skipped when playwright or /usr/bin/chromium is
missing. Panel renders into shadow DOM: locators and ``get_by_text`` pierce it.
"""

from __future__ import annotations

import contextlib
import io
import re
import socket
import time

import numpy as np
import pytest
from serving_helpers import TIMEOUT, free_port

pytestmark = pytest.mark.browser


def _wait_until(fn, timeout=60.0, step=0.25):
    end = time.time() + timeout
    while time.time() < end:
        v = fn()
        if v:
            return v
        time.sleep(step)
    return fn()


def _image(png: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)


def _map_box(pg):
    box = pg.locator(".cl-map").first.bounding_box()
    assert box and box["width"] > 300
    return box


def test_page_loads_and_map_renders(page):
    _map_box(page)
    img = _image(page.locator(".cl-map").first.screenshot())
    # datashaded points in colour, not a blank canvas: many non-grey, non-white pixels
    r, g, b = img[..., 0], img[..., 1], img[..., 2]
    coloured = (np.abs(r - g) > 40) | (np.abs(g - b) > 40)
    assert coloured.sum() > 2000
    assert page.get_by_text("3,000 stars").count() >= 1
    assert page.get_by_text("Re-inference").count() >= 1


def test_box_drag_changes_selected_count(page, served):
    box = _map_box(page)
    x0, y0 = box["x"] + box["width"] * 0.15, box["y"] + box["height"] * 0.15
    x1, y1 = box["x"] + box["width"] * 0.6, box["y"] + box["height"] * 0.85
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move(x1, y1, steps=10)
    page.mouse.up()
    loc = page.get_by_text(re.compile(r"Selection: [1-9][\d,]* of 3,000 stars"))
    loc.first.wait_for()
    n = int(re.search(r"Selection: ([\d,]+)", loc.first.text_content()).group(1).replace(",", ""))
    assert 0 < n <= 3000
    assert served["apps"][-1].state.n_selected == n


def test_tap_shows_spectrum_with_windows(page, served):
    box = _map_box(page)
    dash = served["apps"][-1]
    # a click in empty space picks nothing: try a few places inside the plot frame
    for fx, fy in ((0.45, 0.5), (0.3, 0.4), (0.6, 0.6), (0.4, 0.3), (0.5, 0.7), (0.25, 0.6)):
        page.mouse.click(box["x"] + box["width"] * fx, box["y"] + box["height"] * fy)
        if _wait_until(lambda: dash.state.picked is not None, 8):
            break
    assert dash.state.picked is not None
    page.get_by_text("survey row").first.wait_for()
    assert dash.state.picked is not None
    from bokeh.models import GlyphRenderer, VStrip

    # the caption ("survey row") is written at once, the figure on the session's loop later: wait
    assert _wait_until(lambda: dash.spec_pane.object.title.text.startswith(f"star {dash.state.picked}:"), 30)
    fig = dash.spec_pane.object
    strips = [r for r in fig.renderers if isinstance(r, GlyphRenderer) and isinstance(r.glyph, VStrip)]
    assert len(strips) == 3  # Fe, C, alpha windows
    page.wait_for_timeout(1500)
    img = _image(page.locator(".cl-spectrum").first.screenshot())
    r, b = img[..., 0], img[..., 2]
    # light blue (Fe), light orange (C) shading drawn behind the spectrum
    bluish = (b > r + 8) & (r > 180)
    orangish = (r > b + 15) & (b > 150)
    assert bluish.sum() > 500 and orangish.sum() > 100


def test_threshold_slider_changes_flagged_count(page, served):
    dash = served["apps"][-1]
    before = dash.state.n_flagged
    label = page.get_by_text(re.compile(r"^[\d,]+ flagged$")).first
    label.wait_for()
    text_before = label.text_content()
    handle = page.locator(".noUi-handle").first
    hb = handle.bounding_box()
    page.mouse.move(hb["x"] + hb["width"] / 2, hb["y"] + hb["height"] / 2)
    page.mouse.down()
    page.mouse.move(hb["x"] - 70, hb["y"] + hb["height"] / 2, steps=8)
    page.mouse.up()
    assert _wait_until(lambda: dash.state.element_sigma < 2.5, 30), dash.state.element_sigma
    assert _wait_until(lambda: dash.state.n_flagged != before, 30)
    after = page.get_by_text(re.compile(r"^[\d,]+ flagged$")).first
    _wait_until(lambda: after.text_content() != text_before, 30)
    assert after.text_content() == f"{dash.state.n_flagged:,} flagged"


def test_export_downloads_readable_file(page, served):
    from astropy.table import Table

    dash = served["apps"][-1]
    dash.state.element_sigma = 1.0  # some stars flagged
    page.get_by_text("Candidates", exact=True).first.click()
    page.get_by_text("Download table").first.wait_for()
    with page.expect_download() as dl:
        page.get_by_text("Download table").first.click()
    path = dl.value.path()
    t = Table.read(path, format="ascii.csv", comment="#")
    assert len(t) == dash.state.n_flagged
    assert "star_id" in t.colnames and "z_c" in t.colnames
    assert dl.value.suggested_filename.endswith(".csv")


def test_samp_button_without_hub_shows_message(page, served, monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("SAMP_HUB", raising=False)
    page.get_by_text("Candidates", exact=True).first.click()
    page.get_by_text("Send to TOPCAT (SAMP)").first.click()
    page.get_by_text(re.compile("SAMP: .*hub")).first.wait_for()


def test_view_state_comes_from_the_url(browser, served):
    ctx = browser.new_context(viewport={"width": 1500, "height": 1100})
    pg = ctx.new_page()
    pg.set_default_timeout(TIMEOUT)
    sid = int(served["data"].frame["star_id"].iat[7])
    pg.goto(served["url"] + f"?x_axis=teff_pred&y_axis=logg_pred&color_by=snr&element_sigma=1.5&picked={sid}")
    pg.get_by_text(f"star {sid}").first.wait_for()
    dash = served["apps"][-1]
    assert _wait_until(lambda: dash.state.x_axis == "teff_pred" and dash.state.color_by == "snr", 30)
    assert dash.state.element_sigma == 1.5 and dash.state.picked == sid
    pg.locator("select").first.select_option("w_0")  # the x axis selector
    pg.wait_for_url(re.compile(r"x_axis=w_0"))
    assert _wait_until(lambda: dash.state.x_axis == "w_0", 30)
    ctx.close()


def test_reencode_a_selection_from_the_browser_and_apply_the_run(page, served):
    dash = served["apps"][-1]
    ids = served["data"].frame["star_id"].to_numpy()[:40]
    dash.state.select_ids(ids)  # the selection itself is tested by the box-drag test
    page.get_by_text(re.compile("Selection: 40 of 3,000 stars")).first.wait_for()
    page.get_by_text("Re-inference", exact=True).first.click()
    page.get_by_text("Re-encode", exact=True).first.click()
    page.locator(".cl-jobs").get_by_text("done").first.wait_for()
    run_id = dash.runs.run_id
    assert run_id and dash.runs.comparison()["star_id"].isin(ids).all()
    dash.runs.show_run = True
    page.get_by_text("Use this run's latents", exact=True).first.click()
    page.get_by_text(re.compile(f"now use run {run_id}")).first.wait_for()
    assert dash.runs.applied == run_id and dash.state.data is not served["data"]
    page.get_by_text("Back to the survey's latents", exact=True).first.click()
    _wait_until(lambda: dash.state.data is served["data"], 30)
    assert dash.state.data is served["data"]


def test_out_of_core_overview_maps_and_summarises_a_box(browser, served):

    from chemlatent.app.dashboard.overview import OverviewSource

    src = OverviewSource(served["data"].path)
    with _page_of(browser, src) as pg:
        pg.get_by_text("3,000 stars, read lazily").first.wait_for()
        pg.wait_for_timeout(1500)
        box = _map_box(pg)
        img = _image(pg.locator(".cl-map").first.screenshot())
        assert img.std() > 10  # the density map is drawn
        pg.mouse.move(box["x"] + box["width"] * 0.2, box["y"] + box["height"] * 0.15)
        pg.mouse.down()
        pg.mouse.move(box["x"] + box["width"] * 0.7, box["y"] + box["height"] * 0.9, steps=10)
        pg.mouse.up()
        pg.get_by_text(re.compile(r"Box: [1-9][\d,]* of 3,000 stars")).first.wait_for()


def test_first_run_page_shows_progress_then_opens_the_explorer(browser, served):
    """While a first run is still working, a session sees its progress; when the survey is
    ready the page reloads itself into the explorer."""
    import threading

    from chemlatent.jobs.preparation import Preparation

    release = threading.Event()

    def load(path):
        release.wait(60)
        return served["data"]

    prep = Preparation(served["data"].path, 3000, 5, load=load, model_dir=str(served["root"] / "model"))
    prep.start()
    try:
        with _page_of(browser, prep) as pg:
            pg.get_by_text("Preparing the survey").first.wait_for()
            pg.get_by_text(re.compile("loading 3,000 stars")).first.wait_for()
            assert not prep.ready
            release.set()
            pg.get_by_text("Selection: 0 of 3,000 stars").first.wait_for()
    finally:
        release.set()


@contextlib.contextmanager
def _page_of(browser, source):
    """A page on a second server serving ``dashboard.session_page(source)``."""
    import panel as pn

    from chemlatent.app.dashboard import server as dashboard

    port = free_port()
    server = pn.serve({"/": lambda: dashboard.session_page(source)}, port=port, address="127.0.0.1",
                      show=False, threaded=True, websocket_origin=[f"127.0.0.1:{port}"])
    ctx = browser.new_context(viewport={"width": 1400, "height": 900})
    try:
        pg = ctx.new_page()
        pg.set_default_timeout(TIMEOUT)
        _wait_until(lambda: _port_open(port), timeout=30)
        pg.goto(f"http://127.0.0.1:{port}/")
        yield pg
    finally:
        ctx.close()
        server.stop()


def _port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False
