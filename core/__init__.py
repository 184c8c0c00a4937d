"""chemlatent core library: grids, synthetic surveys, the survey store, ingestion, the VAE.

Nothing in this package imports Panel, Bokeh or HoloViews; the dashboard lives in
``chemlatent.app``.
"""

__version__ = "0.1.0"
