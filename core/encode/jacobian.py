"""How pixel noise moves the encoder's outputs: its Jacobian with respect to the flux."""

from __future__ import annotations

from collections.abc import Callable

import torch


def noise_jacobian(model, flux: torch.Tensor, ivar: torch.Tensor,
                   outputs: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, ...]]
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, K, P) derivatives of the K per-star outputs ``outputs(mu, w)`` of ``model.encode``
    with respect to the flux, and (B, P) the pixel noise variance 1/ivar (0 where masked)."""
    dev = next(model.parameters()).device
    x = flux.detach().float().to(dev).clone().requires_grad_(True)
    ivar = ivar.float().to(dev)
    with torch.enable_grad():
        mu, _, w = model.encode(x, ivar)
        outs = outputs(mu, w)
        jac = torch.stack([torch.autograd.grad(o.sum(), x, retain_graph=i < len(outs) - 1)[0]
                           for i, o in enumerate(outs)], 1)
    var = torch.where(ivar > 0, 1.0 / ivar.clamp_min(1e-12), torch.zeros_like(x))
    return jac, var
