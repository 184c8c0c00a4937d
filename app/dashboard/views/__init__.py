"""One ``pn.viewable.Viewer`` per page area, each holding the session's
:class:`chemlatent.explore.state.ExplorerState` as a ``param.ClassSelector``."""
