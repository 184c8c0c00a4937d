"""chemlatent core library: grids, synthetic surveys, the survey store, ingestion, the VAE.

Nothing in this package imports Panel, Bokeh or HoloViews; the dashboard lives in
``chemlatent.app``.
"""

import os

# Intel MKL (PyTorch's CPU matrix library) may round a product differently depending on the
# memory alignment of its operands; its strict reproducibility mode removes that, so a
# resumed training run gives the same weights as an uninterrupted one on every CPU. It only
# takes effect when set before the first MKL call, hence here (docs/model.md).
os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")

__version__ = "0.1.0"
