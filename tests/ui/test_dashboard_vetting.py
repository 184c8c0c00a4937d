"""Browser tests of the map overlays, the hover, and vetting on the Candidates tab: each
one failed on the page as a user found it (issue 16, items 2-8).

Same served 3,000-star survey and Chromium as ``test_dashboard_browser.py``.
"""

from __future__ import annotations

import re
import time

import numpy as np
import pandas as pd
import pytest
import test_dashboard_browser as base

_image, _map_box, _wait_until = base._image, base._map_box, base._wait_until

pytestmark = pytest.mark.browser


def _coloured(img: np.ndarray) -> int:
    r, g, b = img[..., 0], img[..., 1], img[..., 2]
    return int(((np.abs(r - g) > 40) | (np.abs(g - b) > 40)).sum())


def _js_model(pg, model_id: str, expr: str):
    """Evaluate ``expr`` on the browser's copy of a Bokeh model (``m``)."""
    return pg.evaluate(f"""() => {{
        for (const doc of Bokeh.documents) {{
            const m = doc.get_model_by_id({model_id!r})
            if (m) return {expr}
        }}
        return null
    }}""")


def test_run_arrows_toggle_keeps_the_map(page, served, monkeypatch):
    """Ticking "show old -> new positions" once replaced the DynamicMap's Segments by an
    Overlay (an error on the server) and the density image vanished until Reset."""
    dash = served["apps"][-1]
    x, y = dash.state.xy
    k = np.arange(0, 3000, 100)
    arrows = pd.DataFrame({"x0": x[k], "y0": y[k], "x1": x[k] + 0.3, "y1": y[k] + 0.3,
                           "star_id": dash.data.frame["star_id"].to_numpy()[k]})
    monkeypatch.setattr(dash.runs, "arrows", lambda *a: arrows)
    monkeypatch.setattr(dash.runs, "comparison", lambda: None)
    dash.runs.run_id = "fake-run"
    before = _coloured(_image(page.locator(".cl-map").first.screenshot()))
    assert before > 2000
    for show in (True, False, True):
        page.get_by_text("Re-inference", exact=True).first.click()
        page.get_by_text("show old -> new positions", exact=False).first.wait_for()
        page.locator("input[type=checkbox]").first.click()  # the tab's one checkbox
        assert _wait_until(lambda s=show: dash.runs.show_run is s, 30)
        page.get_by_text("Explore", exact=True).first.click()
        page.wait_for_timeout(2500)
        img = _image(page.locator(".cl-map").first.screenshot())
        assert _coloured(img) > 0.5 * before, show  # the density image is still drawn
        r, g, b = img[..., 0], img[..., 1], img[..., 2]
        purple = (np.abs(r - 148) < 30) & (np.abs(g - 103) < 30) & (np.abs(b - 189) < 30)
        assert bool(purple.sum() > 20) == show, (show, int(purple.sum()))


def test_map_selection_follows_the_server_and_sits_above_flags(page, served):
    """The browser's own selection once styled the flagged layer (it stayed split after
    Clear); selected stars were drawn under flagged ones; the lasso hit-tested every
    flagged glyph on each mouse move."""
    dash = served["apps"][-1]
    dash.state.element_sigma = 1.0  # many flagged stars
    _wait_until(lambda: dash.state.n_flagged > 50, 30)
    flag_src = dash.overlays.sources["flagged"].id
    fig = dash.overlays.figure
    kinds = {r.data_source.id: r for r in fig.renderers}
    order = [next(i for i, r in enumerate(fig.renderers) if r.data_source.id == dash.overlays.sources[k].id)
             for k in ("flagged", "selected", "picked")]
    assert order == sorted(order)  # flagged, then the selection above, then the picked star
    overlay_ids = {src.id for src in dash.overlays.sources.values()}
    for tool in fig.tools:
        if hasattr(tool, "renderers") and type(tool).__name__ in ("BoxSelectTool", "LassoSelectTool",
                                                                   "TapTool", "HoverTool"):
            assert isinstance(tool.renderers, list)
            assert not {r.data_source.id for r in tool.renderers} & overlay_ids
    assert kinds  # the figure has its renderers
    box = _map_box(page)
    page.mouse.move(box["x"] + box["width"] * 0.2, box["y"] + box["height"] * 0.2)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.7, box["y"] + box["height"] * 0.9, steps=8)
    page.mouse.up()
    assert _wait_until(lambda: dash.state.n_selected > 0, 30)
    page.wait_for_timeout(1000)
    # the browser never marked flagged glyphs as selected itself
    assert _js_model(page, flag_src, "m.selected.indices.length") == 0
    page.get_by_text("Clear selection", exact=True).first.click()
    assert _wait_until(lambda: dash.state.n_selected == 0, 30)
    sel_src = dash.overlays.sources["selected"].id
    assert _wait_until(lambda: _js_model(page, sel_src, "m.data.x.length") == 0, 30)
    assert _js_model(page, flag_src, "m.selected.indices.length") == 0


