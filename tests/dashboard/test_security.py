"""Safe serving: local by default, logins and websocket origins when exposed, bounded
sessions, nothing from the browser as a server path, and models that never unpickle."""

from __future__ import annotations

import base64
import json
import os
import pickle
import socket
import time
from argparse import Namespace
from pathlib import Path

import pytest
import requests
from serving_helpers import free_port

from chemlatent.app.cli import main
from chemlatent.app.cli import serve as cmd_serve
from chemlatent.encode.streaming import encode_survey
from chemlatent.errors import ChemlatentError, ModelError
from chemlatent.model.modelio import load_model
from chemlatent.synth.generator import generate_survey

PASSWORD = "correct horse battery staple"


def _args(**kw) -> Namespace:
    base = dict(address="127.0.0.1", port=5006, allow_websocket_origin=None, basic_auth=None,
                cookie_secret=None, oauth_provider=None, oauth_redirect_uri=None,
                oauth_extra_params=None, max_sessions=None)
    base.update(kw)
    return Namespace(**base)


def _access(**kw) -> tuple[dict, list[str]]:
    warnings: list[str] = []
    return cmd_serve.access_options(_args(**kw), warn=warnings.append), warnings


@pytest.fixture(autouse=True)
def _no_auth_environment(monkeypatch):
    for var in ("CHEMLATENT_BASIC_AUTH", "CHEMLATENT_COOKIE_SECRET", "PANEL_COOKIE_SECRET",
                "PANEL_OAUTH_KEY", "PANEL_OAUTH_SECRET", "PANEL_OAUTH_ENCRYPTION"):
        monkeypatch.delenv(var, raising=False)


# --------------------------------------------------------------------------- options


def test_defaults_are_local_and_quiet(capsys) -> None:
    parser, _ = __import__("chemlatent.app.cli", fromlist=["build_parser"]).build_parser()
    args = parser.parse_args(["serve", "somewhere"])
    assert args.address == "127.0.0.1" and args.max_sessions == cmd_serve.MAX_SESSIONS
    out, warnings = _access()
    assert warnings == [] and "basic_auth" not in out and "oauth_provider" not in out
    assert out["allow_websocket_origin"] == []
    for local in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        assert cmd_serve.is_local(local)
    for exposed in ("0.0.0.0", "::", "10.1.2.3", "explorer.example.org"):
        assert not cmd_serve.is_local(exposed)


def test_exposed_without_login_warns() -> None:
    _, warnings = _access(address="0.0.0.0")
    assert any("with no login" in w and "docs/security.md" in w for w in warnings)
    assert any("--allow-websocket-origin" in w for w in warnings)
    _, warnings = _access(address="0.0.0.0", basic_auth=PASSWORD,
                          allow_websocket_origin=["explorer.example.org"])
    assert len([w for w in warnings if "HTTPS reverse proxy" in w]) == 1
    assert not any("with no login" in w for w in warnings)


def test_basic_auth_password_file_and_cookie_secret(tmp_path: Path) -> None:
    out, warnings = _access(basic_auth=PASSWORD)
    assert out["basic_auth"] == PASSWORD and len(out["cookie_secret"]) >= 32
    assert any("visible to other users" in w for w in warnings)  # password on the command line
    users = tmp_path / "users.json"
    users.write_text(json.dumps({"ann": PASSWORD, "bob": "another long passphrase"}))
    users.chmod(0o644)
    out, warnings = _access(basic_auth=str(users), cookie_secret="s" * 40)
    assert out["basic_auth"] == str(users.resolve()) and out["cookie_secret"] == "s" * 40
    assert any("chmod 600" in w for w in warnings)
    users.chmod(0o600)
    assert _access(basic_auth=str(users))[1] == []


@pytest.mark.parametrize("kw, phrase", [
    (dict(basic_auth="short"), "at least 12 characters"),
    (dict(basic_auth=PASSWORD, cookie_secret="tiny"), "at least 32 characters"),
    (dict(basic_auth=PASSWORD, oauth_provider="github"), "choose one"),
    (dict(oauth_provider="github"), "PANEL_OAUTH_KEY"),
    (dict(oauth_redirect_uri="https://x.example/"), "need --oauth-provider"),
    (dict(allow_websocket_origin=["https://x.example/app"]), "without scheme or path"),
])
def test_bad_access_options_are_one_line_errors(kw, phrase) -> None:
    with pytest.raises(ChemlatentError, match=phrase):
        _access(**kw)


def test_bad_user_file(tmp_path: Path) -> None:
    users = tmp_path / "users.json"
    for text in ("{not json", "[1, 2]", '{"ann": ""}', "{}"):
        users.write_text(text)
        with pytest.raises(ChemlatentError, match="users.json"):
            _access(basic_auth=str(users))


