"""A 3,000-star survey encoded with a tiny model, built once for all browser tests."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest
from serving_helpers import free_port

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
TIMEOUT = 90_000  # ms: the machine may be busy


@pytest.fixture(scope="session")
def ui_survey(tmp_path_factory) -> Path:
    """Root directory holding ``survey/`` (encoded) and ``model/`` (one-epoch tiny model)."""
    from chemlatent.encode.streaming import encode_survey
    from chemlatent.model.modelio import load_model
    from chemlatent.model.training import TrainOptions, train
    from chemlatent.synth.generator import generate_survey

    root = tmp_path_factory.mktemp("ui")
    survey = generate_survey(root / "survey", 3000, seed=5, chunk=512, progress=False)
    train(survey.path, root / "model", TrainOptions(epochs=1, hidden=(32, 32, 16), device="cpu",
                                                    batch_size=256), progress=False)
    encode_survey(survey, load_model(root / "model"))
    return root


# one served dashboard, one Chromium and a fresh page per test, for every browser test module
@pytest.fixture(scope="session")
def served(ui_survey):
    if os.environ.get("CI"):  # in CI a missing browser is a failure, never a skip
        import playwright.sync_api  # noqa: F401

        assert CHROMIUM.exists(), "no /usr/bin/chromium: scripts/bootstrap.sh installs it"
    pytest.importorskip("playwright.sync_api")
    if not CHROMIUM.exists():
        pytest.skip("no /usr/bin/chromium (apt-get install -y chromium)")
    from chemlatent.explore.survey import SurveyData

    root = ui_survey
    data = SurveyData(root / "survey", db=str(root / "ann.sqlite"), who="ui-test")

    import panel as pn

    from chemlatent.app.dashboard import server as dashboard

    apps = []

    def app():
        tmpl = dashboard.make_app(data)
        apps.append(tmpl._dashboard)
        return tmpl

    dashboard.warm_up(data)
    port = free_port()
    server = pn.serve({"/": app}, port=port, address="127.0.0.1", show=False, threaded=True,
                      websocket_origin=[f"127.0.0.1:{port}", f"localhost:{port}"])
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.2)
    yield {"url": f"http://127.0.0.1:{port}/", "apps": apps, "data": data, "root": root}
    server.stop()


@pytest.fixture(scope="session")
def browser(served):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield b
        b.close()


@pytest.fixture()
def page(browser, served):
    ctx = browser.new_context(viewport={"width": 1500, "height": 1100}, accept_downloads=True)
    pg = ctx.new_page()
    pg.set_default_timeout(TIMEOUT)
    errors = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.goto(served["url"])
    pg.get_by_text("Selection: 0 of 3,000 stars").first.wait_for()
    pg.wait_for_timeout(1500)
    yield pg
    ctx.close()
    assert not errors, errors