def test_lasso_stays_smooth_with_20000_flagged_stars(page, served):
    dash = served["apps"][-1]
    x, y = dash.state.xy
    rng = np.random.default_rng(0)
    k = rng.integers(0, x.size, 20_000)
    src = dash.overlays.sources["flagged"]
    dash.map._apply(lambda: setattr(src, "data", {"x": x[k] + rng.normal(0, 0.05, k.size),
                                                  "y": y[k] + rng.normal(0, 0.05, k.size)}))
    assert _wait_until(lambda: _js_model(page, src.id, "m.data.x.length") == 20_000, 30)
    page.locator(".bk-tool-icon-lasso-select").first.click()
    box = _map_box(page)
    cx, cy = box["x"] + box["width"] * 0.45, box["y"] + box["height"] * 0.5
    page.mouse.move(cx, cy)
    page.mouse.down()
    times = []
    for i in range(20):
        a = 2 * np.pi * i / 20
        t0 = time.perf_counter()
        page.mouse.move(cx + 80 * np.cos(a), cy + 80 * np.sin(a))
        times.append(time.perf_counter() - t0)
    page.mouse.up()
    # no mouse move stalls (the speed target, p50 per move, is benchmarks/browser_latency.py's:
    # a timed threshold here failed on a loaded 2-core machine at 53 ms against 50)
    assert max(times) < 1.0, times
    assert _wait_until(lambda: dash.state.n_selected > 0, 30)


def test_hover_names_real_stars_only(page, served):
    """Over empty pixels the tooltip said star_id -1 and NaN; S/N showed twice; Teff as 6.310e+3."""
    box = _map_box(page)
    shown, empty = [], 0
    for fy in np.linspace(0.08, 0.92, 8):
        for fx in np.linspace(0.08, 0.85, 8):
            page.mouse.move(box["x"] + box["width"] * fx, box["y"] + box["height"] * fy)
            page.wait_for_timeout(120)
            tips = page.locator("[class*=ooltip]")
            texts = [tips.nth(i).text_content() or "" for i in range(tips.count())
                     if tips.nth(i).is_visible()]
            texts = [t for t in texts if "star_id" in t]
            if texts:
                shown.append(texts[0])
            else:
                empty += 1
    assert shown and empty, (len(shown), empty)
    for t in shown:
        assert "NaN" not in t and not re.search(r"star_id:?\s*-1", t), t
        assert t.count("S/N") <= 1, t
        assert re.search(r"Teff \(pred\):?\s*\d+ K", t), t
        assert "e+" not in t, t


def _open_candidates(page, dash):
    dash.state.element_sigma = 1.0
    _wait_until(lambda: dash.state.n_flagged > 5, 30)
    page.get_by_text("Candidates", exact=True).first.click()
    page.get_by_text("next (j) >").first.wait_for()
    page.wait_for_timeout(1000)


def _shown_beside(page, dash, sid: int) -> None:
    """The star's spectrum is drawn on the Candidates tab (caption in the page, plot title)."""
    page.get_by_text(re.compile(rf"star {sid} \(survey row")).first.wait_for()
    fig = dash.candidates.spectrum_view.spectrum
    assert _wait_until(lambda: fig.top.title.text.startswith(f"star {sid}:"), 30)
    assert fig.star.data["wave"].size > 0


