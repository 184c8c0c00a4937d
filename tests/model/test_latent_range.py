"""The trained latent range: fitted without the wild tail, kept with the model, applied by every
encoding path (the model's own encode and the survey encoder)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from model_helpers import small_model

from chemlatent.encode.streaming import encode_survey
from chemlatent.model.latent_range import fit_latent_range, outside_share
from chemlatent.model.modelio import load_model, save_model
from chemlatent.model.training import TrainOptions, train
from chemlatent.spectra.grid import DEFAULT_GRID


def test_range_holds_the_population_and_leaves_the_wild_few_outside():
    rng = np.random.default_rng(0)
    z = rng.normal([-2.3, 1.0, 0.7], [0.8, 1.2, 0.5], size=(20_000, 3))
    z[:20] = [-26.0, 35.0, 0.0]  # 0.1 %: an encoder extrapolating for a handful of stars
    (flo, fhi), (clo, chi), _ = fit_latent_range(z)
    assert flo > -12 and chi < 14  # the wild latents do not set the range
    assert fhi > -2.3 + 3 * 0.8 and clo < 1.0 - 3 * 1.2  # the population's own tails stay inside
    assert outside_share(z, fit_latent_range(z)) == pytest.approx(20 / 20_000, abs=5e-4)


def test_bad_inputs_to_the_range_are_clear_errors():
    with pytest.raises(ValueError, match="at least two"):
        fit_latent_range(np.zeros((1, 3)))
    with pytest.raises(ValueError, match="finite"):
        fit_latent_range(np.full((5, 3), np.nan))
    with pytest.raises(ValueError, match="lo < hi"):
        small_model().set_latent_range([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])


def test_encode_clamps_into_the_range_and_the_range_survives_saving(tmp_path):
    torch.manual_seed(0)
    model = small_model().eval()
    flux = 1 - 0.3 * torch.rand(64, DEFAULT_GRID.npix)
    ivar = torch.full_like(flux, 100.0)
    with torch.no_grad():
        free = model.encode(flux, ivar)[0]
    mid = free.median(0).values
    narrow = [[float(m) - 1e-3, float(m) + 1e-3] for m in mid]
    model.set_latent_range(narrow)
    bounded = model.encode(flux, ivar)[0]
    lo, hi = torch.tensor(narrow).T
    assert bool(((bounded >= lo) & (bounded <= hi)).all())
    assert not bool(((free >= lo) & (free <= hi)).all())  # the range did bind
    assert torch.equal(model.encode(flux, ivar, bounded=False)[0], free)
    save_model(model, tmp_path / "m")
    again = load_model(tmp_path / "m")
    assert again.config.latent_range == narrow
    assert torch.allclose(again.encode(flux, ivar)[0], bounded)


def test_training_records_the_range_and_the_survey_encoder_applies_it(tiny_survey, tmp_path):
    out = tmp_path / "ranged"
    train(tiny_survey.path, out, TrainOptions(epochs=1, adv_weight=0.0, hidden=(32, 32, 16), max_stars=1200,
                                              batch_size=128, val_fraction=0.1),
          progress=False, log=lambda s: None)
    rng = json.loads((out / "config.json").read_text())["latent_range"]
    assert len(rng) == 3 and all(lo < hi for lo, hi in rng)
    model = load_model(out)
    # narrow it so it binds, then check the survey encoder (not only model.encode) clamps
    lat_free = pd.read_parquet(encode_survey(tiny_survey, model, out_path=tmp_path / "a.parquet"))
    z = lat_free[["z_fe", "z_c", "z_alpha"]].to_numpy()
    narrow = [[float(a), float(b)] for a, b in zip(np.quantile(z, 0.3, axis=0), np.quantile(z, 0.7, axis=0))]
    model.set_latent_range(narrow)
    lat = pd.read_parquet(encode_survey(tiny_survey, model, out_path=tmp_path / "b.parquet"))
    zb = lat[["z_fe", "z_c", "z_alpha"]].to_numpy()
    lo, hi = np.array(narrow).T
    assert (zb >= lo - 1e-5).all() and (zb <= hi + 1e-5).all()
    assert np.allclose(zb, np.clip(z, lo, hi), atol=2e-3)


def test_training_without_a_range_leaves_encodings_unbounded(tiny_survey, tmp_path):
    out = tmp_path / "free"
    train(tiny_survey.path, out, TrainOptions(epochs=1, adv_weight=0.0, hidden=(32, 32, 16), max_stars=1200,
                                              batch_size=128, val_fraction=0.1, latent_range=False),
          progress=False, log=lambda s: None)
    assert json.loads((out / "config.json").read_text())["latent_range"] is None
