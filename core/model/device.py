"""Where tensors run: :func:`pick_device` turns ``auto``/``cpu``/``cuda`` into a torch device.

Every module that needs a device imports it from here. The function is defined with the
training loop for now (:mod:`chemlatent.model.training`) and re-exported as the one
import point.
"""

from chemlatent.model.training import pick_device

__all__ = ["pick_device"]
