"""Two phases of training: the decoders fit in a short run, then the encoder trains alone.

The line decoders' free per-line strengths drift along directions the spectra hardly
constrain (where each line sits on the curve of growth), and the drift grows with optimiser
steps, not with data: 6 epochs on 60,000 stars (~670 steps) give raw r(z_alpha, [alpha/Fe])
0.70 on a fresh survey, 24 epochs on 190,000 stars (~8,900 steps) give 0.0 (docs/model.md,
"What set the line decoders' units"). With ``TrainOptions.decoder_steps = S`` the whole
model trains for the first S optimiser steps under its own one-cycle schedule; then the
decoders are frozen and the encoder (with the adversary and the prior's centre) trains the
remaining steps under a fresh one-cycle, so the axes' units are those of the short run while
the encoder gets the whole budget. A run of at most S steps has one phase.
"""

from __future__ import annotations

import torch
from torch import nn

from chemlatent.errors import ChemlatentError


def decoder_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The generative side's parameters: the line decoders or the per-group decoders, and
    the slope the curve-of-growth decoders share."""
    params = [p for name in ("lines", "decoders") if getattr(model, name, None) is not None
              for p in getattr(model, name).parameters()]
    slope = getattr(model, "log_slope", None)
    return params + ([slope] if isinstance(slope, nn.Parameter) else [])


def joint_steps(total_steps: int, decoder_steps: int) -> int:
    """Optimiser steps of the joint phase (the whole run when ``decoder_steps`` is 0 or
    covers it)."""
    if decoder_steps < 0:
        raise ChemlatentError(f"decoder_steps must be >= 0, got {decoder_steps}")
    return total_steps if decoder_steps == 0 else min(decoder_steps, total_steps)


def in_encoder_phase(step: int, total_steps: int, decoder_steps: int) -> bool:
    """Whether global optimiser step ``step`` (0-based) trains the encoder alone."""
    return step >= joint_steps(total_steps, decoder_steps)


def schedule_steps(step: int, total_steps: int, decoder_steps: int) -> int:
    """Length of the one-cycle schedule that global step ``step`` belongs to."""
    joint = joint_steps(total_steps, decoder_steps)
    return total_steps - joint if in_encoder_phase(step, total_steps, decoder_steps) else joint


def freeze_decoders(model: nn.Module, frozen: bool = True) -> None:
    """Switch the decoders' gradients off (or back on)."""
    for p in decoder_parameters(model):
        p.requires_grad_(not frozen)


def trainable(model: nn.Module) -> list[nn.Parameter]:
    """The parameters an optimiser should hold now."""
    return [p for p in model.parameters() if p.requires_grad]


def new_optimiser(model: nn.Module, lr: float, weight_decay: float, warmup_fraction: float,
                  total_steps: int) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.OneCycleLR]:
    """AdamW over the trainable parameters with a one-cycle schedule of ``total_steps``."""
    opt = torch.optim.AdamW(trainable(model), lr=lr, weight_decay=weight_decay)
    return opt, one_cycle_schedule(opt, lr, total_steps, warmup_fraction)


def one_cycle_schedule(opt: torch.optim.Optimizer, lr: float, total_steps: int,
                       warmup_fraction: float) -> torch.optim.lr_scheduler.OneCycleLR:
    """Up to ``lr`` in the first ``warmup_fraction`` of ``total_steps``, then annealed."""
    if not 0.0 < warmup_fraction < 1.0:
        raise ChemlatentError(f"warmup_fraction must be between 0 and 1, not {warmup_fraction}")
    return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(1, total_steps),
                                               pct_start=warmup_fraction)


def stretch_schedule(sched: torch.optim.lr_scheduler.OneCycleLR, total_steps: int,
                     warmup_fraction: float) -> None:
    """Give a (resumed) one-cycle schedule a new length: its warm-up and annealing phases end
    where a schedule built for ``total_steps`` would end them (setting ``total_steps`` alone
    leaves the phases of the old length, and the rate climbs again after their end)."""
    total = max(1, int(total_steps))
    sched.total_steps = total
    phases = sched._schedule_phases
    phases[0]["end_step"] = float(warmup_fraction * total) - 1
    phases[-1]["end_step"] = total - 1
