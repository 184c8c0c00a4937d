"""The disentangled VAE: training, selective gradients, save/load, encoding, evaluation."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from chemlatent.app.cli import main
from chemlatent.encode.streaming import encode_survey
from chemlatent.errors import ChemlatentError, ModelError
from chemlatent.model.features import features_from_raw
from chemlatent.model.modelio import check_grid, load_model, save_model
from chemlatent.model.training import (
    TrainOptions,
    aggregate_kl,
    loss_terms,
    orient_axes,
    random_stretch_mask,
    train,
)
from chemlatent.model.vae import DisentangledVAE, ModelConfig, pixel_groups_from_linelist
from chemlatent.spectra.grid import DEFAULT_GRID, WavelengthGrid, default_windows
from chemlatent.synth.generator import generate_survey

TINY = dict(hidden=(32, 32, 16), max_stars=1200, batch_size=128, val_fraction=0.1)


def _flat_spectra(b: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """b shallow random spectra at S/N 10 and no Teff/logg labels."""
    flux = 1 - 0.1 * torch.rand(b, DEFAULT_GRID.npix)
    return flux, torch.full_like(flux, 100.0), torch.full((b, 2), float("nan"))


def _config(**kw) -> ModelConfig:
    return ModelConfig(grid=DEFAULT_GRID.to_dict(),
                       windows={g: [list(w) for w in ws] for g, ws in default_windows().items()},
                       hidden=[32, 32, 16], **kw)


@pytest.fixture(scope="module")
def tiny_model(tiny_survey, tmp_path_factory):
    out = tmp_path_factory.mktemp("models") / "tiny"
    train(tiny_survey.path, out, TrainOptions(epochs=4, **TINY), progress=False, log=lambda s: None)
    return out


def test_tiny_model_trains_and_loss_falls(tiny_model):
    cfg = json.loads((tiny_model / "config.json").read_text())
    hist = cfg["training"]["history"]
    assert len(hist) == 4
    assert hist[-1]["loss"] < hist[0]["loss"]
    assert hist[-1]["val_chi2"] < hist[0]["val_chi2"]
    assert (tiny_model / "weights.safetensors").exists() and (tiny_model / "loss.png").exists()
    assert not list(tiny_model.glob("*.pt"))


@pytest.mark.parametrize("see_fe", [False, True])
def test_selective_gradient_flow(see_fe):
    torch.manual_seed(0)
    model = DisentangledVAE(_config(ratio_decoders_see_fe=see_fe))
    flux = 1 - 0.1 * torch.rand(8, DEFAULT_GRID.npix)
    ivar = torch.full_like(flux, 100.0)
    mu, _, w = model.encode(flux, ivar)
    z = mu.detach().requires_grad_(True)
    parts = model.absorption(z, w.detach(), selective=True)
    expect_nonzero = {"fe": [0], "c": [1], "alpha": [2]}
    for group, axes in expect_nonzero.items():
        (grad,) = torch.autograd.grad(parts[group].pow(2).sum(), z, retain_graph=True)
        for a in range(3):
            if a in axes:
                assert grad[:, a].abs().sum() > 0, (group, a)
            else:
                assert torch.all(grad[:, a] == 0), (group, a)
    # the carbon decoder's loss gives zero gradient to the encoder's z_fe output
    model.zero_grad()
    mu, _, w = model.encode(flux, ivar)
    mu.retain_grad()
    model.absorption(mu, w, selective=True)["c"].pow(2).sum().backward()
    assert torch.all(mu.grad[:, 0] == 0) and torch.all(mu.grad[:, 2] == 0)
    assert mu.grad[:, 1].abs().sum() > 0


def test_aggregate_prior_pins_batch_moments_not_each_star(monkeypatch):
    torch.manual_seed(0)
    every = torch.ones(3, dtype=torch.bool)
    mu = torch.randn(4096, 3)
    std_mu = (mu - mu.mean(0)) / mu.std(0, unbiased=False)  # batch mean 0, variance 1 exactly
    assert float(aggregate_kl(std_mu, every)) == pytest.approx(0.0, abs=1e-5)
    # a shift by m costs 0.5 m^2 per axis, a rescale by k costs 0.5 (k^2 - 1 - log k^2)
    assert float(aggregate_kl(std_mu + 0.5, every)) == pytest.approx(3 * 0.125, rel=1e-4)
    assert float(aggregate_kl(2 * std_mu, every)) == pytest.approx(3 * 0.5 * (3 - np.log(4)), rel=1e-4)
    # in the loss: per-star variance part on every axis, batch-moment part on the chosen axes;
    # a standardised batch feels no pull of its means on those axes, the star prior pulls each
    model = DisentangledVAE(_config())
    b = 64
    flux, ivar, labels = _flat_spectra(b)
    mu = torch.randn(b, 3)
    mu = ((mu - mu.mean(0)) / mu.std(0, unbiased=False)).requires_grad_(True)
    logvar = torch.full((b, 3), -2.0)
    monkeypatch.setattr(model, "encode", lambda f, i: (mu, logvar, torch.zeros(b, 2)))
    var_part = 0.5 * (np.exp(-2.0) - 1.0 + 2.0) * 3
    grads = {}
    for prior, axes in (("star", (0, 1, 2)), ("aggregate", (0, 1, 2)), ("aggregate", (0,))):
        opts = TrainOptions(prior=prior, aggregate_axes=axes, kl_weight=1.0)
        kl = loss_terms(model, flux, ivar, labels, opts, 0.0, sample=False)["kl"]
        star_axes = [a for a in range(3) if prior == "star" or a not in axes]
        expect = var_part + 0.5 * float((mu.detach()[:, star_axes] ** 2).sum(-1).mean())
        assert float(kl.detach()) == pytest.approx(expect, rel=1e-4), (prior, axes)
        (grads[prior, axes],) = torch.autograd.grad(kl, mu)
    assert torch.allclose(grads["star", (0, 1, 2)], mu.detach() / b)
    assert grads["aggregate", (0, 1, 2)].abs().max() < 1e-6
    g = grads["aggregate", (0,)]
    assert g[:, 0].abs().max() < 1e-6 and torch.allclose(g[:, 1:], mu.detach()[:, 1:] / b)
    with pytest.raises(ValueError, match="prior"):
        loss_terms(model, flux, ivar, labels, TrainOptions(prior="nope"), 0.0, sample=False)


def test_kl_variance_part_can_be_switched_off_per_axis(monkeypatch):
    """kl_var_weight=(1, 1, 0): the KL keeps every mean part but no variance part on z_alpha,
    so nothing in the KL moves z_alpha's posterior width."""
    torch.manual_seed(0)
    model = DisentangledVAE(_config())
    b = 32
    flux, ivar, labels = _flat_spectra(b)
    mu = torch.randn(b, 3)
    logvar = torch.full((b, 3), -2.0, requires_grad=True)
    monkeypatch.setattr(model, "encode", lambda f, i: (mu, logvar, torch.zeros(b, 2)))
    one = 0.5 * (np.exp(-2.0) - 1.0 + 2.0)  # variance part of one axis
    mean_part = 0.5 * float((mu**2).sum(-1).mean())
    for weights, n_axes in (((1.0, 1.0, 1.0), 3), ((1.0, 1.0, 0.0), 2)):
        opts = TrainOptions(kl_var_weight=weights)
        kl = loss_terms(model, flux, ivar, labels, opts, 0.0, sample=False)["kl"]
        assert float(kl.detach()) == pytest.approx(mean_part + n_axes * one, rel=1e-5)
        (g,) = torch.autograd.grad(kl, logvar)
        assert torch.all(g[:, :2] != 0)
        assert torch.all(g[:, 2] == 0) == (weights[2] == 0)


