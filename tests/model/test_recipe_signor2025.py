"""The published recipe (Signor et al. 2025): training, selective gradients, prior, save/load."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from chemlatent.app.cli import main
from chemlatent.encode.streaming import Encoder, read_raw
from chemlatent.model.modelio import load_model, save_model
from chemlatent.model.recipe_signor2025 import (
    Signor2025Config,
    Signor2025VAE,
    kl_to_prior,
    prior_covariance,
)
from chemlatent.model.train_signor2025 import (
    Signor2025Options,
    adversary_weight,
    label_bins,
    train_signor2025,
)
from chemlatent.spectra.grid import DEFAULT_GRID, default_windows

SMALL = (8, 16, 32)


def _config(**kw) -> Signor2025Config:
    return Signor2025Config(grid=DEFAULT_GRID.to_dict(),
                            windows={g: [list(w) for w in ws] for g, ws in default_windows().items()},
                            channels=list(SMALL), **kw)


@pytest.fixture(scope="module")
def tiny_signor(tiny_survey, tmp_path_factory):
    out = tmp_path_factory.mktemp("models") / "tiny-signor"
    opts = Signor2025Options(epochs=3, batch_size=128, max_stars=1200, val_fraction=0.1,
                             channels=SMALL, lr=3e-3)
    train_signor2025(tiny_survey.path, out, opts, progress=False, log=lambda s: None)
    return out


def test_tiny_signor_model_trains_and_loss_falls(tiny_signor):
    cfg = json.loads((tiny_signor / "config.json").read_text())
    assert cfg["architecture"] == "signor2025" and cfg["format"] == "chemlatent-vae"
    hist = cfg["training"]["history"]
    assert len(hist) == 3
    assert hist[-1]["chi2"] < hist[0]["chi2"]
    assert hist[-1]["val_chi2"] < hist[0]["val_chi2"]
    assert (tiny_signor / "weights.safetensors").exists()
    assert not list(tiny_signor.glob("*.pt"))


def test_save_load_round_trip_gives_identical_outputs(tiny_signor, tiny_survey, tmp_path):
    model = load_model(tiny_signor)
    assert isinstance(model, Signor2025VAE)
    again = load_model(save_model(model, tmp_path / "copy"))
    blk = read_raw(tiny_survey, 0, 64)
    a = Encoder(model, tiny_survey, precision="fp32")(blk)
    b = Encoder(again, tiny_survey, precision="fp32")(blk)
    for col in ("z_fe", "z_c", "z_alpha", "z_fe_std", "z_c_std", "z_alpha_std", "teff_pred", "chi2"):
        assert np.array_equal(a[col], b[col]), col
    assert np.all(a["z_fe_std"] > 0)
    assert np.isfinite(a["chi2"]).all()


def test_reported_std_is_the_marginal_std():
    torch.manual_seed(0)
    model = Signor2025VAE(_config()).eval()
    x = model.features(1 - 0.1 * torch.rand(4, DEFAULT_GRID.npix), torch.full((4, DEFAULT_GRID.npix), 100.0))
    with torch.no_grad():
        hid = model.encoder(x)
        chol = model.logvar.cholesky(hid)
        cov = chol @ chol.transpose(1, 2)
        assert torch.allclose(torch.exp(model.logvar(hid)), torch.diagonal(cov, dim1=1, dim2=2), rtol=1e-5)


def test_selective_gradient_flow():
    torch.manual_seed(0)
    model = Signor2025VAE(_config())
    z = torch.randn(8, 3, requires_grad=True)
    w = torch.randn(8, 2)
    parts = model.absorption(z, w)
    own = {"fe": 0, "c": 1, "alpha": 2}
    for group, axis in own.items():
        (grad,) = torch.autograd.grad(parts[group].pow(2).sum(), z, retain_graph=True)
        for a in range(3):
            if a == axis:
                assert grad[:, a].abs().sum() > 0, (group, a)
            else:
                assert torch.all(grad[:, a] == 0), (group, a)


def test_masked_regions_are_disjoint_and_alpha_wins():
    model = Signor2025VAE(_config())
    fe, c, al = (set(model.part_pixels(g).tolist()) for g in ("fe", "c", "alpha"))
    assert not (al & fe) and not (al & c)
    assert fe | c | al == set(model.win_all.tolist())
    z, w = torch.zeros(2, 3), torch.zeros(2, 2)
    parts = model.absorption(z, w)
    flux = model.decode(z, w)
    pos = {g: getattr(model, f"pos_{g}") for g in ("fe", "c", "alpha")}
    assert torch.allclose(flux[:, pos["alpha"]], 1 - parts["alpha"])
    both = sorted(fe & c)
    if both:  # Fe and C add where their windows meet
        i_fe = [model.part_pixels("fe").tolist().index(p) for p in both]
        i_c = [model.part_pixels("c").tolist().index(p) for p in both]
        j = [model.win_all.tolist().index(p) for p in both]
        assert torch.allclose(flux[:, j], 1 - parts["fe"][:, i_fe] - parts["c"][:, i_c], atol=1e-6)


def test_correlated_prior_kl_zero_at_prior_positive_elsewhere():
    cov = prior_covariance()
    assert cov[0, 2] == pytest.approx(-0.3) and cov[0, 1] == pytest.approx(-0.17) and cov[1, 2] == 0
    assert torch.allclose(torch.diagonal(cov), torch.ones(3))
    inv, logdet = torch.linalg.inv(cov), torch.logdet(cov)
    chol = torch.linalg.cholesky(cov).unsqueeze(0)
    zero = kl_to_prior(torch.zeros(1, 3), chol, inv, logdet)
    assert abs(float(zero)) < 1e-5
    eye = torch.eye(3).unsqueeze(0)  # uncorrelated unit posterior: not the prior
    assert float(kl_to_prior(torch.zeros(1, 3), eye, inv, logdet)) > 1e-3
    assert float(kl_to_prior(torch.tensor([[0.5, 0.0, 0.0]]), chol, inv, logdet)) > 1e-3
    assert float(kl_to_prior(torch.zeros(1, 3), 0.5 * chol, inv, logdet)) > 1e-3


def test_adversary_schedule_and_bins():
    assert adversary_weight(0, 1000, 0.1) == 0.0
    assert adversary_weight(100, 1000, 0.1) == pytest.approx(0.01)
    assert adversary_weight(500, 1000, 0.1) == pytest.approx(0.1)
    y = torch.tensor([[-2.0, -2.0], [2.0, 2.0], [0.0, 2.0]])
    k = label_bins(y, torch.tensor([-2.0, -2.0]), torch.tensor([2.0, 2.0]), 8)
    assert k.tolist() == [0, 63, 4 * 8 + 7]


def test_cli_recipe_option(tiny_survey, tmp_path):
    out = tmp_path / "m"
    rc = main(["train", str(tiny_survey.path), "--out", str(out), "--recipe", "signor2025",
               "--epochs", "1", "--batch-size", "256", "--max-stars", "600", "--channels", "4,8,16"])
    assert rc == 0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["architecture"] == "signor2025" and cfg["channels"] == [4, 8, 16]
    assert cfg["training"]["options"]["lr"] == pytest.approx(1e-3)
