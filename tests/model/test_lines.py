"""Line-by-line decoders (decoder_form="lines"): chemistry only through the line list."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from model_helpers import line_model

from chemlatent.model.lines import WING_TAPS, voigt_log_width
from chemlatent.model.modelio import load_model, save_model
from chemlatent.model.training import TrainOptions, train
from chemlatent.model.vae import DisentangledVAE, ModelConfig
from chemlatent.spectra.grid import DEFAULT_GRID, default_windows
from chemlatent.spectra.linelist import load_linelist
from chemlatent.spectra.physics import ELEMENT_GROUP

_model = line_model


def _tau(model, z, w):
    return {g: t.detach() for g, t in model.absorption(z, w, selective=False).items()}


def test_alpha_latent_moves_only_alpha_lines_by_iron_units():
    model = _model()
    with torch.no_grad():  # alpha elements as electron donors aside, tested with the gradients
        model.lines.alpha_electrons.zero_()
    z = torch.randn(5, 3) * 0.5
    w = torch.randn(5, 2) * 0.5
    base = _tau(model, z, w)
    more_alpha = z.clone()
    more_alpha[:, 2] += 0.3
    t = _tau(model, more_alpha, w)
    assert torch.equal(t["fe"], base["fe"])  # (carbon's bands may change: oxygen binds carbon in CO)
    assert torch.all(t["alpha"] >= base["alpha"]) and float((t["alpha"] - base["alpha"]).max()) > 1e-3
    # the pixels it deepens are those of the alpha lines (O, Mg, Si, S, Ca, Ti) and MgH/TiO bands
    ll = load_linelist()
    alpha_pix = DEFAULT_GRID.pixel_of(ll.wave[[ELEMENT_GROUP[e] == "alpha" for e in ll.element]])
    win = model.win_all.numpy()
    moved = win[(t["alpha"] - base["alpha"]).abs().amax(0).numpy() > 1e-3]
    near_line = np.abs(moved[:, None] - alpha_pix[None, :]).min(1) < 60
    assert near_line.mean() > 0.6
    # with no metallicity response of the opacity and ionisation (k_o = k_e = 0), alpha lines
    # see z_fe + z_alpha (and carbon bands z_fe + z_c):
    # trading a unit of z_alpha for a unit of z_fe leaves them unchanged, so both axes are in dex
    with torch.no_grad():
        model.lines.electron_response.zero_()
        model.lines.opacity_response.zero_()
    base = _tau(model, z, w)
    swap = z.clone()
    swap[:, 0] += 0.4
    swap[:, 1:] -= 0.4  # carbon's too (TiO sees the oxygen left free by CO)
    t = _tau(model, swap, w)
    torch.testing.assert_close(t["alpha"], base["alpha"], rtol=1e-5, atol=1e-6)
    assert float((t["fe"] - base["fe"]).abs().max()) > 1e-3


def test_selective_gradients_and_deeper_lines_with_more_metal():
    model = _model(1)
    z = torch.randn(4, 3, requires_grad=True)
    w = torch.randn(4, 2)
    parts = model.absorption(z, w)
    (g_alpha,) = torch.autograd.grad(parts["alpha"].sum(), z, retain_graph=True)
    (g_c,) = torch.autograd.grad(parts["c"].sum(), z, retain_graph=True)
    (g_fe,) = torch.autograd.grad(parts["fe"].sum(), z, retain_graph=True)
    assert torch.all(g_alpha[:, :2] == 0) and torch.all(g_alpha[:, 2] > 0)
    assert torch.all(g_c[:, [0, 2]] == 0) and torch.all(g_c[:, 1] > 0)
    assert torch.all(g_fe[:, 1:] == 0) and torch.all(g_fe[:, 0] != 0)
    with torch.no_grad():
        zp = z.detach().clone()
        zp[:, 0] += 0.5  # more metals at fixed ratios: metal lines deepen (hydrogen's may not:
        # the continuous opacity grows with the metals)
        def depth(zz):
            p = model.absorption(zz, w)
            return p["fe"] + p["c"] + p["alpha"]
        darker = depth(zp) >= depth(z.detach()) - 1e-6
        assert float(darker.float().mean()) > 0.9
        # and the continuum the normalisation finds sinks
        assert float(model.absorption(zp, w)["normalisation"].mean()) < float(
            model.absorption(z.detach(), w)["normalisation"].mean())


def test_unselective_gradients_are_the_optical_depths_own_derivatives():
    """Refinement fits z to the decoders with selective=False: there the gradient of every
    group's optical depth with respect to each latent must be its true derivative (iron and
    carbon depths move with z_alpha through the alpha elements' electrons and oxygen's CO),
    while training (selective=True) lets each group train only its own axis."""
    model = _model(1)
    z0 = torch.randn(4, 3) * 0.5
    w = torch.randn(4, 2) * 0.5
    z = z0.clone().requires_grad_(True)
    full, sel = model.absorption(z, w, selective=False), model.absorption(z, w)
    eps = 1e-2
    # the iron group's pixels away from the hydrogen lines, which follow z but steer none of it
    # (test_hydrogen_lines_steer_no_latent)
    ll = load_linelist()
    h_pix = DEFAULT_GRID.pixel_of(ll.wave[np.asarray(ll.element) == "H"])
    far = torch.from_numpy(np.abs(model.win_all.numpy()[:, None] - h_pix[None, :]).min(1) > 2 * WING_TAPS)
    keep = {"fe": far, "c": torch.ones_like(far), "alpha": torch.ones_like(far)}
    for axis in (1, 2):
        up, down = z0.clone(), z0.clone()
        up[:, axis] += eps
        down[:, axis] -= eps
        with torch.no_grad():
            above, below = model.absorption(up, w), model.absorption(down, w)
        for g in ("fe", "c", "alpha"):
            torch.testing.assert_close(full[g], sel[g])  # the same values either way
            fd = (above[g][:, keep[g]].sum(1) - below[g][:, keep[g]].sum(1)) / (2 * eps)
            (grad,) = torch.autograd.grad(full[g][:, keep[g]].sum(), z, retain_graph=True)
            torch.testing.assert_close(grad[:, axis], fd, rtol=2e-3, atol=2e-3)
    # z_alpha moves the iron lines (the electron donors), which training's gradient leaves out
    (g_fe_full,) = torch.autograd.grad(full["fe"].sum(), z, retain_graph=True)
    (g_fe_sel,) = torch.autograd.grad(sel["fe"].sum(), z)
    assert torch.all(g_fe_full[:, 2].abs() > 0.1) and torch.all(g_fe_sel[:, 2] == 0)


def test_hydrogen_lines_steer_no_latent():
    """The hydrogen lines' optical depths follow the metallicity of the electron donors, but
    no fit of z follows them (docs/model.md, "Hydrogen steers no abundance"): with every other
    gradient on (selective=False) theirs with respect to z is zero, the metal lines' is not."""
    model = _model(2, line_hydrogen=True)
    dec = model.lines
    hydrogen = dec.line_is_hydrogen.bool()
    assert hydrogen.any() and (~hydrogen).any()
    w = torch.randn(4, 2) * 0.5
    u = (torch.randn(4, 3) * 0.5).requires_grad_(True)
    z_fe = u[:, :1]
    log_tau = dec._optics(u, z_fe, w, selective=False)[1]
    (g_h,) = torch.autograd.grad(log_tau[:, hydrogen].sum(), u, retain_graph=True)
    (g_metal,) = torch.autograd.grad(log_tau[:, ~hydrogen].sum(), u)
    assert torch.all(g_h == 0) and torch.all(g_metal[:, 0].abs() > 1e-3)
    with torch.no_grad():  # yet their depths do respond to the metals
        richer = u.detach() + torch.tensor([0.5, 0.5, 0.5])
        moved = dec._optics(richer, richer[:, :1], w, selective=False)[1] - log_tau.detach()
    assert float(moved[:, hydrogen].abs().min()) > 1e-3


