"""Keyboard shortcuts for a page area: keys pressed outside text fields go to the server."""

from __future__ import annotations

import param
from panel.custom import ReactiveHTML


class KeyShortcuts(ReactiveHTML):
    """An invisible element that listens to the page's key presses while it is shown.

    ``keys``: the keys of interest (single characters); ``pressed`` is set to
    ``"<key> <counter>"`` on each press of one of them (the counter makes repeats events),
    unless the focus is in a text field, a select or a text area, or a modifier is held.
    """

    keys = param.String(default="", doc="the single-character keys to report")
    pressed = param.String(default="", doc="'<key> <n>' of the last key pressed")

    _template = '<div id="keys" style="display:none"></div>'

    _scripts = {
        "render": """
          let n = 0
          const typing = (e) => e.composedPath().some((el) => el.tagName &&
              ['INPUT', 'TEXTAREA', 'SELECT'].includes(el.tagName) || el.isContentEditable)
          state.handler = (e) => {
            if (!keys.isConnected || keys.closest('[hidden]')) return
            if (e.ctrlKey || e.metaKey || e.altKey || typing(e)) return
            if (e.key.length !== 1 || !data.keys.includes(e.key)) return
            n += 1
            data.pressed = e.key + ' ' + n
          }
          document.addEventListener('keydown', state.handler)
        """,
        "remove": "document.removeEventListener('keydown', state.handler)",
    }

    def key(self) -> str:
        """The key of the last press ('' before any)."""
        return self.pressed.split(" ", 1)[0]
