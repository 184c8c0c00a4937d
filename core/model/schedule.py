"""The learning-rate schedule of training: one cycle, and its stretch when a run resumes longer."""

from __future__ import annotations

import torch

from chemlatent.errors import ChemlatentError


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