def test_oauth_pass_through(monkeypatch) -> None:
    monkeypatch.setenv("PANEL_OAUTH_KEY", "client-id")
    monkeypatch.setenv("PANEL_OAUTH_SECRET", "client-secret")
    out, _ = _access(oauth_provider="azure", oauth_redirect_uri="https://explorer.example.org/",
                     oauth_extra_params='{"TENANT_ID": "abc"}')
    assert out["oauth_provider"] == "azure" and out["oauth_key"] == "client-id"
    assert out["oauth_secret"] == "client-secret" and out["oauth_extra_params"] == {"TENANT_ID": "abc"}
    assert out["oauth_redirect_uri"] == "https://explorer.example.org/" and out["cookie_secret"]


def _cli(capsys, *argv: str) -> tuple[int, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse
        code = exc.code
    return code, capsys.readouterr().err


def test_serve_command_rejects_bad_flags_before_loading(tmp_path: Path, capsys) -> None:
    code, err = _cli(capsys, "serve", str(tmp_path / "nowhere"), "--port", "70000")
    assert code == 2 and err.count("\n") == 1 and "65535" in err
    code, err = _cli(capsys, "serve", str(tmp_path / "nowhere"), "--basic-auth", "short")
    assert code == 2 and "at least 12 characters" in err and "loading" not in err
    code, err = _cli(capsys, "demo", "--no-show", "--max-sessions", "0")
    assert code == 2 and "--max-sessions" in err
    # the demo checks its access flags before it starts generating anything
    code, err = _cli(capsys, "demo", "--no-show", "--dir", str(tmp_path / "demo"), "--stars", "10",
                     "--basic-auth", "short")
    assert code == 2 and "at least 12 characters" in err and not (tmp_path / "demo").exists()


# --------------------------------------------------------------------------- a served page


@pytest.fixture(scope="module")
def small_data(tmp_path_factory):
    from chemlatent.explore.survey import SurveyData

    survey = generate_survey(tmp_path_factory.mktemp("sec") / "s", 60, seed=4, progress=False)
    encode_survey(survey, load_model(None))
    return SurveyData(survey.path)


def _ws_handshake(port: int, origin: str, cookies: dict | None = None) -> str:
    """The status line the server answers a websocket upgrade from ``origin`` with."""
    key = base64.b64encode(os.urandom(16)).decode()
    cookie = "; ".join(f"{k}={v}" for k, v in (cookies or {}).items())
    req = (f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
           f"Origin: {origin}\r\n" + (f"Cookie: {cookie}\r\n" if cookie else "") + "\r\n")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(req.encode())
        return s.recv(4096).split(b"\r\n", 1)[0].decode()


@pytest.fixture()
def panel_config():
    """Panel keeps auth settings in its global config: put them back after a served test."""
    import panel as pn

    keys = ("_cookie_secret", "_oauth_provider", "_oauth_key", "_oauth_secret",
            "_oauth_redirect_uri", "_oauth_extra_params")
    saved = {k: getattr(pn.config, k) for k in keys}
    yield
    pn.config.param.update(**saved)


def _wait_up(url: str) -> requests.Response:
    for _ in range(200):
        try:
            return requests.get(url, allow_redirects=False, timeout=10)
        except requests.ConnectionError:
            time.sleep(0.1)
    raise AssertionError(f"{url} never answered")


def test_oauth_options_reach_panel(small_data, panel_config, monkeypatch) -> None:
    """With --oauth-provider the page sends browsers to the provider with our client id."""
    from chemlatent.app.dashboard.server import serve

    monkeypatch.setenv("PANEL_OAUTH_KEY", "client-id-123")
    monkeypatch.setenv("PANEL_OAUTH_SECRET", "client-secret")
    access, _ = _access(oauth_provider="github")
    port = free_port()
    server = serve(small_data, port=port, show=False, threaded=True, **access)
    try:
        first = _wait_up(f"http://127.0.0.1:{port}/")
        assert first.status_code in (302, 303) and "/login" in first.headers["Location"]
        login = requests.get(f"http://127.0.0.1:{port}/login", allow_redirects=False, timeout=10)
        assert login.status_code in (302, 303)
        assert login.headers["Location"].startswith("https://github.com/login/oauth/authorize")
        assert "client_id=client-id-123" in login.headers["Location"]
        assert "client-secret" not in login.headers["Location"]
    finally:
        server.stop()


def test_served_page_needs_login_and_checks_origins(small_data, panel_config, monkeypatch) -> None:
    from chemlatent.app.dashboard import server as dashboard
    from chemlatent.app.dashboard.server import serve

    made = []
    real_make_app = dashboard.make_app
    monkeypatch.setattr(dashboard, "make_app",
                        lambda *a, **k: made.append(real_make_app(*a, **k)) or made[-1])
    port = free_port()
    server = serve(small_data, port=port, show=False, threaded=True, basic_auth=PASSWORD,
                   cookie_secret="x" * 40, allow_websocket_origin=["explorer.example.org"],
                   max_sessions=1)
    url = f"http://127.0.0.1:{port}"
    try:
        first = _wait_up(url + "/")
        assert first.status_code in (302, 303) and "/login" in first.headers["Location"]
        s = requests.Session()
        bad = s.post(url + "/login", data={"username": "ann", "password": "wrong"},
                     allow_redirects=False, timeout=10)
        assert "user" not in s.cookies and "error" in bad.headers.get("Location", "")
        s.post(url + "/login", data={"username": "ann", "password": PASSWORD},
               allow_redirects=False, timeout=10)
        assert "user" in s.cookies
        page = s.get(url + "/", timeout=30)
        assert page.status_code == 200 and "chemlatent explorer" in page.text
        # verdicts from this page are recorded under the logged-in user, not the server's
        state = made[-1]._dashboard.state
        assert state.user == "ann"
        sid = int(small_data.frame["star_id"].iat[0])
        state.annotate([sid], "accepted")
        assert state.verdicts([sid])["who"].tolist() == ["ann"]
        assert made[-1]._dashboard.b_samp.visible  # served on 127.0.0.1: SAMP reaches the user's hub
        # one session allowed: the next browser gets the busy page, not a second explorer
        again = s.get(url + "/", timeout=30)
        assert again.status_code == 200 and "<title>chemlatent explorer is busy<" in again.text
        assert "<title>chemlatent explorer<" in page.text
        # websocket: a foreign page may not connect; the allowed names may
        jar = s.cookies.get_dict()
        assert " 403 " in _ws_handshake(port, "http://evil.example", jar)
        assert " 403 " in _ws_handshake(port, "http://explorer.example.org")  # not logged in
        assert " 101 " in _ws_handshake(port, "http://explorer.example.org", jar)
        assert " 101 " in _ws_handshake(port, f"http://localhost:{port}", jar)
    finally:
        server.stop()


def test_samp_is_offered_only_when_served_on_the_users_own_machine(small_data) -> None:
    from chemlatent.app.dashboard.app import Dashboard

    remote = Dashboard(small_data, samp=False)
    assert not remote.b_samp.visible and remote.samp_note.visible and "VOTable" in remote.samp_note.object
    local = Dashboard(small_data)
    assert local.b_samp.visible and not local.samp_note.visible


# --------------------------------------------------------------------------- browser input


def test_url_state_and_exports_touch_no_server_files(small_data) -> None:
    """Query parameters and downloads never become paths: bad values are ignored and the
    export is built in memory."""
    from chemlatent.explore.state import ExplorerState

    before = sorted(p.relative_to(small_data.path) for p in small_data.path.rglob("*"))
    st = ExplorerState(small_data)
    st.apply_url_state({"x_axis": "../../etc/passwd", "table_source": "/etc/shadow",
                        "preset": "..", "picked": "../1", "export_format": "../../x"})
    assert st.x_axis == "z_fe" and st.table_source == "flagged" and st.picked is None
    for fmt in ("csv", "fits", "votable"):
        name, data = st.export(fmt)
        assert "/" not in name and "\\" not in name and data
    after = sorted(p.relative_to(small_data.path) for p in small_data.path.rglob("*"))
    assert after == before


# --------------------------------------------------------------------------- models


class _Payload:
    def __reduce__(self):
        return (Path.touch, (Path(os.environ["CHEMLATENT_PWNED"]),))


def test_a_pickle_in_disguise_is_never_loaded(tmp_path: Path, monkeypatch) -> None:
    marker = tmp_path / "pwned"
    monkeypatch.setenv("CHEMLATENT_PWNED", str(marker))
    model = tmp_path / "model"
    model.mkdir()
    bundled = load_model(None).model_dir
    (model / "config.json").write_text((Path(bundled) / "config.json").read_text())
    (model / "weights.safetensors").write_bytes(pickle.dumps(_Payload()))
    with pytest.raises(ModelError, match="damaged or not a safetensors file"):
        load_model(model)
    assert not marker.exists()
    # the same for a training checkpoint: --resume reads safetensors and JSON only
    ck = tmp_path / "run" / "checkpoint"
    ck.mkdir(parents=True)
    (ck / "state.json").write_text(json.dumps({"epoch": 1, "tensors": "state-00001.safetensors",
                                               "history": [], "skeleton": {}}))
    (ck / "state-00001.safetensors").write_bytes(pickle.dumps(_Payload()))
    from chemlatent.model.training import _load_checkpoint

    with pytest.raises(ChemlatentError, match="damaged"):
        _load_checkpoint(ck, load_model(None), None, None)
    assert not marker.exists()
