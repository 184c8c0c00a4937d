"""A star's noise level from its inverse variances: what the line decoders' emulated continuum
normalisation clips by and the encoder's S/N feature reads."""

from __future__ import annotations

import torch


def signal_to_noise(ivar: torch.Tensor) -> torch.Tensor:
    """Each star's S/N (B,): its mean sqrt(ivar) over good pixels, at least 1."""
    valid = ivar > 0
    return ((ivar.clamp_min(0).sqrt() * valid).sum(-1) / valid.sum(-1).clamp_min(1)).clamp_min(1.0)


def star_noise(ivar: torch.Tensor) -> torch.Tensor:
    """Each star's typical noise 1 / S/N (B, 1)."""
    return 1.0 / signal_to_noise(ivar)[:, None]
