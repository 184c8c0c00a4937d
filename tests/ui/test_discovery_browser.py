"""Browser tests of the discovery features (compare, best-next ranking, named selections,
typed subsets, spectrum tools, SAMP), on the served page of tests/ui/conftest.py."""

from __future__ import annotations

import re
import time

import numpy as np
import pytest

pytestmark = pytest.mark.browser


def typed_reaches_server(page, widget, text: str) -> None:
    """Wait until the server's text box holds ``text``: page events run on a thread pool, so a
    click sent right after typing can be handled before the typed text (a person is slower)."""
    deadline = time.time() + 30
    while widget.value_input != text and time.time() < deadline:
        time.sleep(0.1)
    assert widget.value_input == text
    page.wait_for_timeout(300)


def best_next_shows(page, dash, stars: set[int], polls: int = 150) -> set[int]:
    """Which of ``stars`` the candidate table still shows, polled until none (or ``polls``
    x 200 ms): the status line and the re-ranked table are two updates, and on a loaded
    machine the table comes later."""
    for _ in range(polls):
        shown = stars & {int(s) for s in dash.candidates.table.value["star_id"]}
        if not shown:
            break
        page.wait_for_timeout(200)
    return shown


def first_unvetted(page, dash, vetted: list[int], polls: int = 150) -> int:
    """The candidate table's first star not in ``vetted``, polled (``polls`` x 200 ms): the
    table is filled after the status line that announces it, later on a loaded machine."""
    for _ in range(polls):
        fresh = [int(s) for s in dash.candidates.table.value["star_id"] if int(s) not in vetted]
        if fresh:
            return fresh[0]
        page.wait_for_timeout(200)
    raise AssertionError(f"the best-next table shows no star besides {vetted}")


def test_compare_panel_shows_spectra_and_features(page, served):
    dash = served["apps"][-1]
    f = dash.state.data.frame
    dash.state.select_ids(f["star_id"].to_numpy()[f["c_fe"].to_numpy() > 0.7])
    page.get_by_text("Compare", exact=True).first.click()
    page.get_by_text("Compare A with B").first.click()
    page.get_by_text(re.compile("largest significant change")).first.wait_for()
    assert dash.compare_view.compare.result is not None
    assert np.isfinite(dash.compare_view.compare.result.t).any()
    feats = dash.compare_view.compare.result.features(15)
    assert any("CH G band" in name for name in feats["feature"])  # carbon stars: the G band differs
    page.locator(".cl-compare-features").get_by_text(feats["feature"].iloc[0]).first.wait_for()


def test_best_next_learns_from_verdicts_clicked_in_the_page(page, served):
    dash = served["apps"][-1]
    page.get_by_text("Candidates", exact=True).first.click()
    page.get_by_text("Show best next (learned from verdicts)").first.click()
    page.get_by_text(re.compile("Best next: (static rule order|learned from)")).first.wait_for()
    assert dash.state.table_source == "best next"
    ids = []
    for verb in ("accept", "accept", "reject", "reject"):
        # the table re-ranks as verdicts come in: take its current first star each time
        sid = first_unvetted(page, dash, ids)
        ids.append(sid)
        dash.state.pick_star(sid)
        page.wait_for_timeout(600)
        page.get_by_role("button", name=f"{verb.title()} ({verb[0]})", exact=True).first.click()
        page.get_by_text(re.compile(f"{verb}ed: 1 star")).first.wait_for()
        # the second accept (reject) shows the same line as the first: wait for this verdict's
        # re-rank, which takes the vetted star out of the table, before picking the next star
        assert not best_next_shows(page, dash, {sid})
    page.get_by_text(re.compile(r"Best next: learned from \d+ verdicts")).first.wait_for()
    n_verdicts = int(dash.state.data.store.verdicts()["verdict"].isin(["accepted", "rejected"]).sum())
    # earlier tests may have left verdicts, so "learned from" can show before the last re-rank:
    # wait for the line that counts every verdict, then the table is the re-ranked one
    page.get_by_text(re.compile(rf"Best next: learned from {n_verdicts} verdicts")).first.wait_for()
    assert not best_next_shows(page, dash, set(ids[:4]))  # vetted stars leave the best-next table