def test_vetting_beside_the_list_with_next_previous_and_keys(page, served):
    dash = served["apps"][-1]
    _open_candidates(page, dash)
    rows = dash.candidates.table.value
    first, second = int(rows["star_id"].iat[0]), int(rows["star_id"].iat[1])
    page.locator(".tabulator-cell", has_text=re.compile(f"^{first}$")).first.click()
    assert _wait_until(lambda: dash.state.picked == first, 30)
    # the spectrum is drawn on this tab, beside the table
    _shown_beside(page, dash, first)
    page.locator("body").press("j")
    assert _wait_until(lambda: dash.state.picked == second, 30)
    _shown_beside(page, dash, second)
    page.locator("body").press("a")
    assert _wait_until(lambda: dash.data.store.verdicts([second])["verdict"].tolist() == ["accepted"], 30)
    page.locator("body").press("k")
    assert _wait_until(lambda: dash.state.picked == first, 30)
    page.get_by_text("next (j) >").first.click()
    assert _wait_until(lambda: dash.state.picked == second, 30)
    page.get_by_text("< previous (k)").first.click()
    assert _wait_until(lambda: dash.state.picked == first, 30)


def test_verdict_saves_the_note_typed_and_clears_it(page, served):
    dash = served["apps"][-1]
    _open_candidates(page, dash)
    ids = dash.candidates.table.value["star_id"].to_numpy()[:5]
    note = page.get_by_placeholder("optional note").first
    for i, sid in enumerate(ids):
        dash.state.pick_star(int(sid))
        assert _wait_until(lambda s=sid: dash.candidates.current_row() is not None
                           and dash.state.picked == s, 30)
        text = f"note {i} for {sid}"
        note.click()
        page.keyboard.type(text, delay=5)
        page.get_by_text("Reject (r)").first.click()  # no blur, no enter: straight to the button
        assert _wait_until(lambda s=sid, t=text: dash.data.store.verdicts([int(s)])["note"].tolist() == [t],
                           30)
        assert _wait_until(lambda: note.input_value() == "", 30)  # cleared after the verdict
    # with no row ticked, the verdict goes to the star shown only when it is in the table
    outside = int(np.setdiff1d(dash.data.frame["star_id"].to_numpy(),
                               dash.candidates.table.value["star_id"].to_numpy())[0])
    dash.state.pick_star(outside)
    page.get_by_text("Accept (a)").first.click()
    page.get_by_text(re.compile(f"star {outside}, shown elsewhere, is not in this table")).first.wait_for()
    assert dash.data.store.verdicts([outside]).empty


def test_the_page_makes_no_request_off_this_machine(browser, served):
    """Air-gapped use: every resource (Bokeh, Panel, template CSS, fonts) comes from the server."""
    ctx = browser.new_context(viewport={"width": 1500, "height": 1100})
    pg = ctx.new_page()
    pg.set_default_timeout(base.TIMEOUT)
    urls: list[str] = []
    pg.on("request", lambda r: urls.append(r.url))
    pg.goto(served["url"])
    pg.get_by_text("Selection: 0 of 3,000 stars").first.wait_for()
    pg.get_by_text("Candidates", exact=True).first.click()
    pg.get_by_text("Download table").first.wait_for()
    pg.get_by_text("Re-inference", exact=True).first.click()
    pg.wait_for_timeout(2000)
    ctx.close()
    assert urls
    away = [u for u in urls if not re.match(r"^(https?|wss?)://127\.0\.0\.1[:/]", u)
            and not u.startswith(("data:", "blob:"))]
    assert not away, away


def test_page_fits_1600_px_and_logs_no_warning(browser, served):
    """The page within 1600 px (the fifth histogram was off screen) and no console warning
    before a pick (the residual panel had a NaN range)."""
    ctx = browser.new_context(viewport={"width": 1600, "height": 1100})
    pg = ctx.new_page()
    pg.set_default_timeout(base.TIMEOUT)
    logs: list[str] = []
    pg.on("console", lambda m: logs.append(f"{m.type}: {m.text}") if m.type in ("warning", "error") else None)
    pg.goto(served["url"])
    pg.get_by_text("Selection: 0 of 3,000 stars").first.wait_for()
    pg.wait_for_timeout(2000)
    assert pg.evaluate("document.documentElement.scrollWidth") <= 1600
    ctx.close()
    logs = [m for m in logs if "GL Driver" not in m and "WebGL" not in m]  # the headless GPU stub
    assert not logs, logs