def test_confuse_adversary_trains_apart_from_the_encoder(monkeypatch):
    torch.manual_seed(0)
    model = DisentangledVAE(_config())
    b = 32
    flux = 1 - 0.1 * torch.rand(b, DEFAULT_GRID.npix)
    ivar = torch.full_like(flux, 100.0)
    labels = torch.stack([4000 + 2000 * torch.rand(b), 1 + 3 * torch.rand(b)], -1)
    mu = torch.randn(b, 3).requires_grad_(True)
    monkeypatch.setattr(model, "encode", lambda f, i: (mu, torch.full((b, 3), -2.0), torch.zeros(b, 2)))

    def grads(scale=1.0, **kw):
        model.zero_grad()
        mu.grad = None
        out = loss_terms(model, flux, ivar, labels, TrainOptions(**kw), scale, sample=False)
        out["loss"].backward()
        return {k: p.grad.clone() for k, p in model.adversary.named_parameters()}, mu.grad.clone()

    adv_plain, mu_plain = grads(scale=0.0)
    adv_rev, mu_rev = grads(adv_mode="reverse")
    adv_conf, mu_conf = grads(adv_mode="confuse")
    # the adversary's own gradient is that of its MSE in every mode
    for k in adv_plain:
        assert torch.allclose(adv_conf[k], adv_plain[k], atol=1e-7)
        assert torch.allclose(adv_rev[k], adv_plain[k], atol=1e-7)
    # the encoder feels the adversary in both modes, differently
    assert not torch.allclose(mu_conf, mu_plain) and not torch.allclose(mu_rev, mu_plain)
    assert not torch.allclose(mu_conf, mu_rev)
    # a zero per-axis weight removes the adversary's gradient to that axis
    _, mu_none = grads(adv_mode="confuse", adv_axis_weight=(0.0, 0.0, 0.0))
    assert torch.allclose(mu_none, mu_plain, atol=1e-8)
    _, mu_fe = grads(adv_axis_weight=(1.0, 0.0, 0.0))
    assert torch.allclose(mu_fe[:, 1:], mu_plain[:, 1:], atol=1e-8)
    assert not torch.allclose(mu_fe[:, 0], mu_plain[:, 0])