def test_named_selection_undo_and_url(page, served, browser):
    from serving_helpers import TIMEOUT

    dash = served["apps"][-1]
    ids = dash.state.data.frame["star_id"].to_numpy()
    dash.state.select_ids(ids[:40])
    page.get_by_text("Selection: 40 of 3,000 stars").first.wait_for()
    dash.state.select_ids(ids[40:50], "add")
    page.get_by_text("Selection: 50 of 3,000 stars").first.wait_for()
    page.get_by_role("button", name="Undo", exact=True).first.click()
    page.get_by_text("Selection: 40 of 3,000 stars").first.wait_for()
    page.get_by_role("button", name="Redo", exact=True).first.click()
    page.get_by_text("Selection: 50 of 3,000 stars").first.wait_for()
    page.get_by_placeholder("name to save as").first.fill("my fifty")
    page.get_by_placeholder("name to save as").first.press("Enter")
    typed_reaches_server(page, dash.selections_view.w_sel_name, "my fifty")
    page.get_by_role("button", name="Save", exact=True).first.click()
    page.get_by_text("saved selection 'my fifty' (50 stars)").first.wait_for()
    assert "my fifty" in dash.state.selection_names()
    with page.expect_download() as dl:
        page.get_by_text("Download selected IDs").first.click()
    assert len(open(dl.value.path()).read().split()) == 51  # header + 50 ids
    page.get_by_role("button", name="Invert", exact=True).first.click()
    page.get_by_text("Selection: 2,950 of 3,000 stars").first.wait_for()
    page.get_by_role("button", name="Undo", exact=True).first.click()
    page.get_by_text("Selection: 50 of 3,000 stars").first.wait_for()
    # the shareable URL carries the selection: a new page opens with the same 50 stars
    deadline = time.time() + 30
    while "selection_ref=ids" not in page.url and time.time() < deadline:
        page.wait_for_timeout(250)
    assert "selection_ref=ids" in page.url
    ctx = browser.new_context(viewport={"width": 1500, "height": 1100})
    other = ctx.new_page()
    other.set_default_timeout(TIMEOUT)
    other.goto(page.url)
    other.get_by_text("Selection: 50 of 3,000 stars").first.wait_for()
    ctx.close()


def test_typed_subset_box_selects_or_says_why_not(page, served):
    from chemlatent.explore.state.subset import subset_mask

    dash = served["apps"][-1]
    box = page.get_by_placeholder("fe < -2 dex and c > 3 sigma(cond)").first
    box.fill("c > 2 sigma and fe < 0 latent")
    box.press("Enter")
    n = int(subset_mask(dash.state.data, "c > 2 sigma and fe < 0 latent").sum())
    page.get_by_text(f"Selection: {n:,} of 3,000 stars").first.wait_for()
    box.fill("c >> 2")
    typed_reaches_server(page, dash.subset_view.w_rule, "c >> 2")
    page.get_by_role("button", name="Select", exact=True).first.click()
    page.get_by_text(re.compile("Rule not applied: .*cannot read rule")).first.wait_for()
    assert dash.state.n_selected == n


def test_spectrum_tools_and_colour_by_any_column(page, served):
    dash = served["apps"][-1]
    dash.state.pick_star(int(dash.state.data.frame["star_id"].iat[7]))
    page.get_by_text("Spectrum tools", exact=True).first.click()
    page.get_by_text(re.compile(r"markers \(C, CH, C2\)")).first.wait_for()
    page.locator(".cl-air input").first.check()
    page.get_by_text(re.compile("smoothing 0 px, air wavelengths")).first.wait_for()
    dash.tools_view.tools.rv_kms = 150.0
    page.get_by_text(re.compile(r"v = \+150 km/s")).first.wait_for()
    assert "vmicro" in dash.state.param.color_by.objects  # a catalog column
    page.locator("select").filter(has_text="vmicro").first.select_option("vmicro")
    deadline = time.time() + 30
    while dash.state.color_by != "vmicro" and time.time() < deadline:
        time.sleep(0.2)
    assert dash.state.color_by == "vmicro"


def test_topcat_selection_and_highlight_reach_the_page(page, served, tmp_path, monkeypatch):
    import pandas as pd
    from samp_helpers import hub_and_topcat

    from chemlatent.io.export import export_table, provenance

    dash = served["apps"][-1]
    data = dash.state.data
    ids = data.frame["star_id"].to_numpy()[100:130]
    table = export_table(pd.DataFrame({"star_id": ids}), tmp_path / "from_topcat.vot",
                         provenance(survey_path=data.path))
    with hub_and_topcat(tmp_path / "lock", monkeypatch) as topcat:
        page.get_by_text("Listen to TOPCAT (SAMP)").first.click()
        page.get_by_text(re.compile("Listening: select rows")).first.wait_for()
        topcat.notify_all({"samp.mtype": "table.select.rowList",
                           "samp.params": {"url": table.as_uri(), "table-id": "t",
                                           "row-list": ["0", "5", "7"]}})
        page.get_by_text("Selection: 3 of 3,000 stars").first.wait_for()
        assert set(dash.state.selected_ids()) == {ids[0], ids[5], ids[7]}
        topcat.notify_all({"samp.mtype": "table.highlight.row",
                           "samp.params": {"url": table.as_uri(), "table-id": "t", "row": "9"}})
        page.get_by_text(f"TOPCAT highlighted star {ids[9]}").first.wait_for()
        assert dash.state.picked == ids[9]
        dash.samp_link.receiver.stop()
