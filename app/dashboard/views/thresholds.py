"""The rule controls: preset, unit, threshold sliders and the live counts."""

from __future__ import annotations

import panel as pn

from chemlatent.app.dashboard.views.common import StateView, area_status, from_state, throttled_slider

LOW_PRECISION = 0.1  # below this, the model cannot support the preset at these thresholds


def counts_text(summary: dict, has_rule: bool) -> str:
    """Flagged, expected by chance (and under which null), the rule, precision/recall and a
    warning when the flags are no better than chance or mostly false, as Markdown."""
    if not has_rule:
        return "No rule: choose a preset to flag stars."
    c = summary
    null = f" <span title=\"{c['null_text']}\">(null: {c['null']})</span>" if "null" in c else ""
    lines = [f"**{c['n_flagged']:,} flagged** of {c['n_stars']:,}",
             f"expected by chance{null}: {c['expected']:,.1f}", f"`{c['rule']}`"]
    if "precision" in c:
        lines.append(f"precision {c['precision']:.3f}, recall {c['recall']:.3f} "
                     f"({c['n_true']:,} true by the labels)")
    warn = []
    if c["n_flagged"] and c["n_flagged"] <= 2 * c["expected"]:
        warn.append("no more stars flagged than chance would give")
    if "precision" in c and c["n_flagged"] and not c["precision"] >= LOW_PRECISION:
        warn.append(f"precision {c['precision']:.3f}: this model's latents cannot support "
                    "this preset at these thresholds")
    if warn:
        lines.append("<span class='cl-warn' style='color:#b35900'>warning: " + "; ".join(warn) + "</span>")
    return "\n\n".join(lines)


class ThresholdsView(StateView):
    """Preset and unit choices, the sliders of the active unit and the counts."""

    def __init__(self, **params) -> None:
        super().__init__(**params)
        st = self.state
        self.w_preset = from_state(pn.widgets.Select, st.param.preset, label="rule preset", width=140)
        self.w_unit = from_state(pn.widgets.RadioButtonGroup, st.param.unit, color="light")
        self.s_elem_sigma = throttled_slider(st, "element_sigma", "element cut (sigma at its z_Fe)")
        self.s_fe_sigma = throttled_slider(st, "fe_sigma", "metal-poor: z_Fe below median by (sigma)")
        self.s_elem_dex = throttled_slider(st, "element_dex", "element cut (dex)")
        self.s_fe_dex = throttled_slider(st, "fe_dex", "[Fe/H] below (dex)")
        self.counts_md = pn.pane.Markdown(self._counts_text(), name="flag counts", width=300,
                                          css_classes=["cl-counts"])
        self.threshold_status = area_status(st, "thresholds", "cl-threshold-status")
        st.param.watch(self._on_unit, ["unit", "preset"])
        st.param.watch(self._on_flags, ["flagged"])
        self._on_unit()

    def __panel__(self):
        return pn.Column(*self.controls())

    def controls(self) -> list:
        """The sidebar's threshold controls."""
        return [pn.pane.Markdown("#### Thresholds"), self.w_preset, self.w_unit,
                self.s_elem_sigma, self.s_fe_sigma, self.s_elem_dex, self.s_fe_dex, self.threshold_status,
                self.counts_md]

    def _counts_text(self) -> str:
        return counts_text(self.state.counts_summary(), self.state.rule is not None)

    def _on_unit(self, *_):
        st = self.state
        dex = st.unit == "dex"
        on = st.preset != "none"
        self.s_elem_sigma.visible = not dex and on
        self.s_elem_dex.visible = dex and on
        # with a calibrated Fe axis, metal-poor is [Fe/H] in dex in both units (docs/flags.md)
        self.s_fe_sigma.visible = not dex and on and not st.fe_in_dex
        self.s_fe_dex.visible = (dex or st.fe_in_dex) and on

    def _on_flags(self, *_):
        text = self._counts_text()
        self._apply(lambda: setattr(self.counts_md, "object", text))
