"""The reconstruction surrogate that encoding's chi2 uses for line models (model.surrogate)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from model_helpers import line_model

from chemlatent.encode.streaming import encode_survey
from chemlatent.model.modelio import load_model, save_model
from chemlatent.model.star_noise import star_noise
from chemlatent.model.surrogate import fit_surrogate
from chemlatent.model.training import InMemoryData


def test_surrogate_reproduces_the_line_decoders_and_only_chi2_uses_it(tiny_survey, tmp_path):
    torch.set_num_threads(2)
    model = line_model(3).eval()
    gen = torch.Generator().manual_seed(0)
    encode = model.encode

    def spread_encode(flux, ivar, bounded=True):  # an untrained encoder gives all stars one z
        mu, logvar, w = encode(flux, ivar, bounded)
        return (mu + 0.5 * torch.randn(mu.shape, generator=gen), logvar,
                w + 0.5 * torch.randn(w.shape, generator=gen))

    model.encode = spread_encode
    data = InMemoryData(tiny_survey, np.arange(len(tiny_survey.catalog)))
    flux, ivar, _ = data.batch(torch.arange(200))
    with torch.no_grad():
        mu, _, w = model.encode(flux.float(), ivar.float())
        sigma = 1.0 / torch.sqrt(ivar.float().clamp_min(1e-6).median(1, keepdim=True).values)
        exact = model.decode(mu, w, selective=False, sigma=sigma)
        assert model.decode_fast(mu, w, sigma).equal(exact)  # no surrogate yet: the line decoders
        assert float(mu.std(0).min()) > 0.1
    summary = fit_surrogate(model, data.batch, len(data), star_noise, stars=1200, epochs=60,
                            log=lambda m: None)
    assert model.config.surrogate_hidden == summary["hidden"]
    with torch.no_grad():
        fast = model.decode_fast(mu, w, sigma)
        spread = float((exact - exact.mean(0)).pow(2).mean().sqrt())  # how much stars differ
        rms = float((fast - exact).pow(2).mean().sqrt())
    print(f"surrogate rms {rms:.5f}, spread between stars {spread:.5f}")
    assert rms < 0.5 * spread and summary["rms"] < 0.5 * spread  # a constant would be 1.0
    with torch.no_grad():
        assert model.decode(mu, w, selective=False, sigma=sigma).equal(exact)  # decode is untouched
    # saved and loaded with the model
    loaded = load_model(save_model(model, tmp_path / "m"))
    assert loaded.surrogate is not None
    with torch.no_grad():
        torch.testing.assert_close(loaded.decode_fast(mu, w, sigma), fast)
    # encoding: the same latents; chi2 from the surrogate, close to the line decoders'
    with_sur = pd.read_parquet(encode_survey(tiny_survey, loaded, out_path=tmp_path / "a.parquet"))
    loaded.set_surrogate(None, None)
    assert loaded.config.surrogate_hidden is None
    without = pd.read_parquet(encode_survey(tiny_survey, loaded, out_path=tmp_path / "b.parquet"))
    for col in ("z_fe", "z_c", "z_alpha"):
        assert np.array_equal(with_sur[col].to_numpy(), without[col].to_numpy())
    ratio = with_sur["chi2"].to_numpy() / without["chi2"].to_numpy()
    assert not np.allclose(ratio, 1.0)  # it really came from the surrogate
    assert 0.7 < float(np.median(ratio)) < 1.5
