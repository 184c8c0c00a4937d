"""Physical Doppler widths of the line decoders (chemlatent.model.doppler)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from model_helpers import default_windows_config

from chemlatent.model.doppler import doppler_width_kms, microturbulence_kms
from chemlatent.model.modelio import load_model, save_model
from chemlatent.model.vae import DisentangledVAE, ModelConfig
from chemlatent.spectra.grid import DEFAULT_GRID
from chemlatent.spectra.physics import doppler_width_kms as generator_width


def _lines_model(doppler: str) -> DisentangledVAE:
    torch.manual_seed(0)
    return DisentangledVAE(ModelConfig(grid=DEFAULT_GRID.to_dict(), hidden=[32, 32, 16],
                                       decoder_hidden=[16, 16],
                                       windows=default_windows_config(), decoder_form="lines",
                                       line_doppler=doppler, label_mean=[5000.0, 3.0],
                                       label_std=[800.0, 1.2]))


def test_width_is_thermal_plus_microturbulence():
    teff = torch.tensor([[5777.0], [4500.0]])
    logg = torch.tensor([[4.44], [1.5]])
    mass = torch.tensor([1.0, 55.8])
    v = doppler_width_kms(teff, logg, mass)
    assert v.shape == (2, 2)
    # hydrogen's thermal width dominates (~8 km/s); iron's is ~1 km/s, so microturbulence matters
    assert 7.0 < float(v[0, 0]) < 10.0 and 1.2 < float(v[0, 1]) < 1.8
    assert float(microturbulence_kms(torch.tensor(1.5))) > float(microturbulence_kms(torch.tensor(4.44)))
    # the same thermal law as the generator's physics (its own microturbulence put in)
    xi = float(microturbulence_kms(torch.tensor(4.44)))
    ref = generator_width("Fe", np.array([5777.0]), np.array([xi]))[0]
    assert float(v[0, 1]) == pytest.approx(ref, rel=1e-4)


def test_physical_widths_follow_teff_logg_and_survive_save(tmp_path):
    model = _lines_model("physical")
    dec = model.lines
    u = torch.zeros(2, 3)
    w = torch.tensor([[1.0, -1.5], [-1.0, 1.0]])  # a hot giant and a cool dwarf (standardised)
    with torch.no_grad():
        dld = dec._optics(u, u[:, :1], w)[3]
        dec.head.bias[-2] += 1.0  # the learned width's output no longer matters
        again = dec._optics(u, u[:, :1], w)[3]
    torch.testing.assert_close(dld, again)
    hot_giant, cool_dwarf = dld[0] / dec.line_wave, dld[1] / dec.line_wave
    assert torch.all(hot_giant > cool_dwarf)
    save_model(model, tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    assert loaded.config.line_doppler == "physical"
    with torch.no_grad():
        torch.testing.assert_close(loaded.lines._optics(u, u[:, :1], w)[3], again)


def test_learned_widths_stay_the_default_of_older_models_and_bad_values_fail():
    assert ModelConfig(grid=DEFAULT_GRID.to_dict(), windows={}).line_doppler == "learned"
    assert _lines_model("learned").lines.doppler_labels is None
    with pytest.raises(ValueError, match="line_doppler"):
        _lines_model("thermal")


def test_anchored_strengths_keep_the_line_lists_contrast_with_boltzmann_excitation():
    torch.manual_seed(0)
    cfg = dict(grid=DEFAULT_GRID.to_dict(), hidden=[32, 32, 16], decoder_hidden=[16, 16],
               windows=default_windows_config(), decoder_form="lines", label_mean=[5000.0, 3.0],
               label_std=[800.0, 1.2])
    with pytest.raises(ValueError, match="physical Doppler"):
        DisentangledVAE(ModelConfig(**cfg, line_strength_weight=1.0))
    dec = DisentangledVAE(ModelConfig(**cfg, line_doppler="physical", line_strength_weight=1.0)).lines
    assert dec.anchored and dec.n_line_terms == dec.n_species
    terms = torch.randn(2, dec.n_species)
    w = torch.tensor([[-1.0, 0.0], [1.0, 0.0]])  # 4200 K and 5800 K
    got = dec._strength_terms(terms, w).detach()
    # two lines of one species differ only by their excitation: -(chi_a - chi_b) * dtheta
    sp = dec.line_species
    a, b = next((i, j) for i in range(dec.n_lines) for j in range(i + 1, dec.n_lines)
                if sp[i] == sp[j] and abs(float(dec.line_chi[i] - dec.line_chi[j])) > 1.0)
    cool, hot = got[0, a] - got[0, b], got[1, a] - got[1, b]
    # the higher-excitation line gains on the other as the star gets hotter
    hi, lo = (a, b) if dec.line_chi[a] > dec.line_chi[b] else (b, a)
    assert float((got[1, hi] - got[1, lo]) - (got[0, hi] - got[0, lo])) > 0.1
    theta = lambda t: 5040.0 / (0.85 * t)  # noqa: E731
    expected = -float(dec.line_chi[a] - dec.line_chi[b]) * (theta(5800.0) - theta(4200.0))
    assert float(hot - cool) == pytest.approx(expected, rel=1e-4)
    assert float(dec.strength_penalty().detach()) == 0.0
    with torch.no_grad():
        dec.line_offset.fill_(0.3)
    assert float(dec.strength_penalty().detach()) == pytest.approx(0.09)


def test_smooth_continuum_cannot_draw_a_line():
    torch.manual_seed(0)
    cfg = ModelConfig(grid=DEFAULT_GRID.to_dict(), hidden=[32, 32, 16], decoder_hidden=[16, 16],
                      windows=default_windows_config(), decoder_form="lines", line_smooth_continuum=16)
    dec = DisentangledVAE(cfg).lines
    knots = dec.continuum_knots
    assert torch.allclose(knots.sum(1), torch.ones(dec.n_win))  # interpolation weights
    assert knots.shape[1] < dec.n_win / 8
    with torch.no_grad():
        dec.continuum.weight.normal_()
        depth = dec.continuum_depth(torch.randn(4, 16))
    # linear between knots: second differences vanish inside each run of pixels, except at knots
    win = dec.win_idx.numpy()
    inside = np.nonzero((win[2:] - win[:-2]) == 2)[0]
    d2 = (depth[:, 2:] - 2 * depth[:, 1:-1] + depth[:, :-2])[:, inside].abs()
    assert float((d2 > 1e-4).float().mean()) < 0.15


def test_line_decoders_can_model_every_pixel(tmp_path):
    torch.manual_seed(0)
    cfg = dict(grid=DEFAULT_GRID.to_dict(), hidden=[32, 32, 16], decoder_hidden=[16, 16],
               windows=default_windows_config(), label_mean=[5000.0, 3.0], label_std=[800.0, 1.2])
    windows = DisentangledVAE(ModelConfig(**cfg, decoder_form="lines"))
    every = DisentangledVAE(ModelConfig(**cfg, decoder_form="lines", decoder_pixels="all"))
    assert windows.win_all.numel() < DEFAULT_GRID.npix == every.win_all.numel()
    z, w = torch.zeros(2, 3), torch.zeros(2, 2)
    with torch.no_grad():
        flux = every.decode(z, w, selective=False)
    assert flux.shape == (2, DEFAULT_GRID.npix) and bool(torch.isfinite(flux).all())
    # encoding's chi2 stays over the element windows: the same pixels as a windows model's
    torch.testing.assert_close(every.chi2_idx, windows.win_all)
    with torch.no_grad():
        torch.testing.assert_close(every.decode_fast(z, w), flux[:, every.chi2_idx])
    # the element windows (what the dashboard shades) stay the paper's
    torch.testing.assert_close(every.win_alpha, windows.win_alpha)
    save_model(every, tmp_path / "m")
    assert load_model(tmp_path / "m").win_all.numel() == DEFAULT_GRID.npix
    for bad in (dict(decoder_form="mlp", decoder_pixels="all"),
                dict(decoder_form="lines", decoder_pixels="most")):
        with pytest.raises(ValueError, match="decoder_pixels"):
            DisentangledVAE(ModelConfig(**cfg, **bad))
