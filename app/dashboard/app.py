"""The app factory: one browser session's page, composed of one view per page area over
the session's own :class:`chemlatent.explore.state.ExplorerState`."""

from __future__ import annotations

import logging

import panel as pn

from chemlatent.app.dashboard.views.candidates import CandidatesView
from chemlatent.app.dashboard.views.compare import CompareView
from chemlatent.app.dashboard.views.map import MapView
from chemlatent.app.dashboard.views.ranking import RankingView
from chemlatent.app.dashboard.views.reinference import ReinferenceView
from chemlatent.app.dashboard.views.samp_link import SampLinkView
from chemlatent.app.dashboard.views.selection import SelectionView
from chemlatent.app.dashboard.views.selections import SelectionsView
from chemlatent.app.dashboard.views.spectrum import SpectrumView
from chemlatent.app.dashboard.views.spectrum_tools import SpectrumToolsView
from chemlatent.app.dashboard.views.stack import StackView
from chemlatent.app.dashboard.views.subset import SubsetView
from chemlatent.app.dashboard.views.thresholds import ThresholdsView
from chemlatent.explore.session_runs import RunsState
from chemlatent.explore.state import ExplorerState
from chemlatent.explore.survey import SurveyData

log = logging.getLogger("chemlatent.dashboard")
CALLBACK_THREADS = 4


def enable_callback_threads(n: int = CALLBACK_THREADS) -> None:
    """Run event callbacks on a thread pool, so one session's slow callback (a stack of
    hundreds of spectra, a big export) never freezes the others' pages."""
    if pn.config.nthreads is None:
        pn.config.nthreads = n


class Dashboard:
    """One session's page: the views, the status line and the layout that holds them."""

    def __init__(self, data: SurveyData, state: ExplorerState | None = None, queue=None,
                 samp: bool = True) -> None:
        self.state = st = state or ExplorerState(data)
        self.runs = RunsState(st, queue=queue, user=st.user)
        self.map = MapView(state=st, runs=self.runs)
        self.thresholds = ThresholdsView(state=st)
        self.selection = SelectionView(state=st)
        self.spectrum_view = SpectrumView(state=st)
        self.stack = StackView(state=st, zoom=self.spectrum_view.zoom_range)
        self.candidates = CandidatesView(state=st, samp=samp)
        self.reinference = ReinferenceView(state=st, runs=self.runs)
        self.compare_view = CompareView(state=st)
        self.ranking_view = RankingView(state=st)
        self.selections_view = SelectionsView(state=st)
        self.subset_view = SubsetView(state=st)
        self.tools_view = SpectrumToolsView(state=st)
        self.samp_link = SampLinkView(state=st, samp=samp)
        self.views = [self.map, self.thresholds, self.selection, self.spectrum_view, self.stack,
                      self.candidates, self.reinference, self.compare_view, self.ranking_view,
                      self.selections_view, self.subset_view, self.tools_view, self.samp_link]
        self.message = pn.pane.Markdown("", name="status", css_classes=["cl-status"])
        st.param.watch(self._on_message, ["message"])
        self.runs.param.watch(self._on_applied, ["applied"])
        if st.picked is not None:
            self.spectrum_view.refresh()
        for v in self.views:  # from now on, plot changes go through the session's event loop
            v.attach_document()

    # the areas' parts that tests and scripts reach
    @property
    def data(self) -> SurveyData:
        return self.state.data

    def __getattr__(self, name: str):
        """Widgets and panes by their name, from whichever view holds them."""
        for v in self.__dict__.get("views", ()):
            if name in v.__dict__:
                return v.__dict__[name]
        raise AttributeError(name)

    def _on_message(self, *_):
        self.message.object = f"**{self.state.message}**" if self.state.message else ""

    def _on_applied(self, *_):
        self.map.rebuild()
        self.selection.rebuild()
        self.candidates.refresh()

    def sidebar(self) -> list:
        data = self.data
        return [
            pn.pane.Markdown(f"**Survey** `{data.path.name}`: {data.n:,} stars  \n"
                             f"**Model** `{data.model_name}`"
                             + ("  \n*calibrated (dex available)*" if data.calibration else "")),
            *self.map.controls(),
            pn.layout.Divider(),
            *self.thresholds.controls(),
            pn.layout.Divider(),
            *self.selections_view.controls(),
            *self.subset_view.controls(),
            *self.samp_link.controls(),
            pn.layout.Divider(), self.message,
        ]

    def main(self) -> list:
        explore = pn.Column(pn.Row(self.map, self.spectrum_view, sizing_mode="stretch_width"),
                            self.selection, self.stack, sizing_mode="stretch_width", name="Explore")
        items = [("Explore", explore), ("Candidates", pn.Column(self.ranking_view, self.candidates)),
                 ("Re-inference", self.reinference), ("Compare", self.compare_view),
                 ("Spectrum tools", self.tools_view)]
        tabs = pn.Tabs(*items, dynamic=True, sizing_mode="stretch_width")
        tools_tab = len(items) - 1  # the spectrum tools draw only while their tab is shown
        self.candidates.shown = tabs.active == 1  # the candidate table is rebuilt only when shown

        def shown(event) -> None:
            self.candidates.shown = event.new == 1
            self.tools_view.shown = event.new == tools_tab

        tabs.param.watch(shown, "active")
        return [tabs]


def make_app(data: SurveyData, samp: bool = True, **state_params):
    """One session's page (called by the server for each browser session); ``samp``: offer
    sending tables over SAMP (only when the server runs on the user's own machine)."""
    enable_callback_threads()
    pn.extension("tabulator", notifications=False)
    user = getattr(pn.state, "user", None) or None  # set when served with --basic-auth or OAuth
    state = ExplorerState(data, user=user, **state_params)
    if pn.state.location is not None:
        try:
            query = {k: v for k, v in (pn.state.location.query_params or {}).items()}
            state.apply_url_state(query)
            pn.state.location.sync(state, {k: k for k in state.URL_PARAMS})
        except Exception as exc:  # a bad URL must not break the page
            log.warning("URL state ignored: %s", exc)
    dash = Dashboard(data, state, samp=samp)
    # one root per area: the template adds each item as a document root, and every root added
    # re-walks the whole document
    sidebar = pn.Column(*dash.sidebar(), sizing_mode="stretch_width")
    tmpl = pn.template.BootstrapTemplate(title="chemlatent explorer", sidebar=[sidebar],
                                         main=dash.main(), sidebar_width=330)
    tmpl._dashboard = dash  # for tests and scripts
    return tmpl
