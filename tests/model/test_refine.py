"""Per-star refinement of the latents and the encoder refit (chemlatent.model.refine)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from model_helpers import line_model as _model

from chemlatent.errors import ChemlatentError
from chemlatent.model.refine import (
    RefineOptions,
    encoder_mean,
    refine_latents,
    refine_rows,
    refit_encoder,
    refit_nuisance_head,
)
from chemlatent.model.star_noise import signal_to_noise
from chemlatent.model.training import InMemoryData
from chemlatent.model.vae import standardised_labels


def _objective(model, flux, ivar, z, prior_weight):
    with torch.no_grad():
        _, _, w = model.encode(flux, ivar)
        sigma = 1.0 / signal_to_noise(ivar)[:, None]
        m = model.decode(z, w, selective=False, sigma=sigma)
        idx = model.win_all
        chi2 = (ivar[:, idx] * (flux[:, idx] - m) ** 2).sum(-1)
        return 0.5 * chi2 + 0.5 * prior_weight * (z * z).sum(-1)


def _spectra(tiny_survey, n=24):
    data = InMemoryData(tiny_survey, np.arange(n))
    return data, *data.batch(torch.arange(n))[:2]


def test_refinement_lowers_each_stars_objective_and_leaves_the_model_alone(tiny_survey):
    model = _model()
    data, flux, ivar = _spectra(tiny_survey)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        mu, _, _ = model.encode(flux, ivar)
    opts = RefineOptions(steps=25, lr=0.05)
    z = refine_latents(model, flux, ivar, opts)
    start, end = _objective(model, flux, ivar, mu, 1.0), _objective(model, flux, ivar, z, 1.0)
    assert torch.all(end <= start + 1e-3)
    assert float((start - end).mean()) > 0.1
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(p.requires_grad for p in model.parameters())
    # the prior holds z: with a heavy prior weight the refined z is closer to the origin
    held = refine_latents(model, flux, ivar, RefineOptions(steps=25, lr=0.05, prior_weight=50.0))
    assert float(held.norm(dim=1).mean()) < float(z.norm(dim=1).mean())
    # a prior on one axis alone holds that axis and the others much less than a prior on all
    one = refine_latents(model, flux, ivar, RefineOptions(steps=25, lr=0.05, prior_weight=(1.0, 1.0, 50.0)))
    assert float(one[:, 2].abs().mean()) < float(z[:, 2].abs().mean())
    assert float((one[:, :2] - z[:, :2]).abs().mean()) < 0.5 * float((held[:, :2] - z[:, :2]).abs().mean())
    # batches give the same answer as one call over the same rows
    rows = torch.arange(len(flux))
    parts = refine_rows(model, data.batch, rows, RefineOptions(steps=25, lr=0.05, batch=10))
    np.testing.assert_allclose(parts, z.numpy(), atol=1e-4)


def test_refining_the_nuisance_too_fits_better_and_a_tight_hold_changes_nothing(tiny_survey):
    model = _model()
    _, flux, ivar = _spectra(tiny_survey)
    held = refine_latents(model, flux, ivar, RefineOptions(steps=25, lr=0.05))
    free = refine_latents(model, flux, ivar, RefineOptions(steps=25, lr=0.05, nuisance_sigma=1.0))
    tight = refine_latents(model, flux, ivar, RefineOptions(steps=25, lr=0.05, nuisance_sigma=1e-5))
    assert not torch.allclose(free, held, atol=1e-3)
    np.testing.assert_allclose(tight.numpy(), held.numpy(), atol=2e-3)
    assert all(p.requires_grad for p in model.parameters())


def test_a_centred_prior_holds_z_at_the_population_mean(tiny_survey):
    model = _model()
    data, flux, ivar = _spectra(tiny_survey)
    rows = torch.arange(len(flux))
    centre = encoder_mean(model, data.batch, rows, chunk=7)  # chunked: the same mean
    with torch.no_grad():
        np.testing.assert_allclose(centre, model.encode(flux, ivar)[0].mean(0).numpy(), atol=1e-5)
    shifted = (centre[0] + 2.0, centre[1] - 1.0, centre[2] + 0.5)
    opts = {"steps": 25, "lr": 0.05, "prior_weight": 50.0}
    there = refine_latents(model, flux, ivar, RefineOptions(**opts, prior_mean=shifted))
    origin = refine_latents(model, flux, ivar, RefineOptions(**opts))
    target = torch.tensor(shifted)
    assert float((there - target).norm(dim=1).mean()) < float((origin - target).norm(dim=1).mean())
    assert float(origin.norm(dim=1).mean()) < float(there.norm(dim=1).mean())


def test_encoder_refit_learns_the_targets_and_keeps_decoders_and_nuisance(tiny_survey):
    model = _model()
    data, flux, ivar = _spectra(tiny_survey, 200)
    rows = torch.arange(200)
    with torch.no_grad():  # targets another encoder computes from the same spectra: learnable
        targets = _model(seed=1).encode(flux, ivar)[0].numpy()
        start = float(((model.encode(flux, ivar)[0] - torch.from_numpy(targets)) ** 2).mean())
    fixed = {k: v.clone() for k, v in model.state_dict().items()
             if not (k.startswith("encoder.") or k.startswith("mu."))}
    losses = refit_encoder(model, data.batch, rows, targets, epochs=20, lr=3e-3, batch_size=32)
    assert len(losses) == 20 and min(losses) < 0.5 * start
    state = model.state_dict()
    assert all(torch.equal(fixed[k], state[k]) for k in fixed)
    assert not model.training and all(p.requires_grad for p in model.parameters())


def test_bad_refinement_settings_are_one_line_errors(tiny_survey):
    model = _model()
    _, flux, ivar = _spectra(tiny_survey, 4)
    with pytest.raises(ChemlatentError, match="steps >= 1"):
        refine_latents(model, flux, ivar, RefineOptions(steps=0))
    with pytest.raises(ChemlatentError, match="prior_weight >= 0"):
        refine_latents(model, flux, ivar, RefineOptions(prior_weight=(1.0, 1.0)))
    with pytest.raises(ChemlatentError, match="prior_weight >= 0"):
        refine_latents(model, flux, ivar, RefineOptions(prior_weight=-1.0))
    with pytest.raises(ChemlatentError, match="nuisance_sigma >= 0"):
        refine_latents(model, flux, ivar, RefineOptions(nuisance_sigma=-0.1))
    with pytest.raises(ChemlatentError, match="epochs must be >= 1"):
        refit_encoder(model, lambda idx: (flux[idx], ivar[idx]), torch.arange(4), np.zeros((4, 3)), epochs=0)


def test_training_data_caps_very_high_snr_instead_of_overflowing(tmp_path):
    import pandas as pd

    from chemlatent.io.store import SurveyWriter
    from chemlatent.model.training import IVAR_MAX_F16
    from chemlatent.spectra.grid import DEFAULT_GRID

    n, p = 4, DEFAULT_GRID.npix
    ivar = np.full((n, p), 1e6, np.float32)  # S/N 1000 per pixel, as in MILES
    ivar[:, :10] = 0.0
    with SurveyWriter(tmp_path / "hi", DEFAULT_GRID, chunk_stars=8) as w:
        w.append(np.ones((n, p), np.float32), ivar=ivar)
        survey = w.finish(pd.DataFrame({"star_id": np.arange(n)}))
    got = InMemoryData(survey, np.arange(n)).batch(torch.arange(n))[1]
    assert torch.isfinite(got).all()
    assert float(got.max()) == IVAR_MAX_F16 and float(got[:, :10].abs().max()) == 0.0


def test_refining_at_the_labels_fits_the_decoders_at_each_stars_teff_logg(tiny_survey):
    model = _model()
    data, flux, ivar = _spectra(tiny_survey)
    labels = data.batch(torch.arange(len(flux)))[2]
    assert torch.isfinite(labels).all()
    opts = RefineOptions(steps=25, lr=0.05)
    at_labels = refine_latents(model, flux, ivar, opts, labels)
    at_encoder = refine_latents(model, flux, ivar, opts)
    assert not torch.allclose(at_labels, at_encoder, atol=1e-3)
    # at the labels the refined z fits the decoders at those Teff/logg better than at the
    # encoder's (the objective of refinement, evaluated with the labels' nuisance)
    w_lab = standardised_labels(model, labels)
    sigma = 1.0 / signal_to_noise(ivar)[:, None]
    idx = model.win_all
    with torch.no_grad():
        chi = [(ivar[:, idx] * (flux[:, idx] - model.decode(z, w_lab, selective=False, sigma=sigma)) ** 2
                ).sum(-1) for z in (at_labels, at_encoder)]
    assert float(chi[0].mean()) < float(chi[1].mean())
    # a star without labels starts at the encoder's guess
    unknown = labels.clone()
    unknown[3] = float("nan")
    mixed = refine_latents(model, flux, ivar, opts, unknown)
    np.testing.assert_allclose(mixed[3].numpy(), at_encoder[3].numpy(), atol=1e-4)
    np.testing.assert_allclose(mixed[:3].numpy(), at_labels[:3].numpy(), atol=1e-4)
    # refine_rows passes the labels only when told
    rows = torch.arange(len(flux))
    np.testing.assert_allclose(refine_rows(model, data.batch, rows, opts, at_labels=True), at_labels.numpy(),
                               atol=1e-4)
    # standardised_labels is the model's own label scaling
    mean, std = torch.tensor(model.config.label_mean), torch.tensor(model.config.label_std)
    torch.testing.assert_close(w_lab * std + mean, labels.float())


def test_refitting_the_nuisance_head_fits_the_labels_and_leaves_z_alone(tiny_survey):
    model = _model()
    n = 60
    data = InMemoryData(tiny_survey, np.arange(n))
    flux, ivar, labels = data.batch(torch.arange(n))
    with torch.no_grad():
        mu0, _, w0 = model.encode(flux, ivar)
    out = refit_nuisance_head(model, data.batch, torch.arange(n))
    with torch.no_grad():
        mu1, _, w1 = model.encode(flux, ivar)
    torch.testing.assert_close(mu1, mu0)
    target = standardised_labels(model, labels)
    err0, err1 = ((w0 - target) ** 2).mean(0).sqrt(), ((w1 - target) ** 2).mean(0).sqrt()
    assert torch.all(err1 < err0)
    np.testing.assert_allclose(out["nuisance_rms_after"], err1.numpy(), atol=2e-3)
    np.testing.assert_allclose(out["nuisance_rms_before"], err0.numpy(), atol=2e-3)
    # too few labelled stars for the head's inputs: nothing is fitted
    assert refit_nuisance_head(model, data.batch, torch.arange(5)) == {}


def test_refit_axes_keep_the_encoders_own_targets_on_the_other_axes(tiny_survey, monkeypatch):
    import chemlatent.model.refine as refine

    data = InMemoryData(tiny_survey, np.arange(40))
    seen = {}

    def capture(model, batch, rows, targets, **kw):
        seen["rows"], seen["targets"] = rows, targets.copy()
        return [0.0]

    monkeypatch.setattr(refine, "refit_encoder", capture)
    monkeypatch.setattr(refine, "refit_nuisance_head", lambda *a, **k: {})
    out = {}
    for axes in ((0, 1, 2), (1, 2)):
        model = _model()
        info = refine.refine_and_refit(model, data.batch, len(data), stars=40, steps=20, epochs=1,
                                       axes=axes, log=lambda m: None)
        with torch.no_grad():
            encoded = model.encode(*data.batch(seen["rows"])[:2])[0].numpy()
        out[axes] = (seen["targets"], encoded, info)
    full, enc, info = out[(0, 1, 2)]
    kept, enc_k, info_k = out[(1, 2)]
    assert not np.allclose(full[:, 0], enc[:, 0], atol=1e-4)  # refined: z_fe moved
    np.testing.assert_allclose(kept[:, 0], enc_k[:, 0], atol=1e-5)  # kept: the encoder's own
    np.testing.assert_allclose(kept[:, 1:], full[:, 1:], atol=1e-5)  # the same refinement
    assert "axes" not in info and info_k["axes"] == [1, 2]


def test_refine_axes_option(tmp_path):
    from chemlatent.app.cli.train import refine_axes

    assert refine_axes("c,alpha") == (1, 2) and refine_axes("alpha, fe") == (0, 2)
    with pytest.raises(ChemlatentError, match="--refine-axes"):
        refine_axes("fe,oxygen")


def test_refined_targets_are_cached_and_a_stopped_run_resumes_where_the_file_ends(tiny_survey, monkeypatch,
                                                                                  tmp_path):
    import chemlatent.model.refine as refine

    data = InMemoryData(tiny_survey, np.arange(30))
    seen = []
    monkeypatch.setattr(refine, "refit_encoder",
                        lambda m, b, rows, targets, **kw: seen.append(targets.copy()) or [0.0])
    monkeypatch.setattr(refine, "refit_nuisance_head", lambda *a, **k: {})
    cache = tmp_path / "ck" / "refined.safetensors"
    real = refine.refine_latents
    calls = []

    def counted(model, flux, *a, **k):
        calls.append(len(flux))
        return real(model, flux, *a, **k)

    monkeypatch.setattr(refine, "refine_latents", counted)
    monkeypatch.setattr(refine, "RefineOptions", lambda **k: RefineOptions(batch=8, **k))
    run = dict(stars=30, steps=10, epochs=1, log=lambda m: None)
    model = _model()
    refine.refine_and_refit(model, data.batch, len(data), **run)  # no cache: the reference
    assert sum(calls) == 30
    calls.clear()
    refine.refine_and_refit(_model(), data.batch, len(data), cache=cache, **run)
    assert sum(calls) == 30 and cache.is_file()
    np.testing.assert_allclose(seen[1], seen[0], atol=1e-5)
    calls.clear()
    refine.refine_and_refit(_model(), data.batch, len(data), cache=cache, **run)  # all cached
    assert calls == [] and np.array_equal(seen[2], seen[1])
    # a run stopped after two batches: the third refines only the rest, with the same targets
    from chemlatent.model.refine_cache import RefineCache

    full = RefineCache(cache, "unused", 30)  # another key: nothing is taken from the file
    assert full.done == 0
    key = refine.refine_key(_model(), torch.randperm(30, generator=torch.Generator().manual_seed(1))[:30],
                            refine.cache_settings(RefineOptions(batch=8, steps=10), False))
    partial = RefineCache(tmp_path / "partial.safetensors", key, 30)
    partial.store(0, seen[1][:16])
    calls.clear()
    refine.refine_and_refit(_model(), data.batch, len(data), cache=tmp_path / "partial.safetensors", **run)
    assert sum(calls) == 14
    np.testing.assert_allclose(seen[-1], seen[1], atol=1e-5)
    # other settings (more steps) do not reuse the file
    calls.clear()
    refine.refine_and_refit(_model(), data.batch, len(data), cache=cache, **{**run, "steps": 11})
    assert sum(calls) == 30


def test_standardised_refit_weighs_a_narrow_axis_like_a_wide_one(tiny_survey):
    data, flux, ivar = _spectra(tiny_survey, 200)
    rows = torch.arange(200)
    with torch.no_grad():
        targets = _model(seed=1).encode(flux, ivar)[0].numpy()
    targets[:, 0] *= 20.0  # a wide z_fe next to narrow z_c and z_alpha

    def relative_error(loss: str) -> np.ndarray:
        model = _model()
        refit_encoder(model, data.batch, rows, targets, epochs=15, lr=3e-3, batch_size=32, loss=loss,
                      schedule="cosine")
        with torch.no_grad():
            mu = model.encode(flux, ivar)[0].numpy()
        return ((mu - targets) ** 2).mean(0) / targets.var(0)

    equal, standardised = relative_error("equal"), relative_error("standardised")
    # the narrow axes are learnt better (relative to their spread) when they weigh alike
    assert standardised[1:].mean() < equal[1:].mean()
    with pytest.raises(ChemlatentError, match="refit loss"):
        refit_encoder(_model(), data.batch, rows, targets, epochs=1, loss="huber")