def test_model_continuum_is_the_survey_normalisation():
    """The line decoders divide by the continuum chemlatent's normaliser would fit to their own
    spectrum: the same bins, clipping and interpolation (spectra.continuum.fit_continuum)."""
    from chemlatent.spectra.continuum import fit_continuum

    model = _model(2)
    lines = model.lines
    rng = np.random.default_rng(0)
    npix = DEFAULT_GRID.npix
    flux = 1.0 - np.zeros((3, npix))
    for k in range(3):  # a smooth slope and a forest of lines of random depths
        flux[k] *= 1.0 + 0.1 * np.linspace(-1, 1, npix) * (k - 1)
        for c in rng.integers(0, npix, 300):
            flux[k, max(c - 2, 0):c + 3] *= 1.0 - rng.uniform(0.05, 0.6)
    for sigma in (None, 0.02):
        ivar = np.full_like(flux, 1e12 if sigma is None else 1.0 / sigma**2)
        cont = fit_continuum(flux.astype(np.float32), ivar.astype(np.float32))
        want = np.log(cont)[:, model.win_all.numpy()]
        sig = None if sigma is None else torch.full((3, 1), sigma)
        got = lines.log_continuum(torch.from_numpy(flux).float(), sig).numpy()
        np.testing.assert_allclose(got, want, atol=2e-4)


