"""The app factory: one browser session's page, composed of one view per page area over
the session's own :class:`chemlatent.explore.state.ExplorerState`."""

from __future__ import annotations

import logging

import panel as pn

from chemlatent.app.dashboard.live_plots import apply_in_document
from chemlatent.app.dashboard.views.candidates import CandidatesView
from chemlatent.app.dashboard.views.common import StateView
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
    """One session's page: the views, the status line and the layout that holds them.

    The Explore tab and the sidebar are built with the page; the views of the other tabs
    (Candidates, Re-inference, Compare, Spectrum tools) are built when their tab is first
    shown or their attribute is first used, so opening a page costs only what it shows."""

    TAB_VIEWS = {1: ("ranking_view", "candidates"), 2: ("reinference",), 3: ("compare_view",),
                 4: ("tools_view",)}

    def __init__(self, data: SurveyData, state: ExplorerState | None = None, queue=None,
                 samp: bool = True) -> None:
        self.state = st = state or ExplorerState(data)
        self._doc = pn.state.curdoc  # the session's document (None outside a server)
        self.samp = samp
        self.runs = RunsState(st, queue=queue, user=st.user)
        self.map = MapView(state=st, runs=self.runs)
        self.thresholds = ThresholdsView(state=st)
        self.selection = SelectionView(state=st)
        self.spectrum_view = SpectrumView(state=st)
        self.stack = StackView(state=st, zoom=self.spectrum_view.zoom_range)
        self.selections_view = SelectionsView(state=st)
        self.subset_view = SubsetView(state=st)
        self.samp_link = SampLinkView(state=st, samp=samp)
        self.views = [self.map, self.thresholds, self.selection, self.spectrum_view, self.stack,
                      self.selections_view, self.subset_view, self.samp_link]
        self._lazy: dict[str, StateView] = {}
        self._tab_slots = {i: pn.Column(sizing_mode="stretch_width") for i in self.TAB_VIEWS}
        self.message = pn.pane.Markdown("", name="status", css_classes=["cl-status"])
        st.param.watch(self._on_message, ["message"])
        self.runs.param.watch(self._on_applied, ["applied"])
        if st.picked is not None:
            self.spectrum_view.refresh()
        for v in self.views:  # from now on, plot changes go through the session's event loop
            v.attach_document(self._doc)

    # the views of the other tabs, built on first use
    @property
    def candidates(self) -> CandidatesView:
        return self._view("candidates", lambda: CandidatesView(state=self.state, samp=self.samp))

    @property
    def ranking_view(self) -> RankingView:
        return self._view("ranking_view", lambda: RankingView(state=self.state))

    @property
    def reinference(self) -> ReinferenceView:
        return self._view("reinference", lambda: ReinferenceView(state=self.state, runs=self.runs))

    @property
    def compare_view(self) -> CompareView:
        return self._view("compare_view", lambda: CompareView(state=self.state))

    @property
    def tools_view(self) -> SpectrumToolsView:
        return self._view("tools_view", lambda: SpectrumToolsView(state=self.state))

    def _view(self, name: str, make):
        """The view ``name``, built (and attached to the session's document) the first time."""
        v = self._lazy.get(name)
        if v is None:
            v = self._lazy[name] = make()
            if name == "candidates":
                v.shown = self._tabs is not None and self._tabs.active == 1
                if self.state.picked is not None:  # the star picked before the tab was opened
                    v.spectrum_view.refresh()
            elif name == "ranking_view":
                v.refresh()
            if self._doc is not None:
                v.attach_document(self._doc)
            self.views.append(v)
        return v

    def _fill_tab(self, i: int) -> None:
        """Put tab ``i``'s views into its slot (once, when the tab is first shown)."""
        slot = self._tab_slots.get(i)
        if slot is not None and not slot.objects:
            slot.objects = [getattr(self, name) for name in self.TAB_VIEWS[i]]

    _tabs = None

    # the areas' parts that tests and scripts reach
    @property
    def data(self) -> SurveyData:
        return self.state.data

    def __getattr__(self, name: str):
        """Widgets and panes by their name, from whichever view holds them (building the
        other tabs' views when no built view has it)."""
        views = self.__dict__.get("views")
        if views is None:
            raise AttributeError(name)
        for build in (False, True):
            if build:
                for names in self.TAB_VIEWS.values():
                    for n in names:
                        getattr(self, n)
            for v in views:
                if name in v.__dict__:
                    return v.__dict__[name]
        raise AttributeError(name)

    def _on_message(self, *_):
        text = f"**{self.state.message}**" if self.state.message else ""
        apply_in_document(self._doc, lambda: setattr(self.message, "object", text))

    def _on_applied(self, *_):
        self.map.rebuild()
        self.selection.rebuild()
        if "candidates" in self._lazy:
            self.candidates.refresh()

    def sidebar(self) -> list:
        data = self.data
        return [
            pn.pane.Markdown(f"**Survey** `{data.path.name}`: {data.n:,} stars  \n"
                             f"**Model** `{data.model_name}`"
                             + (f"  \n*latents: {data.latents_reading}*" if data.latents_reading else "")
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
        names = ["Candidates", "Re-inference", "Compare", "Spectrum tools"]
        items = [("Explore", explore)] + [(n, self._tab_slots[i]) for i, n in enumerate(names, 1)]
        self._tabs = tabs = pn.Tabs(*items, dynamic=True, sizing_mode="stretch_width")
        tools_tab = len(items) - 1  # the spectrum tools draw only while their tab is shown
        if tabs.active in self._tab_slots:
            self._fill_tab(tabs.active)
        if "candidates" in self._lazy:  # the candidate table is rebuilt only when shown
            self.candidates.shown = tabs.active == 1

        def shown(event) -> None:
            self._fill_tab(event.new)
            if "candidates" in self._lazy:
                self.candidates.shown = event.new == 1
            if "tools_view" in self._lazy:
                self.tools_view.shown = event.new == tools_tab

        tabs.param.watch(shown, "active")
        return [tabs]


def share_stylesheets(doc) -> int:
    """Let every model of ``doc`` that imports the same stylesheet share one
    ``ImportedStyleSheet`` (Panel makes one per component and stylesheet: about 120 per page,
    8 distinct); returns how many were dropped. Fewer models make the page cheaper to walk,
    send and decode; the page looks the same."""
    from bokeh.model.util import collect_models
    from bokeh.models import ImportedStyleSheet

    shared: dict[str, ImportedStyleSheet] = {}
    dropped = 0
    for m in collect_models(*doc.roots):
        sheets = getattr(m, "stylesheets", None)
        if not sheets:
            continue
        new = [shared.setdefault(s.url, s) if isinstance(s, ImportedStyleSheet) else s for s in sheets]
        n = sum(a is not b for a, b in zip(new, sheets))
        if n:
            m.stylesheets = new
            dropped += n
    return dropped


class ExplorerTemplate(pn.template.BootstrapTemplate):
    """The page's template; its roots are added to the document in one go (Bokeh re-walks
    every model of the document once, instead of once per root added)."""

    def _init_doc(self, doc=None, comm=None, title=None, notebook=False, location=True):
        document = doc or pn.state.curdoc
        if document is None or comm is not None:
            return super()._init_doc(doc, comm, title, notebook, location)
        with document.models.freeze():
            out = super()._init_doc(document, comm, title, notebook, location)
            share_stylesheets(document)
        return out


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
    tmpl = ExplorerTemplate(title="chemlatent explorer", sidebar=[sidebar],
                                         main=dash.main(), sidebar_width=330)
    tmpl._dashboard = dash  # for tests and scripts
    return tmpl
