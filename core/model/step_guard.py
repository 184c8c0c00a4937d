"""Optimiser steps that cannot turn a model's weights into NaN.

One batch with a non-finite loss or gradient (an extreme star meeting a decoder at the edge
of its range) would otherwise write NaN into every weight through Adam, and the next
checkpoint would keep it. ``StepGuard.step`` skips such a step (the optimiser's and the
scheduler's state unchanged but for the schedule's position); ``end_epoch`` says how many it
skipped and raises when more than ``max_share`` of an epoch's steps were skipped, or when a
weight is not finite, before any checkpoint of that epoch is written, so the last checkpoint
stays a good one to resume from (e.g. with a lower --lr).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from chemlatent.errors import ChemlatentError


class StepGuard:
    """Backward, clip and step, skipping steps whose loss or gradient norm is not finite."""

    def __init__(self, clip: float = 5.0, max_share: float = 0.05,
                 log: Callable[[str], None] = print) -> None:
        self.clip = clip
        self.max_share = max_share
        self.log = log
        self.skipped = 0
        self.steps = 0

    def step(self, model: torch.nn.Module, opt: torch.optim.Optimizer, loss: torch.Tensor) -> bool:
        """One optimiser step on ``loss``; False (and no step) when it or its gradient is not finite."""
        self.steps += 1
        opt.zero_grad(set_to_none=True)
        if not bool(torch.isfinite(loss.detach())):
            self.skipped += 1
            return False
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), self.clip)
        if not bool(torch.isfinite(norm)):
            opt.zero_grad(set_to_none=True)
            self.skipped += 1
            return False
        opt.step()
        return True

    def end_epoch(self, model: torch.nn.Module, epoch: int) -> int:
        """Check the epoch just trained (before its checkpoint); returns the skipped steps."""
        skipped, steps = self.skipped, max(self.steps, 1)
        self.skipped = self.steps = 0
        if skipped:
            self.log(f"epoch {epoch}: skipped {skipped} of {steps} steps with a non-finite loss or gradient")
        bad = [n for n, p in model.named_parameters() if not bool(torch.isfinite(p).all())]
        if bad or skipped > self.max_share * steps:
            why = f"weights {', '.join(bad[:3])} are not finite" if bad else \
                f"{skipped} of {steps} steps had a non-finite loss or gradient"
            raise ChemlatentError(f"training diverged in epoch {epoch} ({why}); the checkpoint of the "
                                  "epoch before is kept: --resume with a lower --lr")
        return skipped