def test_noisy_continuum_is_the_survey_normalisation_of_noisy_spectra_on_average():
    """With ``line_noisy_continuum`` the emulated continuum is what the survey's normaliser
    fits to the model flux plus noise, on average: higher than the noiseless flux's at low S/N
    (the clipping keeps more upward noise), the same at high S/N."""
    from chemlatent.spectra.continuum import fit_continuum

    plain, noisy = _model(2).lines, _model(2, line_noisy_continuum=True).lines
    rng = np.random.default_rng(1)
    npix = DEFAULT_GRID.npix
    flux = np.ones((2, npix))
    for c in rng.integers(0, npix, 150):  # a forest of lines
        flux[:, max(c - 2, 0):c + 3] *= 1.0 - rng.uniform(0.05, 0.6)
    win = noisy.win_idx.numpy()
    for snr in (12.0, 40.0):
        sigma = 1.0 / snr
        ivar = np.full((400, npix), snr**2, np.float32)
        draws = flux[np.arange(400) % 2] + rng.standard_normal((400, npix)) * sigma
        survey = np.log(fit_continuum(draws.astype(np.float32), ivar)[:, win])
        survey = np.stack([survey[k::2].mean(0) for k in range(2)])  # each star's mean over draws
        sig = torch.full((2, 1), sigma)
        f = torch.from_numpy(flux).float()
        got = noisy.log_continuum(f, sig).numpy()
        old = plain.log_continuum(f, sig).numpy()
        assert np.abs(got - survey).mean() < 0.25 * np.abs(old - survey).mean()
        np.testing.assert_allclose(got, survey, atol=0.004)
    # a survey twice as noisy in its bluest tenth: the bins' noise shape says so, and with it
    # the emulation follows the survey's fit there too
    from chemlatent.model.line_continuum import bin_noise_shape

    snr = 30.0
    profile = np.where(np.arange(npix) < npix // 10, 0.25, 1.0).astype(np.float32)  # ivar scale
    ivar = np.repeat((snr**2 * profile)[None, :], 400, 0)
    draws = flux[np.arange(400) % 2] + rng.standard_normal((400, npix)) / np.sqrt(ivar)
    survey = np.log(fit_continuum(draws.astype(np.float32), ivar)[:, win])
    survey = np.stack([survey[k::2].mean(0) for k in range(2)])
    shape = bin_noise_shape(torch.from_numpy(ivar[:8]))
    typical = 1.0 / np.sqrt(ivar[0]).mean()  # star_noise.star_noise
    assert shape[0] == pytest.approx((2.0 / snr) / typical, rel=0.02)  # bin noise / star noise
    assert shape[-1] == pytest.approx((1.0 / snr) / typical, rel=0.02)
    shaped = _model(2, line_noisy_continuum=True, line_bin_noise=shape).lines
    sig = torch.full((2, 1), float(typical))
    f = torch.from_numpy(flux).float()
    blue = np.nonzero(win < npix // 10)[0]
    err_shaped = np.abs(shaped.log_continuum(f, sig).numpy() - survey)[:, blue].mean()
    err_flat = np.abs(noisy.log_continuum(f, sig).numpy() - survey)[:, blue].mean()
    assert err_shaped < 0.5 * err_flat
    model = _model(2, line_noisy_continuum=True, line_bin_noise=shape)
    z, w = torch.randn(3, 3), torch.randn(3, 2)
    sigma = torch.tensor([[0.1], [0.03], [0.01]])
    with torch.no_grad():  # the compiled renderer computes the same
        split = model.combine(model.absorption(z, w, selective=False, sigma=sigma))
        fast = model.decode(z, w, selective=False, sigma=sigma)
    torch.testing.assert_close(fast, split, rtol=0, atol=2e-4)


def test_closed_form_curve_of_growth_grows_like_the_voigt_law():
    x = torch.linspace(-7.0, 12.0, 400)
    lw = voigt_log_width(x, torch.full_like(x, -2.0))
    assert torch.all(lw[1:] >= lw[:-1])
    slope_weak = float(lw[1] - lw[0]) / float(x[1] - x[0]) / np.log(10.0)
    assert abs(slope_weak - 1.0) < 0.02


def test_line_model_trains_saves_and_loads(tiny_survey, tmp_path):
    out = tmp_path / "lines"
    train(tiny_survey.path, out, TrainOptions(epochs=2, decoder_form="lines", hidden=(32, 32, 16),
                                              max_stars=1200, batch_size=128, val_fraction=0.1),
          progress=False, log=lambda s: None)
    model = load_model(out)
    assert model.form == "lines"
    hist = model.config.to_dict()
    assert hist["decoder_form"] == "lines"
    z, w = torch.randn(3, 3), torch.randn(3, 2)
    again = load_model(out)
    with torch.no_grad():
        torch.testing.assert_close(model.decode(z, w), again.decode(z, w))
    save_model(model, tmp_path / "copy")
    with torch.no_grad():
        torch.testing.assert_close(load_model(tmp_path / "copy").decode(z, w), model.decode(z, w))


@pytest.mark.parametrize("config", [{}, {"line_shared_physics": True, "line_doppler": "physical"}])
def test_fast_path_equals_the_split_by_group(config):
    model = _model(3, **config)
    z, w = torch.randn(6, 3), torch.randn(6, 2)
    sigma = torch.rand(6, 1) * 0.05
    with torch.no_grad():
        split = model.combine(model.absorption(z, w, selective=False, sigma=sigma))
        fast = model.decode(z, w, selective=False, sigma=sigma)
    # the compiled renderer cuts the band templates below 1e-4 of their peak and may clip a
    # pixel sitting exactly on the normaliser's threshold the other way: 2e-4 of the flux
    torch.testing.assert_close(fast, split, rtol=0, atol=2e-4)


def test_train_command_builds_line_decoders(tiny_survey, tmp_path):
    import json

    from chemlatent.app.cli import main

    out = tmp_path / "cli_lines"
    argv = ["train", str(tiny_survey.path), "--out", str(out), "--epochs", "1", "--hidden", "16,16,8",
            "--max-stars", "400", "--batch-size", "128", "--device", "cpu", "--decoder", "lines",
            "--adversary", "confuse", "--prior", "centred", "--hydrogen", "own",
            "--refine-encoder", "2", "--refine-stars", "50", "--refine-centred", "--refine-nuisance", "0.1",
            "--refine-start", "labels"]
    assert main(argv) == 0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["decoder_form"] == "lines" and cfg["line_hydrogen"] is True
    opts = cfg["training"]["options"]
    assert opts["adv_mode"] == "confuse" and opts["prior"] == "centred"
    assert opts["refine_epochs"] == 2 and opts["refine_stars"] == 50
    assert opts["refine_centred"] is True and opts["refine_nuisance_sigma"] == 0.1
    refit = cfg["training"]["encoder_refit"]
    assert refit["stars"] == 50 and len(refit["heldout_mse"]) == 2
    assert len(refit["prior_mean"]) == 3 and refit["nuisance_sigma"] == 0.1
    assert opts["refine_at_labels"] is True and refit["at_labels"] is True
    assert len(refit["nuisance_rms_after"]) == 2  # the Teff/logg head refitted to the new trunk
    assert not any(k.startswith("prior_centre") for k in load_model(out).state_dict())  # training only
    # --from-model: the same decoders, the encoder refined and refitted again
    again = tmp_path / "again"
    assert main(["train", str(tiny_survey.path), "--out", str(again), "--from-model", str(out),
                 "--refine-nuisance", "0", "--refine-axes", "c,alpha", "--refine-kept-share", "0.5"]) == 0
    cfg2 = json.loads((again / "config.json").read_text())
    # z_fe's target halfway between the encoder's own and the refined z_fe
    assert cfg2["training"]["encoder_refit"]["axes"] == [1, 2]
    assert cfg2["training"]["encoder_refit"]["kept_share"] == 0.5
    assert cfg2["training"]["encoder_refitted_from"] == str(out) and cfg2["name"] == "again"
    assert cfg2["training"]["options"]["refine_nuisance_sigma"] == 0.0
    assert cfg2["training"]["options"]["refine_stars"] == 50
    assert "nuisance_sigma" not in cfg2["training"]["encoder_refit"]
    old_state, new_state = load_model(out).state_dict(), load_model(again).state_dict()
    for k, v in old_state.items():
        if k.startswith("lines."):
            assert torch.equal(v, new_state[k]), k
    assert any(not torch.equal(v, new_state[k]) for k, v in old_state.items() if k.startswith("encoder"))
    same = ["train", str(tiny_survey.path), "--out", str(out), "--from-model", str(out), "--overwrite"]
    assert main(same) != 0
    with pytest.raises(SystemExit):
        main(["train", str(tiny_survey.path), "--out", str(tmp_path / "x"), "--refine-encoder", "-1"])
    with pytest.raises(SystemExit):
        main(["train", str(tiny_survey.path), "--out", str(tmp_path / "x"), "--refine-nuisance", "-0.1"])
    bad_share = ["train", str(tiny_survey.path), "--out", str(tmp_path / "x"), "--refine-kept-share", "1.5"]
    assert main(bad_share) != 0
    assert not (tmp_path / "x").exists()
    assert load_model(out).form == "lines"


def test_pressure_damping_moves_metal_and_hydrogen_damping_separately():
    torch.manual_seed(0)
    cfg = ModelConfig(grid=DEFAULT_GRID.to_dict(), hidden=[32, 32, 16], decoder_hidden=[16, 16],
                      windows={g: [list(w) for w in ws] for g, ws in default_windows().items()},
                      decoder_form="lines", line_pressure_damping=True)
    dec = DisentangledVAE(cfg).lines
    u = torch.tensor([[-1.0, -0.6, -0.7], [0.3, 0.4, 0.35]])
    zf, w = u[:, :1], torch.zeros(2, 2)
    with torch.no_grad():
        base = dec._optics(u, zf, w)[2]
        dec.damping_response.copy_(torch.tensor([-0.2, 0.3]))
        moved = dec._optics(u, zf, w)[2]
    is_h = dec.line_is_h.bool()
    assert is_h.any() and (~is_h).any()
    free = (base > -3.4) & (base < 0.4) & (moved > -3.4) & (moved < 0.4)  # not at the clamps
    shift = (moved - base)[free]
    # metal lines: -0.2 per dex of m, so metal-poor stars (row 0) get more damping than metal-rich
    metal_shift = (moved - base)[:, ~is_h]
    assert float(metal_shift[0].max()) > 0.0 > float(metal_shift[1].min())
    assert torch.all((moved - base)[:, is_h][0] < 0) and torch.all((moved - base)[:, is_h][1] > 0)
    assert shift.abs().max() < 1.0
    # the flag is off by default, so models saved before it load unchanged
    assert not ModelConfig(grid=DEFAULT_GRID.to_dict(), windows={}).line_pressure_damping


def test_train_defaults_are_the_measured_recipe_and_the_command_line_uses_them(tiny_survey, tmp_path):
    """`chemlatent train` with no model options trains what TRAIN_DEFAULTS names (the line
    decoders, the confuse adversary, the centred prior, a refined encoder and a latent range),
    and default_options() gives the same TrainOptions to Python callers."""
    import json

    from chemlatent.app.cli import main
    from chemlatent.model.train_defaults import TRAIN_DEFAULTS, default_options

    out = tmp_path / "defaults"
    argv = ["train", str(tiny_survey.path), "--out", str(out), "--epochs", "1", "--hidden", "16,16,8",
            "--max-stars", "300", "--batch-size", "128", "--device", "cpu", "--refine-stars", "40"]
    assert main(argv) == 0
    cfg = json.loads((out / "config.json").read_text())
    opts = cfg["training"]["options"]
    given = {"target_steps": 0, "max_stars": 300, "refine_stars": 40}  # given on the command line
    assert {k: opts[k] for k in TRAIN_DEFAULTS} == {**TRAIN_DEFAULTS, **given}
    assert cfg["decoder_form"] == "lines" and cfg["latent_range"] is not None
    assert cfg["decoder_pixels"] == "all" and cfg["line_doppler"] == "physical"
    assert len(cfg["training"]["encoder_refit"]["prior_mean"]) == 3
    assert cfg["surrogate_hidden"] and cfg["training"]["surrogate"]["rms"] > 0  # encoding's chi2
    py = default_options(epochs=1)
    assert {k: getattr(py, k) for k in TRAIN_DEFAULTS} == TRAIN_DEFAULTS and py.epochs == 1
    main(["train", str(tiny_survey.path), "--out", str(tmp_path / "origin"), "--epochs", "1", "--hidden", "8",
          "--max-stars", "300", "--batch-size", "128", "--device", "cpu", "--refine-stars", "40",
          "--refine-prior", "origin", "--decoder", "mlp", "--no-latent-range"])
    cfg = json.loads((tmp_path / "origin" / "config.json").read_text())
    assert cfg["decoder_pixels"] == "windows"  # MLP decoders: the element windows
    assert cfg["training"]["options"]["refine_centred"] is False and cfg["latent_range"] is None
    assert "prior_mean" not in cfg["training"]["encoder_refit"]
    assert cfg["surrogate_hidden"] is None and "surrogate" not in cfg["training"]  # MLP: none needed


def test_train_without_epochs_uses_the_defaults_step_budget(tiny_survey, tmp_path, monkeypatch):
    """No --epochs: as many epochs as make the defaults' optimiser steps (a small budget here)."""
    import json

    from chemlatent.app.cli import main
    from chemlatent.app.cli import train as train_cli

    monkeypatch.setitem(train_cli.D, "target_steps", 4)
    out = tmp_path / "budget"
    assert main(["train", str(tiny_survey.path), "--out", str(out), "--hidden", "8", "--max-stars", "300",
                 "--batch-size", "128", "--device", "cpu", "--refine-encoder", "0", "--no-surrogate",
                 "--damping", "pressure"]) == 0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["training"]["options"]["target_steps"] == 4
    assert cfg["line_pressure_damping"] is True  # --damping pressure reaches the model
    assert len(cfg["training"]["history"]) == 2  # 300 stars, 285 for training: 2 steps per epoch


def test_hydrogen_lines_get_their_own_damping_and_long_wings():
    model = _model(4, line_hydrogen=True, decoder_pixels="all", line_doppler="physical")
    dec = model.lines
    wing_h = dec.line_is_hydrogen[dec.wing_lines].bool()
    assert wing_h.any() and (~wing_h).any()
    # metal lines keep WING_TAPS taps each side: the rest go off the grid
    metal_taps = (dec.wing_target[~wing_h] < dec.npix).sum(1)
    assert int(metal_taps.max()) <= 2 * WING_TAPS
    assert int((dec.wing_target[wing_h] < dec.npix).sum(1).max()) > 2 * WING_TAPS
    z, w = torch.zeros(2, 3), torch.tensor([[1.5, 1.0], [1.5, 1.0]])  # warm dwarfs
    sigma = torch.full((2, 1), 0.02)
    halpha = int(np.argmin(np.abs(DEFAULT_GRID.wave - 6562.8)))
    far = halpha + 2 * WING_TAPS  # beyond where a metal-like wing is cut
    depths = []
    for bias in (-1.0, 1.0):  # hydrogen's damping up by 2 dex: the far wing deepens
        with torch.no_grad():
            dec.hydrogen_damping.bias.fill_(bias)
            split = model.combine(model.absorption(z, w, selective=False, sigma=sigma))
            fast = model.decode(z, w, selective=False, sigma=sigma)
            tau = dec._render(z, z[:, :1], w, groups=False)[1]  # optical depth before normalising
        torch.testing.assert_close(fast, split, rtol=0, atol=2e-4)
        depths.append(float(tau[far, 0]))
    assert depths[1] > 2 * depths[0] > 0
    # a model saved without the option has no such parameter and loads as before
    assert not any("hydrogen" in k for k in _model(4).state_dict())


def test_cut_wings_reach_twelve_half_widths():
    model = _model(4, line_hydrogen=True, decoder_pixels="all", line_doppler="physical",
                   line_wing_cut=True)
    dec = model.lines
    wave = dec.line_wave.numpy()
    k_line = int(np.argmin(np.abs(wave - 3934.8)))  # Ca II K: long taps once wings are cut
    row = int((dec.wing_lines == k_line).nonzero()[0, 0])
    assert int((dec.wing_target[row] < dec.npix).sum()) > 2 * WING_TAPS
    z, w = torch.zeros(3, 3), torch.tensor([[-1.0, 1.0], [0.2, -0.3], [1.5, 1.0]])
    sigma = torch.full((3, 1), 0.02)
    with torch.no_grad():
        split = model.combine(model.absorption(z, w, selective=False, sigma=sigma))
        fast = model.decode(z, w, selective=False, sigma=sigma)
        g, sig = dec._widths(z, z[:, :1], w)[3], float(dec.log_lsf.exp())
        k_alone = _wing_alone(dec, row, z, w)
        dec.wing_cut = False
        k_taps = _wing_alone(dec, row, z, w)
    torch.testing.assert_close(fast, split, rtol=0, atol=2e-4)  # compiled and torch paths agree
    centre = int(np.floor(DEFAULT_GRID.pixel_of(wave[k_line:k_line + 1])[0]))
    reach = np.floor(12.0 * g[:, row].numpy() + 5.0 * sig).astype(int) + 1
    assert (reach > WING_TAPS).any() and (reach < 100).all()
    for star in range(3):  # Ca II K's wing ends at its reach, with the same equivalent width
        depth = k_alone[:, star].numpy()
        assert depth[centre + reach[star]] > 0 and depth[centre + reach[star] + 1] == 0
        if centre - reach[star] - 1 >= 0:  # the grid may start inside the wing's blue side
            assert depth[centre - reach[star]] > 0 and depth[centre - reach[star] - 1] == 0
        assert k_taps[centre + reach[star] + 1, star] > 0  # without the cut it goes on
        ew_cut, ew_taps = -np.expm1(-depth).sum(), -np.expm1(-k_taps[:, star].numpy()).sum()
        np.testing.assert_allclose(ew_cut, ew_taps, rtol=0.02)
    assert not _model(4).lines.wing_cut  # the option is off for models saved without it


def _wing_alone(dec, row: int, z: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Optical depth (npix + 1, B) of one damped line's wing alone (every other width zeroed)."""
    widths = dec._widths

    def only_wing(*args, **kwargs):
        h, core_w, wing_w, g, band_tau, kern, sig = widths(*args, **kwargs)
        keep = torch.zeros_like(wing_w)
        keep[:, row] = 1.0
        return h, core_w * 0, wing_w * keep, g, band_tau * 0, kern, sig

    dec._widths = only_wing
    try:
        return dec._render(z, z[:, :1], w, groups=False)[1]
    finally:
        del dec._widths


def test_shared_line_physics_is_boltzmann_and_saha_with_nothing_per_group():
    """--line-physics shared: a line's Teff dependence is its excitation potential's Boltzmann
    factor, its element's ionisation balance Saha's; the opacity and electron-pressure terms
    move every line alike, so no Teff/logg term can take up a shift of one group's latent."""
    from chemlatent.model.line_physics import SharedLinePhysics, line_forming_theta

    phys = SharedLinePhysics(3, ["Fe", "Ca"])
    chi, species = torch.tensor([0.0, 2.0, 2.0]), torch.tensor([0, 0, 1])
    teff = torch.tensor([[5000.0], [6000.0]])
    dop = torch.full((2, 3), 2.0)
    d_theta = float(line_forming_theta(teff[1:]) - line_forming_theta(teff[:1]))
    strength = phys.strength(teff, torch.zeros(2, 1), dop, chi).detach()
    step = strength[1] - strength[0]
    assert float(step[1] - step[0]) == pytest.approx(-2.0 * d_theta, abs=1e-5)  # Boltzmann
    assert float(step[2] - step[1]) == pytest.approx(0.0, abs=1e-6)  # same chi, other element
    ratio = phys.ionisation(teff, torch.zeros(2, 1), species).detach()
    r_step = ratio[1] - ratio[0]
    assert float(r_step[0] - r_step[2]) == pytest.approx(-(7.90 - 6.11) * d_theta, abs=1e-5)  # Saha
    shifted = phys.strength(teff, torch.full((2, 1), 0.3), dop, chi).detach() - strength
    torch.testing.assert_close(shifted, torch.full_like(shifted, 0.3))  # opacity: every line alike
    moved = phys.ionisation(teff, torch.full((2, 1), 0.2), species).detach() - ratio
    torch.testing.assert_close(moved, torch.full_like(moved, -0.2))  # electron pressure: alike
    model = _model(0, line_shared_physics=True, line_doppler="physical")
    assert model.lines.head.out_features == 2 + model.lines.band_tau0.numel() + 3
    with pytest.raises(ValueError, match="physical Doppler"):
        _model(0, line_shared_physics=True)



def test_second_refinement_is_the_first_pass_then_the_from_model_pass(tiny_survey, tmp_path):
    """``train --second-refinement`` gives the weights of ``train`` followed by ``train
    --from-model`` with the second pass's settings (one code path), keeps the first pass, and
    a --resume after the first pass goes straight to the second."""
    import json

    from chemlatent.app.cli import main

    s = str(tiny_survey.path)
    base = ["--epochs", "1", "--hidden", "16,16,8", "--max-stars", "300", "--batch-size", "128",
            "--device", "cpu", "--refine-encoder", "2", "--refine-stars", "40", "--no-surrogate"]
    first, two, one = tmp_path / "first", tmp_path / "two", tmp_path / "one"
    assert main(["train", s, "--out", str(first), *base]) == 0
    assert main(["train", s, "--out", str(two), "--from-model", str(first), "--refine-nuisance", "0",
                 "--refine-axes", "alpha", "--refine-kept-share", "0.5"]) == 0
    assert main(["train", s, "--out", str(one), *base, "--second-refinement"]) == 0
    kept = one / "one-first-pass"
    for a, b in ((kept, first), (one, two)):
        sa, sb = load_model(a).state_dict(), load_model(b).state_dict()
        assert sa.keys() == sb.keys()
        for k in sa:
            assert torch.equal(sa[k], sb[k]), (a.name, k)
    cfg = json.loads((one / "config.json").read_text())
    assert cfg["name"] == "one" and cfg["training"]["encoder_refitted_from"] == str(kept)
    assert cfg["training"]["encoder_refit"]["axes"] == [2]
    assert cfg["training"]["encoder_refit"]["kept_share"] == 0.5
    assert cfg["training"]["options"]["refine_nuisance_sigma"] == 0.0
    assert json.loads((kept / "config.json").read_text())["name"] == "one-first-pass"
    # a finished first pass is not trained again on --resume
    stamp = (kept / "weights.safetensors").stat().st_mtime_ns
    assert main(["train", s, "--out", str(one), *base, "--second-refinement", "--resume"]) == 0
    assert (kept / "weights.safetensors").stat().st_mtime_ns == stamp
    assert torch.equal(load_model(one).state_dict()["encoder.0.weight"],
                       load_model(two).state_dict()["encoder.0.weight"])
    # refused before any work: nothing to refine a second time, or mixed with --from-model
    for i, extra in enumerate((["--refine-encoder", "0"], ["--from-model", str(first)])):
        out = tmp_path / f"refused{i}"
        assert main(["train", s, "--out", str(out), *base[:-3], *extra, "--second-refinement"]) != 0
        assert not out.exists()
