"""Where tensors run: :func:`pick_device` turns ``auto``/``cpu``/``cuda`` into a torch device."""

from __future__ import annotations

import torch

from chemlatent.errors import ChemlatentError


def pick_device(device: str) -> torch.device:
    """``auto``: a CUDA GPU when there is one, else the CPU; ``cpu``/``cuda`` as asked (a clear
    error when CUDA is asked for and missing)."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ChemlatentError("--device cuda was asked for but no CUDA GPU is available")
    if device not in ("cpu", "cuda"):
        raise ChemlatentError(f"unknown device {device!r}: use auto, cpu or cuda")
    return torch.device(device)
