"""``chemlatent serve DIR [--port P] [--address 127.0.0.1] [--model MODEL_DIR] [--no-show]``.

Listens on 127.0.0.1 unless told otherwise. On any other address it warns, and offers
Panel's basic auth (``--basic-auth``) or OAuth (``--oauth-provider``, key and secret from
the environment) and a websocket origin allow-list (``--allow-websocket-origin``); see
``docs/security.md``.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import sys
from pathlib import Path

from chemlatent.app.cli.options import bounded_int, port
from chemlatent.app.dashboard.access import is_local

HELP = "serve the interactive explorer (latent map, spectra, thresholds, candidates) for a survey"

#: Browser sessions served at once unless --max-sessions says otherwise (each holds its own
#: selection masks and plots, so a flood of sessions could exhaust memory).
MAX_SESSIONS = 32
OAUTH_PROVIDERS = ("auth0", "azure", "azurev2", "bitbucket", "generic", "github", "gitlab", "google",
                   "okta", "password", "auth_code")
_ORIGIN = re.compile(r"(\*|[A-Za-z0-9_.\-]+|\[[0-9A-Fa-f:.]+\])(:\d{1,5})?")


def add_security_arguments(p) -> None:
    """Options that control who may reach the explorer (shared with ``chemlatent demo``)."""
    g = p.add_argument_group("access (see docs/security.md)")
    g.add_argument("--allow-websocket-origin", action="append", default=None, metavar="HOST[:PORT]",
                   help="also accept the page's websocket from this host (the name browsers use to "
                        "reach the server, e.g. behind a reverse proxy); repeatable")
    g.add_argument("--basic-auth", default=None, metavar="PASSWORD_OR_FILE",
                   help="ask for a login: a JSON file {\"user\": \"password\", ...} or one shared "
                        "password (default: $CHEMLATENT_BASIC_AUTH)")
    g.add_argument("--cookie-secret", default=None, metavar="SECRET",
                   help="secret that signs login cookies (default: $CHEMLATENT_COOKIE_SECRET, else "
                        "a random one per start, so logins end when the server stops)")
    g.add_argument("--oauth-provider", default=None, choices=OAUTH_PROVIDERS,
                   help="log in through an OAuth provider; key and secret from $PANEL_OAUTH_KEY and "
                        "$PANEL_OAUTH_SECRET")
    g.add_argument("--oauth-redirect-uri", default=None, metavar="URI",
                   help="the public URL the provider sends users back to (behind a proxy)")
    g.add_argument("--oauth-extra-params", default=None, metavar="JSON",
                   help="extra provider parameters as a JSON object (e.g. {\"TENANT_ID\": \"...\"})")
    g.add_argument("--max-sessions", type=bounded_int(1, 1000), default=MAX_SESSIONS,
                   help=f"browser sessions served at once (default {MAX_SESSIONS}); more get a "
                        "'busy' page")


def add_arguments(p) -> None:
    p.add_argument("dir", help="survey directory (with latents/ from chemlatent encode)")
    p.add_argument("--port", type=port, default=5006, help="port (default 5006)")
    p.add_argument("--address", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0: all "
                        "interfaces, see docs/security.md)")
    p.add_argument("--model", default=None,
                   help="model directory or name (default: the one named by the latents file)")
    p.add_argument("--db", default=None,
                   help="annotations database (SQLAlchemy URL; default DIR/annotations.sqlite)")
    p.add_argument("--who", default=None, help="name recorded with verdicts (default: login name)")
    p.add_argument("--no-show", action="store_true", help="do not open a browser")
    p.add_argument("--out-of-core", action="store_true",
                   help="read the latents lazily with Dask (surveys larger than memory): map, box "
                        "summaries and spectra only")
    add_security_arguments(p)


def _basic_auth(value: str | None, warn) -> str | None:
    """The basic-auth setting for Panel, checked: a JSON user file's path, or a password."""
    from chemlatent.errors import ChemlatentError

    from_env = value is None
    value = os.environ.get("CHEMLATENT_BASIC_AUTH") if from_env else value
    if not value:
        return None
    path = Path(value)
    if path.is_file():
        try:
            users = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise ChemlatentError(f"--basic-auth {path}: not a readable JSON file ({exc})") from None
        if not (isinstance(users, dict) and users
                and all(isinstance(k, str) and isinstance(v, str) and v for k, v in users.items())):
            raise ChemlatentError(f"--basic-auth {path}: expected a JSON object of user names to "
                                  "non-empty passwords, e.g. {\"ann\": \"long passphrase\"}")
        if (path.stat().st_mode & 0o077) and os.name == "posix":
            warn(f"{path} is readable by other users of this machine; chmod 600 it")
        return str(path.resolve())
    if len(value) < 12:
        raise ChemlatentError("--basic-auth: a shared password needs at least 12 characters (or give "
                              "a JSON file of users and passwords)")
    if not from_env:
        warn("a password on the command line is visible to other users of this machine (ps); "
             "prefer a JSON file or $CHEMLATENT_BASIC_AUTH")
    return value


