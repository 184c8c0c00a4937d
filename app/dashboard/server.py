"""Serving the dashboard: ``serve`` (origins, logins, the session cap and its "busy"
page), the page each new session gets (:func:`session_page`: the explorer, the out-of-core
overview, or the first-run :func:`preparing_page`) and the warm-up before the first page."""

from __future__ import annotations

import threading

import panel as pn

from chemlatent.app.dashboard.access import is_local
from chemlatent.app.dashboard.app import enable_callback_threads, make_app
from chemlatent.app.dashboard.memory import TrimAfterSessions, tune_allocator
from chemlatent.explore.mapraster import rasterize_map
from chemlatent.explore.state import ExplorerState
from chemlatent.explore.survey import SurveyData

PREPARING_TITLE = "chemlatent explorer: preparing the survey"


def warm_up(data: SurveyData) -> None:
    """Compile the map's aggregation and the selection digests once (the first call of
    each costs a second or two), so the first page and the first selection are fast."""
    f = data.frame.iloc[: min(len(data.frame), 2000)]
    for color in ("density", "snr" if "snr" in f else "z_fe"):
        rasterize_map(f, "z_fe", "z_c", color, width=50, height=50)
    for c in ExplorerState.SUMMARY_COLUMNS:
        data.digest(c)


def session_page(source, samp: bool = True):
    """The page for a new browser session: the explorer, or, while a first run is still
    generating/encoding (``source`` is a :class:`chemlatent.jobs.preparation.Preparation`), a page
    with its progress that reloads itself into the explorer when the survey is ready."""
    enable_callback_threads()
    if isinstance(source, SurveyData):
        return make_app(source, samp=samp)
    if hasattr(source, "session_page"):  # e.g. the out-of-core overview
        return source.session_page()
    if source.ready:
        return make_app(source.data, samp=samp)
    return preparing_page(source)


def preparing_page(prep):
    """Progress of the first-run work (stage, stars, rate, ETA), updated twice a second."""
    pn.extension(notifications=False)
    title = pn.pane.Markdown("### Preparing the survey", css_classes=["cl-preparing"])
    bar = pn.indicators.Progress(value=0, max=1000, width=520, bar_color="primary")
    text = pn.pane.Markdown("", css_classes=["cl-progress"])
    reload = pn.widgets.Checkbox(value=False, visible=False)
    reload.jscallback(value="window.location.reload();")

    def update():
        st = prep.status()
        bar.value = int(1000 * min(1.0, st.fraction)) if st.total else 0
        if st.stage == "failed":
            text.object = f"**First run failed:** {st.message}"
            return
        rate = f", {st.rate:,.0f} stars/s" if st.rate else ""
        eta = f", about {st.eta_s:.0f} s left" if st.eta_s is not None else ""
        count = f": {st.done:,} of {st.total:,}{rate}{eta}" if st.total else ""
        notes = "".join(f"{n}  \n" for n in st.notes if n != st.message)
        text.object = (f"**{st.stage}**{count}  \n{st.message}  \n{notes}"
                       f"*{st.elapsed_s:.0f} s since start; this page opens the explorer by itself.*")
        if prep.ready and not reload.value:
            reload.value = True

    update()
    pn.state.add_periodic_callback(update, period=500)
    return pn.template.BootstrapTemplate(title=PREPARING_TITLE, main=[title, bar, text, reload])


def serve(data, *, port: int = 5006, address: str = "127.0.0.1", show: bool = True,
          threaded: bool = False, allow_websocket_origin: list[str] | None = None,
          max_sessions: int | None = None, **kwargs):
    """Serve the dashboard; each browser session gets its own state. ``data``: a
    :class:`SurveyData`, or a first-run ``Preparation`` (see :func:`session_page`).

    The page's websocket is accepted from ``address``, localhost and 127.0.0.1 on ``port``
    plus the hosts in ``allow_websocket_origin``. At most ``max_sessions`` browser sessions
    run at once (None: no limit); the next ones get a short "busy" page. Other keyword
    arguments go to ``pn.serve`` (``basic_auth``, ``cookie_secret``, ``oauth_provider``, ...;
    see docs/security.md). Nothing a browser sends names a file on the server.
    """
    tune_allocator()
    if isinstance(data, SurveyData):
        warm_up(data)
    samp = is_local(address)  # a remote user's TOPCAT is out of the server's reach
    origins = [f"{address}:{port}", f"localhost:{port}", f"127.0.0.1:{port}"]
    origins += [o for o in (allow_websocket_origin or []) if o not in origins]
    live = {"sessions": 0}
    lock = threading.Lock()

    trim = TrimAfterSessions()

    def release(_context) -> None:
        with lock:
            live["sessions"] -= 1

    def app():  # a plain function: Panel calls it once per browser session
        doc = pn.state.curdoc
        if doc is not None:
            doc.on_session_destroyed(trim.session_ended)  # give the session's memory back
        if max_sessions is not None and doc is not None:
            with lock:
                if live["sessions"] >= max_sessions:
                    return pn.template.BootstrapTemplate(
                        title="chemlatent explorer is busy", main=[pn.pane.Markdown(
                            f"{max_sessions} sessions are open; close one, or try again in a minute.",
                            css_classes=["cl-busy"])])
                live["sessions"] += 1
            try:
                page = session_page(data, samp=samp)
            except BaseException:
                release(None)
                raise
            doc.on_session_destroyed(release)
            return page
        return session_page(data, samp=samp)

    return pn.serve({"/": app}, port=port, address=address, show=show,
                    threaded=threaded, websocket_origin=origins, title="chemlatent explorer", **kwargs)
