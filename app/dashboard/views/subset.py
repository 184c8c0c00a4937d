"""The typed-subset box: a rule in the command line's grammar selects its stars; a bad
expression shows its error under the box."""

from __future__ import annotations

import panel as pn

from chemlatent.app.dashboard.views.common import StateView

EXAMPLE = "fe < -2 dex and c > 3 sigma(cond)"


class SubsetView(StateView):
    """A text box, a "Select" button (Enter works too) and the inline error."""

    def __init__(self, **params) -> None:
        super().__init__(**params)
        st = self.state
        self.w_rule = pn.widgets.TextInput(label="typed subset (rule)", placeholder=EXAMPLE, width=230,
                                           value=st.subset_text)
        self.b_apply_rule = pn.widgets.Button(label="Select", width=70)
        self.b_apply_rule.on_click(lambda e: self._apply())
        self.w_rule.param.watch(lambda e: self._apply(), "enter_pressed")
        self.rule_error = pn.pane.Markdown("", css_classes=["cl-rule-error"], styles={"color": "#b00020"})
        st.param.watch(self._on_error, ["subset_error"])

    def __panel__(self):
        return pn.Column(*self.controls())

    def controls(self) -> list:
        return [pn.Row(self.w_rule, self.b_apply_rule), self.rule_error]

    def _apply(self) -> None:
        self.state.apply_subset(self.w_rule.value_input or self.w_rule.value or "")

    def _on_error(self, *_) -> None:
        err = self.state.subset_error
        self.rule_error.object = f"**Rule not applied:** {err}" if err else ""
