"""Learned per-pixel scatter in the likelihood (as in Laroche & Speagle 2025).

Every window pixel ``j`` gets an extra variance ``s_j**2``, learned with the model, added to
the photon noise: the Gaussian likelihood of a residual ``r`` becomes

    nll = 0.5 * sum_j ( r_j**2 / (1/ivar_j + s_j**2) + log(1/ivar_j + s_j**2) )

(pixels with ``ivar = 0`` left out). Pixels the decoders cannot model (lines missing from the
line list, telluric or calibration residue on real spectra) grow a large ``s`` and stop
steering the latents; well-modelled pixels keep ``s`` near zero and their full weight.
"""

from __future__ import annotations

import math

import torch
from torch import nn

INITIAL_SCATTER = 0.003  # continuum-normalised flux units


class PixelScatter(nn.Module):
    """One learned log scatter per window pixel."""

    def __init__(self, n_pixels: int, initial: float = INITIAL_SCATTER) -> None:
        super().__init__()
        self.log_s = nn.Parameter(torch.full((n_pixels,), math.log(initial)))

    def nll(self, residual: torch.Tensor, ivar: torch.Tensor) -> torch.Tensor:
        """Per-star negative log likelihood (without the constant) over the pixels with ivar > 0."""
        good = ivar > 0
        base = torch.where(good, 1.0 / ivar.clamp_min(1e-12), torch.ones_like(ivar))
        var = base + torch.exp(2 * self.log_s)
        # the photon-noise part of log(var) does not depend on the model: subtract it, so the
        # value stays comparable with the plain chi2 / 2 (and is exactly it when s = 0)
        terms = residual.float() ** 2 / var + torch.log(var / base)
        return 0.5 * torch.where(good, terms, torch.zeros_like(terms)).sum(-1)

    @torch.no_grad()
    def summary(self) -> dict:
        s = torch.exp(self.log_s).cpu()
        return {"median": float(s.median()), "p90": float(s.quantile(0.9)), "max": float(s.max())}