def _masked_config(**kw) -> ModelConfig:
    windows = {g: [tuple(w) for w in ws] for g, ws in default_windows().items()}
    groups = pixel_groups_from_linelist(DEFAULT_GRID, windows)
    return _config(decoder_mode="masked", pixel_groups=groups, **kw)


@pytest.mark.parametrize("form", ["mlp", "logtau", "cog"])
def test_masked_decoders_own_disjoint_pixels(form):
    from chemlatent.explore.spectrum import reconstruct

    torch.manual_seed(0)
    cfg = _masked_config(decoder_form=form)
    groups = np.asarray(cfg.pixel_groups)
    assert groups.size == DisentangledVAE(_config()).win_all.numel()
    assert np.all(np.bincount(groups, minlength=3) > 50)  # every decoder owns pixels
    model = DisentangledVAE(cfg)
    owned = np.concatenate([model.part_pixels(g) for g in ("fe", "c", "alpha")])
    np.testing.assert_array_equal(np.sort(owned), model.win_all.numpy())
    # the Mg b triplet and the Ca II infrared triplet belong to the alpha decoder
    alpha_wave = DEFAULT_GRID.wave[model.part_pixels("alpha")]
    assert np.any(np.abs(alpha_wave - 5185.0) < 2) and np.any(np.abs(alpha_wave - 8544.4) < 2)
    z, w = torch.randn(5, 3), torch.randn(5, 2)
    parts = model.absorption(z, w)
    flux = model.decode(z, w)
    for g in ("fe", "c", "alpha"):
        np.testing.assert_allclose((1 - flux[:, getattr(model, f"pos_{g}")]).detach().numpy(),
                                   parts[g].detach().numpy(), atol=1e-6)
    # selective gradients as in the additive mode: each decoder trains only its own axis
    z = z.requires_grad_(True)
    (grad,) = torch.autograd.grad(model.absorption(z, w)["alpha"].sum(), z)
    assert torch.all(grad[:, :2] == 0) and grad[:, 2].abs().sum() > 0
    rec, comps = reconstruct(model, z[0].detach().numpy(), w[0].numpy())
    assert np.isfinite(rec[model.win_all.numpy()]).all()
    assert np.isfinite(comps["alpha"]).sum() == model.part_pixels("alpha").size


def test_masked_mode_needs_pixel_groups():
    with pytest.raises(ValueError, match="pixel_groups"):
        DisentangledVAE(_config(decoder_mode="masked"))


def test_masked_model_trains_and_loads(tiny_survey, tmp_path):
    out = tmp_path / "masked"
    train(tiny_survey.path, out, TrainOptions(epochs=1, decoder_mode="masked", **TINY), progress=False,
          log=lambda s: None)
    model = load_model(out)
    assert model.mode == "masked" and len(model.config.pixel_groups) == model.win_all.numel()