def access_options(args, warn=None) -> dict:
    """Validate the access options of ``args`` and turn them into keyword arguments of
    :func:`chemlatent.app.dashboard.server.serve`; prints warnings through ``warn``."""
    from chemlatent.errors import ChemlatentError

    def _warn(text: str) -> None:
        print(f"chemlatent serve: warning: {text}", file=sys.stderr)

    warn = warn or _warn
    address = getattr(args, "address", None) or "127.0.0.1"
    origins = list(getattr(args, "allow_websocket_origin", None) or [])
    for o in origins:
        if not _ORIGIN.fullmatch(o):
            raise ChemlatentError(f"--allow-websocket-origin {o!r}: give HOST or HOST:PORT, without "
                                  "scheme or path (e.g. explorer.example.org or 10.0.0.5:5006)")
        if o.startswith("*"):
            warn("--allow-websocket-origin * lets pages from any web site talk to this server")
    extra = getattr(args, "oauth_extra_params", None)
    if extra is not None:
        try:
            extra = json.loads(extra)
        except ValueError as exc:
            raise ChemlatentError(f"--oauth-extra-params is not JSON ({exc})") from None
        if not isinstance(extra, dict):
            raise ChemlatentError("--oauth-extra-params must be a JSON object")
    basic = _basic_auth(getattr(args, "basic_auth", None), warn)
    provider = getattr(args, "oauth_provider", None)
    if basic and provider:
        raise ChemlatentError("choose one of --basic-auth and --oauth-provider")
    if (extra or getattr(args, "oauth_redirect_uri", None)) and not provider:
        raise ChemlatentError("--oauth-redirect-uri and --oauth-extra-params need --oauth-provider")
    out: dict = {"allow_websocket_origin": origins,
                 "max_sessions": getattr(args, "max_sessions", None) or MAX_SESSIONS}
    if basic or provider:
        secret = (getattr(args, "cookie_secret", None) or os.environ.get("CHEMLATENT_COOKIE_SECRET")
                  or os.environ.get("PANEL_COOKIE_SECRET"))
        if secret is not None and len(secret) < 32:
            raise ChemlatentError("--cookie-secret needs at least 32 characters "
                                  "(python -c 'import secrets; print(secrets.token_urlsafe(32))')")
        out["cookie_secret"] = secret or secrets.token_urlsafe(32)
    elif getattr(args, "cookie_secret", None):
        warn("--cookie-secret does nothing without --basic-auth or --oauth-provider")
    if basic:
        out["basic_auth"] = basic
    if provider:
        key, secret = os.environ.get("PANEL_OAUTH_KEY"), os.environ.get("PANEL_OAUTH_SECRET")
        if not key or not secret:
            raise ChemlatentError(f"--oauth-provider {provider} needs the client id and secret in "
                                  "$PANEL_OAUTH_KEY and $PANEL_OAUTH_SECRET")
        out.update(oauth_provider=provider, oauth_key=key, oauth_secret=secret)
        if getattr(args, "oauth_redirect_uri", None):
            out["oauth_redirect_uri"] = args.oauth_redirect_uri
        if extra:
            out["oauth_extra_params"] = extra
        if os.environ.get("PANEL_OAUTH_ENCRYPTION"):
            try:
                import cryptography  # noqa: F401
            except ImportError:
                raise ChemlatentError("$PANEL_OAUTH_ENCRYPTION is set but the cryptography package "
                                      "is missing: pip install cryptography") from None
    if not is_local(address):
        where = f"{address}:{getattr(args, 'port', 5006)}"
        if basic or provider:
            warn(f"listening on {where}, reachable from other machines; logins over plain HTTP can "
                 "be read on the network: put an HTTPS reverse proxy in front (docs/security.md)")
        else:
            warn(f"listening on {where}, reachable from other machines, with no login: anyone who "
                 "reaches it can browse the survey and record verdicts; add --basic-auth or "
                 "--oauth-provider (docs/security.md)")
        if not origins and address in ("0.0.0.0", "::", ""):
            warn("browsers on other machines can open the page's websocket only through a name "
                 "given with --allow-websocket-origin HOST[:PORT]")
    return out


