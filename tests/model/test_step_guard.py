"""A batch with a non-finite loss or gradient is skipped, never written into the weights; a
diverged epoch stops training with a one-line error and keeps the last good checkpoint."""

from __future__ import annotations

import json

import pytest
import torch

import chemlatent.model.training as training
from chemlatent.errors import ChemlatentError
from chemlatent.model.step_guard import StepGuard
from chemlatent.model.training import TrainOptions, train


def test_non_finite_loss_or_gradient_is_skipped_and_weights_stay_finite():
    torch.manual_seed(0)
    net = torch.nn.Linear(4, 1)
    opt = torch.optim.Adam(net.parameters(), lr=0.1)
    guard = StepGuard(log=lambda s: None)
    x = torch.randn(8, 4)
    before = [p.detach().clone() for p in net.parameters()]
    assert not guard.step(net, opt, net(x).sum() * float("nan"))  # non-finite loss
    u = net(x).sum() - net(x).sum().detach()
    nan_grad = torch.sqrt(u * u)  # 0, but its gradient is inf * 0
    assert bool(torch.isfinite(nan_grad))
    assert not guard.step(net, opt, nan_grad)  # finite loss, non-finite gradient
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters()))  # nothing moved
    assert guard.step(net, opt, (net(x) ** 2).mean())  # a good step still steps
    assert not all(torch.equal(a, b) for a, b in zip(before, net.parameters()))
    with pytest.raises(ChemlatentError, match="2 of 3 steps"):
        guard.end_epoch(net, 1)  # 2 of 3 skipped is more than 5 %


def test_too_many_skipped_steps_raise_a_one_line_error():
    net = torch.nn.Linear(2, 1)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    guard = StepGuard(max_share=0.05, log=lambda s: None)
    for _ in range(10):
        guard.step(net, opt, torch.tensor(float("nan")))
    with pytest.raises(ChemlatentError, match="training diverged in epoch 3 .*--resume with a lower --lr"):
        guard.end_epoch(net, 3)


def test_a_nan_batch_in_training_is_skipped_and_logged(tiny_survey, tmp_path, monkeypatch):
    real = training.loss_terms
    calls = {"n": 0}

    def one_bad_batch(*a, **k):
        terms = real(*a, **k)
        calls["n"] += 1
        if calls["n"] == 3:
            terms["loss"] = terms["loss"] * float("nan")
        return terms

    monkeypatch.setattr(training, "loss_terms", one_bad_batch)
    lines: list[str] = []
    out = tmp_path / "guarded"
    train(tiny_survey.path, out, TrainOptions(epochs=1, adv_weight=0.0, hidden=(16, 16, 8), max_stars=1200,
                                              batch_size=32, val_fraction=0.1),
          progress=False, log=lines.append)
    assert any("skipped 1 of" in s for s in lines)
    hist = json.loads((out / "config.json").read_text())["training"]["history"]
    assert all(torch.isfinite(torch.tensor(h["loss"])) for h in hist)


def test_a_diverged_epoch_keeps_the_previous_checkpoint(tiny_survey, tmp_path, monkeypatch):
    opts = TrainOptions(epochs=2, adv_weight=0.0, hidden=(16, 16, 8), max_stars=600, batch_size=128,
                        val_fraction=0.1)
    out = tmp_path / "diverged"
    first = TrainOptions(**{**vars(opts), "epochs": 1})
    train(tiny_survey.path, out, first, progress=False, log=lambda s: None)
    real = training.loss_terms

    def all_nan(*a, **k):
        terms = real(*a, **k)
        terms["loss"] = terms["loss"] * float("nan")
        return terms

    monkeypatch.setattr(training, "loss_terms", all_nan)
    with pytest.raises(ChemlatentError, match="training diverged in epoch 2"):
        train(tiny_survey.path, out, opts, resume=True, progress=False, log=lambda s: None)
    state = json.loads((out / "checkpoint" / "state.json").read_text())
    assert state["epoch"] == 1  # the good epoch's checkpoint is what --resume continues from