def test_save_load_round_trip(tmp_path):
    model = DisentangledVAE(_config()).eval()
    save_model(model, tmp_path / "m")
    again = load_model(tmp_path / "m")
    flux = 1 - 0.1 * torch.rand(4, DEFAULT_GRID.npix)
    ivar = torch.full_like(flux, 50.0)
    with torch.no_grad():
        a = model.encode(flux, ivar)
        b = again.encode(flux, ivar)
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y)


def test_pickles_are_refused(tmp_path):
    bad = tmp_path / "model.pt"
    torch.save({"a": torch.zeros(1)}, bad)
    with pytest.raises(ModelError, match="refused"):
        load_model(bad)
    (tmp_path / "dir").mkdir()
    torch.save({"a": torch.zeros(1)}, tmp_path / "dir" / "weights.pt")
    with pytest.raises(ModelError, match="pickles are refused"):
        load_model(tmp_path / "dir")


def test_grid_mismatch_is_a_clear_error(tmp_path, tiny_survey, capsys):
    other = WavelengthGrid(loglam0=3.6, dloglam=1e-4, npix=4000)
    cfg = _config()
    cfg.grid = other.to_dict()
    model = DisentangledVAE(cfg)
    with pytest.raises(ModelError, match="does not match the survey grid"):
        check_grid(model, tiny_survey.grid)
    save_model(model, tmp_path / "other")
    assert main(["encode", str(tiny_survey.path), "--model", str(tmp_path / "other"),
                 "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not match" in err[0]


def test_numba_features_match_the_model(tiny_survey):
    model = DisentangledVAE(_config())
    c = tiny_survey.read(0, 64)
    ref = model.features(torch.from_numpy(c.flux), torch.from_numpy(c.ivar)).numpy()
    raw = np.asarray(tiny_survey._flux[0:64])
    fast = features_from_raw(raw, mask=np.asarray(tiny_survey._mask[0:64]),
                             scale=tiny_survey._ivar_scale[0:64], profile=tiny_survey._ivar_profile)
    np.testing.assert_allclose(fast, ref, atol=1e-5)
    full = features_from_raw(raw, ivar=c.ivar)
    np.testing.assert_allclose(full, ref, atol=1e-5)


def test_orientation_makes_iron_absorption_grow_with_z_fe():
    torch.manual_seed(3)
    model = DisentangledVAE(_config())
    with torch.no_grad():
        model.decoders["fe"][-1].weight.mul_(-1)  # make absorption fall with z_fe
    orient_axes(model)
    z0 = torch.zeros(64, 3)
    z1 = z0.clone()
    z1[:, 0] = 1.0
    w = torch.randn(64, 2)
    with torch.no_grad():
        d = model.decode(z0, w) - model.decode(z1, w)  # absorption over all windows
    assert float(d.mean()) > 0


def test_ratio_decoders_can_see_iron_apart_from_the_sum():
    torch.manual_seed(0)
    model = DisentangledVAE(_config(ratio_decoders_see_fe=True))
    z = torch.randn(16, 3)
    w = torch.randn(16, 2)
    moved = z.clone()
    moved[:, 0] += 0.5  # same z_fe + z_c and z_fe + z_alpha, other z_fe
    moved[:, 1:] -= 0.5
    with torch.no_grad():
        a, b = model.absorption(z, w), model.absorption(moved, w)
    for g in ("c", "alpha"):
        assert float((a[g] - b[g]).abs().max()) > 1e-4
    plain = DisentangledVAE(_config())
    with torch.no_grad():
        a, b = plain.absorption(z, w), plain.absorption(moved, w)
    torch.testing.assert_close(a["c"], b["c"])  # the default sees the sum only


def test_ratio_decoders_can_read_another_z_fe():
    torch.manual_seed(0)
    model = DisentangledVAE(_config())
    model.orient[0] = -1.0  # reported units in and out, whatever the orientation
    z, w = torch.randn(8, 3), torch.randn(8, 2)
    mean_fe = torch.randn(8, 1)
    swapped = z.clone()
    swapped[:, 0:1] = mean_fe
    with torch.no_grad():
        got = model.absorption(z, w, fe_for_ratios=mean_fe)
        own, other = model.absorption(z, w), model.absorption(swapped, w)
    torch.testing.assert_close(got["fe"], own["fe"])  # the iron decoder reads z's own z_fe
    torch.testing.assert_close(got["c"], other["c"])
    torch.testing.assert_close(got["alpha"], other["alpha"])


def test_carbon_decoder_on_all_windows_models_carbon_everywhere():
    torch.manual_seed(0)
    model = DisentangledVAE(_config(carbon_on_all_windows=True))
    n_all = int(model.win_all.numel())
    assert model.part_pixels("c").size == n_all
    z = torch.randn(8, 3, requires_grad=True)
    w = torch.randn(8, 2)
    flux = model.decode(z, w)
    assert flux.shape == (8, n_all)
    # z_c now moves pixels outside the carbon windows too (e.g. Mg b under the C2 Swan band)
    outside = ~np.isin(model.win_all.numpy(), model.window("c").numpy())
    assert outside.any()
    (g,) = torch.autograd.grad(flux[:, torch.from_numpy(outside)].sum(), z)
    assert float(g[:, 1].abs().sum()) > 0
    plain = DisentangledVAE(_config())
    zp = z.detach().clone().requires_grad_(True)
    (g,) = torch.autograd.grad(plain.decode(zp, w)[:, torch.from_numpy(outside)].sum(), zp)
    assert float(g[:, 1].abs().sum()) == 0  # by default carbon stays in its windows


def test_orientation_flips_only_the_axis_whose_decoder_reads_it_falling():
    torch.manual_seed(3)
    model = DisentangledVAE(_config())
    orient_axes(model)
    before = model.orient.clone()
    with torch.no_grad():
        model.decoders["c"][-1].weight.mul_(-1)  # carbon absorption now falls as z_c grows
        model.decoders["c"][-1].bias.mul_(-1)
    orient_axes(model)
    assert (model.orient * before).tolist() == [1.0, -1.0, 1.0]
    # an anchored axis keeps its sign: only the listed axes are judged
    with torch.no_grad():
        model.decoders["fe"][-1].weight.mul_(-1)
        model.decoders["fe"][-1].bias.mul_(-1)
    kept = model.orient.clone()
    orient_axes(model, axes=(1, 2))
    assert torch.equal(model.orient, kept)
    orient_axes(model)
    assert float(model.orient[0]) == -float(kept[0])
    z0 = torch.randn(256, 3)
    z1 = z0.clone()
    z1[:, 1] += 0.5
    w = torch.randn(256, 2)
    with torch.no_grad():
        d = model.absorption(z1, w)["c"] - model.absorption(z0, w)["c"]
    assert float(d.mean()) > 0


def test_random_stretches_cover_ends_and_gaps():
    gen = torch.Generator().manual_seed(0)
    m = random_stretch_mask(300, 1000, 1.0, gen)
    assert m.any(1).all()
    assert m[:, 0].any() and m[:, -1].any()
    frac = m.float().mean(1)
    assert float(frac.max()) < 0.3


def test_resume_continues_from_checkpoint(tiny_survey, tmp_path):
    out = tmp_path / "m"
    train(tiny_survey.path, out, TrainOptions(epochs=1, **TINY), progress=False, log=lambda s: None)
    train(tiny_survey.path, out, TrainOptions(epochs=2, **TINY), resume=True, progress=False,
          log=lambda s: None)
    hist = json.loads((out / "config.json").read_text())["training"]["history"]
    assert [h["epoch"] for h in hist] == [1, 2]


def test_a_run_resumed_on_more_stars_keeps_the_checkpoints_label_scaling(tiny_survey, tmp_path):
    """The decoders were trained on the first run's Teff/logg scaling: resuming on more stars
    (e.g. to refine every star of a larger survey) must not rescale their inputs."""
    out = tmp_path / "m"
    small = {**TINY, "max_stars": 400}
    train(tiny_survey.path, out, TrainOptions(epochs=1, **small), progress=False, log=lambda s: None)
    first = json.loads((out / "config.json").read_text())
    train(tiny_survey.path, out, TrainOptions(epochs=1, **TINY), resume=True, progress=False,
          log=lambda s: None)
    resumed = json.loads((out / "config.json").read_text())
    assert resumed["training"]["n_train"] > first["training"]["n_train"]
    assert resumed["label_mean"] == first["label_mean"]
    assert resumed["label_std"] == first["label_std"]
    fresh = tmp_path / "fresh"
    train(tiny_survey.path, fresh, TrainOptions(epochs=1, **TINY), progress=False, log=lambda s: None)
    assert json.loads((fresh / "config.json").read_text())["label_mean"] != first["label_mean"]


def test_a_longer_resumed_run_anneals_to_its_new_end(tiny_survey, tmp_path):
    """--resume with more --epochs stretches the learning-rate cycle: the rate still falls to
    its floor at the new end instead of climbing again after the old one."""
    out = tmp_path / "m"
    train(tiny_survey.path, out, TrainOptions(epochs=2, **TINY), progress=False, log=lambda s: None)
    train(tiny_survey.path, out, TrainOptions(epochs=3, **TINY), resume=True, progress=False,
          log=lambda s: None)
    lr = [h["lr"] for h in json.loads((out / "config.json").read_text())["training"]["history"]]
    assert lr[2] < 0.01 * TrainOptions().lr  # (the old end would put it near the peak)


def test_encode_writes_complete_latents(tiny_survey, tiny_model, tmp_path):
    model = load_model(tiny_model)
    out = encode_survey(tiny_survey, model, out_path=tmp_path / "lat.parquet", chunk=512)
    lat = pd.read_parquet(out)
    assert len(lat) == tiny_survey.n_stars
    assert (lat["star_id"].to_numpy() == tiny_survey.catalog["star_id"].to_numpy()).all()
    for col in ("z_fe", "z_c", "z_alpha", "z_fe_std", "w_0", "w_1", "teff_pred", "logg_pred", "chi2", "run"):
        assert col in lat.columns and lat[col].notna().all()
    assert (lat["z_fe_std"] > 0).all()
    with pytest.raises(Exception, match="already exists"):
        encode_survey(tiny_survey, model, out_path=out)


def test_masked_pixels_do_not_bias_the_encoding(tiny_survey, tiny_model):
    """Zeroing ivar where flux is garbage gives the same latents as clean flux there."""
    model = load_model(tiny_model)
    c = tiny_survey.read(0, 32)
    flux, ivar = torch.from_numpy(c.flux), torch.from_numpy(c.ivar)
    ivar2 = ivar.clone()
    ivar2[:, 1000:1100] = 0
    garbage = flux.clone()
    garbage[:, 1000:1100] = 50.0
    with torch.no_grad():
        a = model.encode(flux, ivar2)[0]
        b = model.encode(garbage, ivar2)[0]
    torch.testing.assert_close(a, b)


def test_evaluate_command(tiny_survey, tiny_model, tmp_path, capsys):
    assert main(["evaluate", str(tiny_survey.path), "--model", str(tiny_model), "--json"]) == 2
    assert "trained on" in capsys.readouterr().err
    other = generate_survey(tmp_path / "other", 800, seed=99, progress=False)
    assert main(["evaluate", str(other.path), "--model", str(tiny_model), "--json", "--device", "cpu"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert set(res["pearson_r"]) == {"fe_h", "c_fe", "alpha_fe"}
    assert set(res["leakage_r2"]) == {"teff", "logg"}
    assert set(res["flags"]) == {"cemp", "apmp"}
    assert all(set(v) >= {"precision", "recall"} for v in res["flags"].values())
    assert res["n_stars"] == 800
    assert main(["evaluate", str(other.path), "--model", str(tiny_model), "--json", "--device", "cpu",
                 "--calibration", "classical"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert "classical" in res["calibration"] and set(res["flags"]) == {"cemp", "apmp"}
    with pytest.raises(SystemExit):
        main(["evaluate", str(other.path), "--model", str(tiny_model), "--calibration", "best"])


def test_curve_of_growth_decoder_has_the_voigt_growth_law():
    """Weak lines grow like tau0, damped lines like sqrt(tau0), and the width is monotone."""
    from chemlatent.model.vae import CurveOfGrowthDecoder

    dec = CurveOfGrowthDecoder(2, [8], 3)
    x = torch.linspace(-7.0, 12.0, 400)
    la = torch.full_like(x, -2.0)
    lw = dec.log_width(x, la)
    assert torch.all(lw[1:] >= lw[:-1])
    ln10 = np.log(10.0)
    def slope(a, b):
        return float((dec.log_width(torch.tensor([b]), la[:1]) - dec.log_width(
            torch.tensor([a]), la[:1])) / (b - a) / ln10)
    assert slope(-6.5, -5.5) == pytest.approx(1.0, abs=0.02)  # linear part
    assert slope(10.0, 11.5) == pytest.approx(0.5, abs=0.02)  # damping part
    assert 0.0 < slope(1.5, 2.5) < 0.3  # flat part
    # the closed form follows the tabulated Voigt curve of growth
    from chemlatent.spectra.physics import curve_of_growth_table

    lt, la_grid, table = curve_of_growth_table()
    xx, aa = np.meshgrid(lt, la_grid[la_grid <= -1], indexing="ij")
    fit = dec.log_width(torch.from_numpy(xx).float(), torch.from_numpy(aa).float()).numpy() + dec.ref
    err = fit - np.log(table[:, la_grid <= -1])
    assert np.sqrt(np.mean(err**2)) < 0.02 and np.abs(err).max() < 0.06
    # more damping, wider saturated lines
    assert float(dec.log_width(torch.tensor([4.0]), torch.tensor([-1.0]))) > float(
        dec.log_width(torch.tensor([4.0]), torch.tensor([-3.0])))


def test_curve_of_growth_model_shares_one_slope_and_keeps_selective_gradients():
    torch.manual_seed(0)
    model = DisentangledVAE(_config(decoder_form="cog"))
    z = torch.randn(6, 3, requires_grad=True)
    w = torch.randn(6, 2)
    parts = model.absorption(z, w)
    (g_alpha,) = torch.autograd.grad(parts["alpha"].sum(), z, retain_graph=True)
    (g_c,) = torch.autograd.grad(parts["c"].sum(), z, retain_graph=True)
    assert torch.all(g_alpha[:, :2] == 0) and torch.all(g_alpha[:, 2] > 0)
    assert torch.all(g_c[:, [0, 2]] == 0) and torch.all(g_c[:, 1] > 0)
    # absorption deepens with the abundance input on every pixel
    zp = z.detach().clone()
    zp[:, 0] += 0.5
    assert torch.all(model.absorption(zp, w)["fe"] >= parts["fe"].detach())


def test_curve_of_growth_inference_path_matches_the_training_path():
    from chemlatent.model.vae import CurveOfGrowthDecoder

    torch.manual_seed(1)
    dec = CurveOfGrowthDecoder(2, [8], 50)
    u, w = torch.randn(7, 1) * 2, torch.randn(7, 2)
    with torch.no_grad():
        fast = dec(u, w)
    slow = dec(u, w).detach()
    np.testing.assert_allclose(fast.numpy(), slow.numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("fraction", [0.025, 0.15, 0.5])
def test_warmup_fraction_sets_the_peak_step(fraction):
    from chemlatent.model.training import one_cycle

    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([p], lr=1e-3)
    opts = TrainOptions(epochs=10, lr=1e-3, warmup_fraction=fraction)
    sched = one_cycle(opt, opts, steps_per_epoch=100)
    lrs = []
    for _ in range(1000):
        lrs.append(sched.get_last_lr()[0])
        opt.step()
        sched.step()
    peak = int(np.argmax(lrs))
    assert abs(peak - fraction * 1000) <= 2 and max(lrs) == pytest.approx(1e-3)


def test_warmup_fraction_out_of_range_is_a_clear_error():
    from chemlatent.model.training import one_cycle

    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    with pytest.raises(ChemlatentError, match="warmup_fraction"):
        one_cycle(opt, TrainOptions(warmup_fraction=0.0), 10)


def test_a_step_budget_sets_the_epochs(tiny_survey, tmp_path):
    """target_steps replaces --epochs by as many epochs as make about that many steps."""
    out = tmp_path / "m"
    spe = int(1200 * (1 - TINY["val_fraction"])) // TINY["batch_size"]
    logs = []
    train(tiny_survey.path, out, TrainOptions(epochs=24, target_steps=3 * spe, **TINY), progress=False,
          log=logs.append)
    hist = json.loads((out / "config.json").read_text())["training"]["history"]
    assert [h["epoch"] for h in hist] == [1, 2, 3]
    assert any(f"3 epochs of {spe} optimiser steps" in s for s in logs)
