"""The view's shareable parameters, kept in the page's URL."""

from __future__ import annotations

import param

from chemlatent.explore.survey import (
    SurveyData,
)


class UrlState(param.Parameterized):
    """Reading and writing the URL parameters."""

    data: SurveyData
    message: str

    # -- shareable state -----------------------------------------------------
    URL_PARAMS: tuple[str, ...] = ("x_axis", "y_axis", "color_by", "preset", "unit", "element_sigma",
                                   "fe_sigma", "element_dex", "fe_dex", "picked", "table_source",
                                   "selection_ref")

    def url_state(self) -> dict:
        """The view's shareable parameters (those kept in the URL)."""
        return {k: getattr(self, k) for k in self.URL_PARAMS}

    def apply_url_state(self, state: dict) -> None:
        """Set parameters from a URL-like dict, ignoring unknown or invalid values."""
        ok = {}
        for k, v in state.items():
            if k not in self.URL_PARAMS:
                continue
            p = self.param[k]
            try:
                if isinstance(p, param.Number) and not isinstance(p, param.Integer):
                    v = float(v)
                elif isinstance(p, param.Integer):
                    v = None if v in (None, "", "None") else int(v)
                p._validate(v)
            except (TypeError, ValueError):
                continue
            ok[k] = v
        self.param.update(**ok)