def _check_survey(path: str, model: str | None) -> None:
    """Fail with one line, before the loading message, when the survey or its latents are
    missing or damaged."""
    from chemlatent.io.latents import find_latents, latents_metadata
    from chemlatent.io.store import Survey

    Survey(path)
    info = find_latents(path, model)
    latents_metadata(info.path)


def run(args, source=None) -> int:
    """Serve ``args.dir``; ``source``: an already started first-run preparation
    (:class:`chemlatent.jobs.preparation.Preparation`) to serve while it works."""
    from chemlatent.app.dashboard.memory import tune_allocator
    from chemlatent.errors import ChemlatentError
    from chemlatent.explore.survey import SurveyData

    tune_allocator()  # before the survey is loaded: large arrays are mapped, and unmapped when freed

    address = getattr(args, "address", None) or "127.0.0.1"
    port_ = getattr(args, "port", None) or 5006
    if not 1 <= int(port_) <= 65535:
        raise ChemlatentError(f"--port {port_}: give a port number from 1 to 65535")
    access = access_options(args)
    if source is None and getattr(args, "out_of_core", False):
        from chemlatent.app.dashboard.overview import OverviewSource

        source = OverviewSource(args.dir, getattr(args, "model", None))
        print(f"chemlatent serve: {source.n:,} stars, read lazily; open http://{address}:{port_}/ "
              "(Ctrl-C stops)", file=sys.stderr)
    if source is None:
        _check_survey(args.dir, getattr(args, "model", None))
        print(f"chemlatent serve: loading {args.dir} ...", file=sys.stderr)
        data = SurveyData(args.dir, getattr(args, "model", None), db=getattr(args, "db", None),
                          who=getattr(args, "who", None))
        for note in data.notes:
            print(f"chemlatent serve: note: {note}", file=sys.stderr)
        print(f"chemlatent serve: {data.n:,} stars loaded in {data.load_seconds:.1f} s; "
              f"open http://{address}:{port_}/ (Ctrl-C stops)", file=sys.stderr)
        source = data
    else:
        print(f"chemlatent serve: open http://{address}:{port_}/ now: the page shows the progress "
              "and then the explorer (Ctrl-C stops)", file=sys.stderr)
    from chemlatent.app.dashboard.server import serve

    try:
        serve(source, port=port_, address=address, show=not getattr(args, "no_show", False), **access)
    except OSError as exc:  # the port is taken, the address is not this machine's, ...
        raise ChemlatentError(f"cannot listen on {address}:{port_} ({exc.strerror or exc}); "
                              "choose another --port or --address") from None
    return 0
