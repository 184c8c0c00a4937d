"""The prior conditioned on Teff/logg: its centre follows the labels, unlabelled stars keep N(0, 1)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from model_helpers import small_model

from chemlatent.model.conditional_prior import ConditionalPrior
from chemlatent.model.modelio import load_model
from chemlatent.model.training import TrainOptions, loss_terms, train
from chemlatent.spectra.grid import DEFAULT_GRID


def test_kl_is_measured_from_the_prior_centre_of_labelled_stars_only(monkeypatch):
    torch.manual_seed(0)
    model = small_model()
    model.conditional_prior = ConditionalPrior()
    b = 16
    flux = 1 - 0.1 * torch.rand(b, DEFAULT_GRID.npix)
    ivar = torch.full_like(flux, 100.0)
    labels = torch.tensor([[5000.0, 3.0]] * (b // 2) + [[float("nan")] * 2] * (b // 2))
    mu = torch.randn(b, 3)
    logvar = torch.zeros(b, 3)  # posterior width 1: the variance part is 0
    monkeypatch.setattr(model, "encode", lambda f, i: (mu, logvar, torch.zeros(b, 2)))
    opts = TrainOptions(prior="conditional")
    # at the start the centre is 0: the standard prior
    kl = float(loss_terms(model, flux, ivar, labels, opts, 0.0, sample=False)["kl"])
    assert kl == pytest.approx(0.5 * float((mu**2).sum(-1).mean()), rel=1e-5)
    with torch.no_grad():
        model.conditional_prior.net[-1].bias.copy_(torch.tensor([1.0, -0.5, 0.25]))
    centre = torch.tensor([1.0, -0.5, 0.25])
    expect = torch.cat([((mu[: b // 2] - centre) ** 2).sum(-1), (mu[b // 2:] ** 2).sum(-1)])
    kl = float(loss_terms(model, flux, ivar, labels, opts, 0.0, sample=False)["kl"])
    assert kl == pytest.approx(0.5 * float(expect.mean()), rel=1e-5)


def test_conditional_prior_trains_and_stays_out_of_the_saved_model(tiny_survey, tmp_path):
    out = tmp_path / "cond"
    train(tiny_survey.path, out, TrainOptions(epochs=2, prior="conditional", adv_weight=0.0,
                                              hidden=(32, 32, 16), max_stars=1200, batch_size=128,
                                              val_fraction=0.1), progress=False, log=lambda s: None)
    model = load_model(out)
    assert not hasattr(model, "conditional_prior")
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["training"]["options"]["prior"] == "conditional"
    assert np.isfinite(cfg["training"]["history"][-1]["val_chi2"])


def test_population_prior_centres_the_ratios_on_iron_without_moving_iron(monkeypatch):
    from chemlatent.model.conditional_prior import PopulationPrior

    torch.manual_seed(1)
    model = small_model()
    model.prior_centre = PopulationPrior()
    with torch.no_grad():  # centre of z_c: 0.5 + 0, of z_alpha: -0.3 - 0.4 z_fe (a linear trend)
        net = model.prior_centre.net
        net[0].weight.fill_(0.0)
        net[0].weight[0, 0] = 1.0
        net[0].bias.fill_(5.0)  # SiLU(x + 5) ~ x + 5 over |x| < 1
        net[2].weight.zero_()
        net[2].weight[1, 0] = -0.4
        net[2].bias.copy_(torch.tensor([0.5, -0.3 + 0.4 * 5.0]))
    b = 8
    flux = 1 - 0.1 * torch.rand(b, DEFAULT_GRID.npix)
    ivar = torch.full_like(flux, 100.0)
    labels = torch.full((b, 2), float("nan"))
    mu = (torch.rand(b, 3) - 0.5).requires_grad_(True)
    logvar = torch.zeros(b, 3)
    monkeypatch.setattr(model, "encode", lambda f, i: (mu, logvar, torch.zeros(b, 2)))
    kl = loss_terms(model, flux, ivar, labels, TrainOptions(prior="population"), 0.0, sample=False)["kl"]
    silu5 = torch.nn.functional.silu(mu[:, 0].detach() + 5.0)
    centre = torch.stack([torch.zeros(b), torch.full((b,), 0.5), -0.3 + 0.4 * 5.0 - 0.4 * silu5], -1)
    expect = 0.5 * ((mu.detach() - centre) ** 2).sum(-1).mean()
    assert float(kl) == pytest.approx(float(expect), rel=1e-5)
    (g,) = torch.autograd.grad(kl, mu)
    # iron's gradient is its own N(0, 1) pull only: the centres are functions of a detached z_fe
    torch.testing.assert_close(g[:, 0], mu.detach()[:, 0] / b)


def test_centred_prior_pulls_each_star_to_a_learned_centre_not_the_origin(monkeypatch):
    from chemlatent.model.conditional_prior import CentredPrior

    torch.manual_seed(2)
    model = small_model()
    model.prior_centre = CentredPrior()
    with torch.no_grad():
        model.prior_centre.centre.copy_(torch.tensor([-2.0, 1.0, 0.5]))
    b = 8
    flux = 1 - 0.1 * torch.rand(b, DEFAULT_GRID.npix)
    ivar = torch.full_like(flux, 100.0)
    labels = torch.full((b, 2), float("nan"))
    mu = (torch.rand(b, 3) - 2.0).requires_grad_(True)
    monkeypatch.setattr(model, "encode", lambda f, i: (mu, torch.zeros(b, 3), torch.zeros(b, 2)))
    kl = loss_terms(model, flux, ivar, labels, TrainOptions(prior="centred"), 0.0, sample=False)["kl"]
    expect = 0.5 * ((mu.detach() - torch.tensor([-2.0, 1.0, 0.5])) ** 2).sum(-1).mean()
    assert float(kl) == pytest.approx(float(expect), rel=1e-5)
    kl.backward()  # the centre learns: it moves toward the means
    step = -model.prior_centre.centre.grad
    assert torch.all(torch.sign(step) == torch.sign(mu.detach().mean(0) - torch.tensor([-2.0, 1.0, 0.5])))
