"""The "best next" line of the Candidates tab: how the learned ranking stands (how many
verdicts it learned from) and a button that shows the best unvetted stars in the table."""

from __future__ import annotations

import panel as pn

from chemlatent.app.dashboard.views.common import StateView
from chemlatent.explore.state.ranking import BEST_NEXT


class RankingView(StateView):
    """A status line and a "Show best next" button over the candidate table."""

    def __init__(self, **params) -> None:
        super().__init__(**params)
        st = self.state
        self.b_best_next = pn.widgets.Button(label="Show best next (learned from verdicts)", color="primary")
        self.b_best_next.on_click(lambda e: setattr(st, "table_source", BEST_NEXT))
        self.ranking_md = pn.pane.Markdown("", css_classes=["cl-ranking"])
        st.param.watch(self.refresh, ["verdicts_changed", "flagged", "table_source"])

    def __panel__(self):
        return pn.Row(self.b_best_next, self.ranking_md, sizing_mode="stretch_width")

    def refresh(self, *_) -> None:
        """Say what the ranking learned from (computed only while the table shows it)."""
        st = self.state
        if st.table_source != BEST_NEXT:
            self.ranking_md.object = ("*Best next: accept and reject stars; the table's "
                                      "\"best next\" ordering learns from every verdict.*")
            return
        self.ranking_md.object = f"**{st.ranking_text()}**"
