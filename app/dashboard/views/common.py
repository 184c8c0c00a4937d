"""What the views share: axis labels, sizes, the base Viewer and small widget helpers."""

from __future__ import annotations

import weakref

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

    def _apply(self, fn) -> None:
        apply_in_document(self._doc, fn)


def throttled_slider(state: ExplorerState, name: str, label: str) -> pn.widgets.FloatSlider:
    """A slider bound both ways to a numeric state parameter, setting it when released."""
    p = state.param[name]
    lo, hi = p.bounds
    s = pn.widgets.FloatSlider(label=label, start=lo, end=hi, step=p.step or 0.1,
                               value=getattr(state, name), width=280)
    s.param.watch(lambda e: setattr(state, name, e.new), "value_throttled")
    state.param.watch(lambda e: setattr(s, "value", e.new), name)
    return s
