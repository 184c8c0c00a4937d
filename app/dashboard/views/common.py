"""What the views share: axis labels, sizes, the base Viewer and small widget helpers."""

from __future__ import annotations

import weakref
from functools import partial

import holoviews as hv
import panel as pn
import param

from chemlatent.app.dashboard.live_plots import apply_in_document
from chemlatent.explore.state import ExplorerState

LABELS = {"z_fe": "z_Fe", "z_c": "z_C", "z_alpha": "z_alpha", "w_0": "w_0 (Teff)", "w_1": "w_1 (logg)",
          "teff_pred": "predicted Teff (K)", "logg_pred": "predicted log g", "fe_h": "[Fe/H] (truth)",
          "c_fe": "[C/Fe] (truth)", "alpha_fe": "[alpha/Fe] (truth)", "teff": "Teff (truth)",
          "logg": "log g (truth)", "snr": "S/N", "chi2": "reconstruction chi2",
          "score": "anomaly score (Mahalanobis d2)", "s_c_cond": "z_C sigma at its z_Fe",
          "s_alpha_cond": "z_alpha sigma at its z_Fe", "density": "density", "flagged": "flagged"}
# widget help (the "?" tooltip): what the label alone does not say
HELP = {
    "x_axis": "Any latent, predicted or (simulated surveys) true label; Teff axes run right to left "
              "and log g axes downward, as in a Kiel diagram.",
    "y_axis": "Any latent, predicted or (simulated surveys) true label; Teff axes run right to left "
              "and log g axes downward, as in a Kiel diagram.",
    "color_by": "density: stars per pixel (equalised); flagged: pixels holding a flagged star in red; "
                "a column: its mean per pixel.",
    "selection_mode": "How a new box or lasso combines with the current selection.",
    "preset": "cemp: carbon-enhanced metal-poor; apmp: alpha-poor metal-poor (docs/flags.md).",
    "unit": "sigma: cuts in the survey's own spread (metallicity-conditional for C and alpha); "
            "dex: calibrated abundances (needs a calibration).",
    "table_source": "Which stars the table lists; verdicts are kept per star whatever the source.",
    "export_format": "CSV, FITS or VOTable, each with the rule, null, calibration and units.",
    "element_sigma": "How far above (C) or below (alpha) stars of similar z_Fe, in their robust spread.",
    "fe_sigma": "Used without an iron calibration: how far below the survey's median z_Fe.",
    "element_dex": "[C/Fe] above (cemp) or [alpha/Fe] below (apmp) this value.",
    "fe_dex": "Metal-poor: calibrated [Fe/H] below this value.",
}
MAP_SIZE = (560, 480)
SPEC_WIDTH = 560

hv.extension("bokeh", logo=False)


def weak_hook(method):
    """A HoloViews hook that calls ``method`` without keeping its object alive: plot options
    live in a global HoloViews registry, so a hook holding the dashboard would keep every
    closed session in memory."""
    ref = weakref.WeakMethod(method)

    def hook(plot, element) -> None:
        m = ref()
        if m is not None:
            m(plot, element)

    return hook


class StateView(pn.viewable.Viewer):
    """A page area over the session's state. Plot changes made while the page is built are
    applied directly; after :meth:`attach_document` they go through the session's event loop."""

    state = param.ClassSelector(class_=ExplorerState, doc="the session's state")

    def __init__(self, **params) -> None:
        super().__init__(**params)
        self._doc = None

    @property
    def data(self):
        """The session's current data (changes when a re-inference run is applied)."""
        return self.state.data

    def attach_document(self, doc=None) -> None:
        """From now on, apply plot changes on ``doc``'s event loop (default: the current one)."""
        self._doc = doc if doc is not None else pn.state.curdoc

    def _apply(self, fn, delay_ms: int = 0) -> None:
        apply_in_document(self._doc, fn, delay_ms)


_AFTER_LOAD: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # document -> callables


def after_load(fn) -> None:
    """Run ``fn`` once the browser has shown the page (a served session being built), else
    now: parts below the map are built after the first paint, so a burst of users all get a
    usable map sooner. A page's deferred parts run in one callback, in the order given."""
    doc = pn.state.curdoc
    if doc is None or doc.session_context is None or pn.state.loaded:
        fn()
        return
    if doc not in _AFTER_LOAD:
        _AFTER_LOAD[doc] = []
        pn.state.onload(partial(_run_after_load, weakref.ref(doc)))
    _AFTER_LOAD[doc].append(fn)


def _run_after_load(ref) -> None:
    doc = ref()
    fns = _AFTER_LOAD.pop(doc, []) if doc is not None else []
    if not fns:
        return
    for fn in fns:
        fn()


def area_status(state: ExplorerState, area: str, css_class: str) -> pn.pane.Markdown:
    """A status line for one group of controls: the state's messages about ``area`` (its
    ``message_area``), shown next to those controls."""
    pane = pn.pane.Markdown("", css_classes=["cl-area-status", css_class], margin=(0, 10))
    doc = pn.state.curdoc  # the session's document while its page is built

    def show(*_) -> None:
        if state.message_area != area:
            return
        text = f"*{state.message}*" if state.message else ""
        # on the session's event loop, under its document lock: messages come from stream
        # callbacks and callback threads of many sessions at once
        apply_in_document(doc, lambda: setattr(pane, "object", text))

    state.param.watch(show, ["message", "message_area"])
    return pane


def from_state(widget_type, parameter, **kwargs):
    """A widget bound to a state parameter, with help from :data:`HELP`."""
    return widget_type.from_param(parameter, description=HELP.get(parameter.name), **kwargs)


def throttled_slider(state: ExplorerState, name: str, label: str) -> pn.widgets.FloatSlider:
    """A slider bound both ways to a numeric state parameter, setting it when released."""
    p = state.param[name]
    lo, hi = p.bounds
    s = pn.widgets.FloatSlider(label=label, start=lo, end=hi, step=p.step or 0.1,
                               value=getattr(state, name), width=280)
    s.param.watch(lambda e: setattr(state, name, e.new), "value_throttled")
    state.param.watch(lambda e: setattr(s, "value", e.new), name)
    return s
