"""Posterior means under the survey's own population (chemlatent.encode.posterior_mean,
encode --posterior-mean)."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from encode_helpers import faint_copy

from chemlatent.app.cli import main
from chemlatent.encode.posterior_mean import (
    deconvolve,
    fit_prior,
    latent_noise,
    posterior_means,
    shrink,
)
from chemlatent.errors import ChemlatentError
from chemlatent.io.latents import latents_metadata
from chemlatent.io.store import Survey


class LinearEncoder(torch.nn.Module):
    def __init__(self, a: torch.Tensor) -> None:
        super().__init__()
        self.a = torch.nn.Parameter(a)

    def encode(self, x, ivar):
        return x @ self.a, None, None


def test_latent_noise_propagates_pixel_noise_through_the_encoder():
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(40, 3, generator=gen)
    ivar = torch.rand(2, 40, generator=gen) + 0.5
    ivar[1, :10] = 0.0  # masked pixels carry no noise
    sd = latent_noise(LinearEncoder(a), torch.randn(2, 40, generator=gen), ivar)
    for i in range(2):
        var = torch.where(ivar[i] > 0, 1 / ivar[i].clamp_min(1e-12), torch.zeros(40))
        draws = torch.randn(20000, 40, generator=gen) * var.sqrt()
        assert np.allclose(sd[i], (draws @ a).std(0).numpy(), rtol=0.03)


def _population(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A narrow population with a 5 % tail at +1.5, each star with its own noise."""
    truth = np.where(rng.uniform(size=n) < 0.05, 1.5, 0.0) + rng.normal(0, 0.1, n)
    sigma = np.exp(rng.uniform(np.log(0.05), np.log(0.6), n))
    return truth, sigma, truth + sigma * rng.normal(size=n)


def test_posterior_mean_beats_the_fit_and_keeps_the_tail():
    rng = np.random.default_rng(1)
    truth, sigma, z = _population(20000, rng)
    grid, w = deconvolve(z, sigma)
    assert 0.03 < w[grid > 1.0].sum() < 0.07  # the tail's share is recovered
    pm, sd = shrink(z, sigma, grid, w)
    # the posterior is narrower than the noise, and it covers the truth as often as it says
    assert np.median(sd) < 0.6 * np.median(sigma)
    assert 0.6 < np.mean(np.abs(pm - truth) < sd) < 0.76
    assert np.corrcoef(pm, truth)[0, 1] > np.corrcoef(z, truth)[0, 1] + 0.05
    tail = truth > 1.0
    assert pm[tail].mean() > 1.2 and np.median(np.abs(pm[~tail])) < np.median(np.abs(z[~tail]))


def test_too_few_stars_are_refused():
    rng = np.random.default_rng(2)
    z = rng.normal(size=(50, 3))
    with pytest.raises(ChemlatentError, match="at least"):
        fit_prior(z, np.full((50, 3), 0.1))


def test_carbon_and_alpha_follow_their_own_metallicity_bin():
    rng = np.random.default_rng(3)
    n = 8000
    z_fe = rng.uniform(-2, 0, n)
    c_truth = np.where(z_fe < -1, 1.0, 0.0) + rng.normal(0, 0.05, n)  # carbon-rich when metal-poor
    # each star its own noise (as a survey's S/N spread gives): what fixes the noise's scale
    sigma = np.exp(rng.uniform(np.log(0.05), np.log(0.6), (n, 3)))
    sigma[:, 0] = 0.01
    z = np.stack([z_fe, c_truth + sigma[:, 1] * rng.normal(size=n),
                  c_truth + sigma[:, 2] * rng.normal(size=n)], 1)
    pm, _ = posterior_means(z, sigma, fit_prior(z, sigma))
    poor = z_fe < -1.2
    assert abs(pm[poor, 1].mean() - 1.0) < 0.05 and abs(pm[z_fe > -0.8, 1].mean()) < 0.05
    rms = lambda e: np.sqrt(np.mean(e**2))  # noqa: E731
    assert rms(pm[:, 1] - c_truth) < 0.6 * rms(z[:, 1] - c_truth)
    missing = z.copy()
    missing[0, 1] = np.nan
    assert np.isnan(posterior_means(missing, sigma, fit_prior(z, sigma))[0][0, 1])


def test_encode_posterior_mean_rewrites_the_latents(encoded_tiny, tmp_path, capsys):
    path = tmp_path / "tiny"
    shutil.copytree(encoded_tiny, path)
    before = pd.read_parquet(next((path / "latents").glob("*.parquet")))
    assert main(["encode", str(path), "--overwrite", "--posterior-mean"]) == 0
    assert "posterior means under the survey's population" in capsys.readouterr().out
    lat_path = next((path / "latents").glob("*.parquet"))
    after = pd.read_parquet(lat_path)
    assert (after.star_id.to_numpy() == before.star_id.to_numpy()).all()
    meta = latents_metadata(lat_path)["posterior_mean"]
    assert meta["n_stars"] == len(after) and meta["fe_bins"] == 10
    # faint stars move further than bright ones, and the axes keep their order
    snr = Survey(path).catalog.set_index("star_id").loc[after.star_id, "snr"].to_numpy()
    move = np.abs(after.z_c.to_numpy() - before.z_c.to_numpy())
    assert np.median(move[snr < 30]) > np.median(move[snr > 60])
    assert np.corrcoef(after.z_c, before.z_c)[0, 1] > 0.8
    assert np.median(after.z_c_std[snr < 30]) > np.median(after.z_c_std[snr > 60])
    assert main(["encode", str(path), "--posterior-mean", "--ids", "x.txt"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--posterior-mean encodes a whole survey" in err[0]


@pytest.mark.parametrize("snr, mode, applied", [(10.0, None, True), (60.0, None, False),
                                                (10.0, "off", False), (60.0, "on", True)])
def test_encode_applies_posterior_means_to_a_survey_of_faint_stars(encoded_tiny, tmp_path, capsys,
                                                                  snr, mode, applied):
    path = tmp_path / "tiny"
    shutil.copytree(encoded_tiny, path)
    cat = pd.read_parquet(path / "catalog.parquet")
    cat["snr"] = np.float32(snr)
    cat.to_parquet(path / "catalog.parquet")
    argv = ["encode", str(path), "--overwrite"] + (["--posterior-mean", mode] if mode else [])
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert ("posterior means under the survey's population" in out) is applied
    if mode is None and applied:
        assert "100% of the stars have S/N < 20" in out
    meta = latents_metadata(next((path / "latents").glob("*.parquet")))
    assert ("posterior_mean" in meta) is applied


def test_auto_says_why_a_small_faint_survey_keeps_each_stars_fit(tmp_path, capsys):
    from chemlatent.encode.posterior_mean import MIN_STARS
    from chemlatent.synth.generator import generate_survey

    path = generate_survey(tmp_path / "few", MIN_STARS - 1, seed=3, progress=False).path
    cat = pd.read_parquet(path / "catalog.parquet")
    cat["snr"] = np.float32(10.0)
    cat.to_parquet(path / "catalog.parquet")
    assert main(["encode", str(path)]) == 0
    out = capsys.readouterr().out
    assert "posterior means under" not in out
    assert f"{MIN_STARS - 1} stars are too few to learn the survey's population" in out
    assert "posterior_mean" not in latents_metadata(next((path / "latents").glob("*.parquet")))


def test_a_re_encoding_follows_the_survey_s_posterior_means(encoded_tiny, tmp_path, capsys):
    path = tmp_path / "tiny"
    shutil.copytree(encoded_tiny, path)
    assert main(["encode", str(path), "--overwrite", "--posterior-mean"]) == 0
    base = pd.read_parquet(next((path / "latents").glob("*.parquet"))).set_index("star_id")
    ids = base.index.to_numpy()[::25]
    (tmp_path / "ids.txt").write_text("\n".join(map(str, ids)))
    capsys.readouterr()
    assert main(["encode", str(path), "--ids", str(tmp_path / "ids.txt")]) == 0
    assert "posterior means on the prior of the survey's own latents" in capsys.readouterr().out
    run = pd.read_parquet(next((path / "latents" / "runs").glob("*.parquet"))).set_index("star_id")
    for c in ("z_fe", "z_c", "z_alpha", "z_c_std"):
        assert np.allclose(run.loc[ids, c], base.loc[ids, c], atol=1e-4), c


def test_predicted_noise_follows_the_jacobian(encoded_tiny, monkeypatch):
    from chemlatent.encode import posterior_mean as pmod
    from chemlatent.model.modelio import load_model

    survey = Survey(encoded_tiny)
    latents = pd.read_parquet(next((encoded_tiny / "latents").glob("*.parquet")))
    model = load_model(None)
    exact = pmod.survey_noise(model, survey, latents["star_id"].to_numpy())
    monkeypatch.setattr(pmod, "NOISE_SAMPLE", 400)  # 1,200 stars: a sample, and the rest regressed
    predicted = pmod.predicted_noise(model, survey, latents)
    err = np.abs(predicted / exact - 1)
    assert np.median(err) < 0.1
    assert np.allclose(np.sort(err.ravel())[: 3 * 400], 0.0, atol=1e-9)  # the sample is exact


def test_posterior_means_are_named_on_the_page_and_in_exports(encoded_tiny, tmp_path):
    from chemlatent.explore.state import SurveyData
    from chemlatent.io.latents import latents_reading

    path = tmp_path / "tiny"
    shutil.copytree(encoded_tiny, path)
    assert SurveyData(path, load_model=False).latents_reading == ""
    assert main(["encode", str(path), "--overwrite", "--posterior-mean"]) == 0
    data = SurveyData(path, load_model=False)
    assert data.latents_reading == "posterior means under the survey's population"
    assert main(["flag", str(path), "--preset", "cemp", "--out", str(tmp_path / "c.csv")]) == 0
    assert f"# latents: {data.latents_reading}" in (tmp_path / "c.csv").read_text()
    assert latents_reading({"at_labels": {}, "posterior_mean": {}}).count(";") == 1


def test_evaluate_encodes_a_faint_survey_as_encode_does(tiny_survey, tmp_path):
    """`evaluate` on a survey without latents encodes it through encode's own step."""
    from chemlatent.encode.whole import encode_whole
    from chemlatent.model.modelio import load_model
    from chemlatent.model.survey_evaluation import evaluate_survey

    paths = []
    for name in ("a", "b"):
        path = tmp_path / name
        shutil.copytree(tiny_survey.path, path, ignore=shutil.ignore_patterns("latents", "annotations*"))
        cat = pd.read_parquet(path / "catalog.parquet")
        cat["snr"] = np.float32(12.0)
        cat.to_parquet(path / "catalog.parquet")
        paths.append(path)
    evaluate_survey(paths[0], None, plots=str(tmp_path / "plots"))
    res = encode_whole(Survey(paths[1]), load_model(None))
    assert res.prior is not None and "100% of the stars" in res.why
    a = pd.read_parquet(next((paths[0] / "latents").glob("*.parquet")))
    b = pd.read_parquet(res.path)
    assert "posterior_mean" in latents_metadata(next((paths[0] / "latents").glob("*.parquet")))
    assert np.array_equal(a[["z_fe", "z_c", "z_alpha"]].to_numpy(), b[["z_fe", "z_c", "z_alpha"]].to_numpy())


def test_auto_keeps_each_stars_fit_for_a_model_that_is_not_chemlatents(tiny_survey, tmp_path):
    from chemlatent.encode.posterior_mean import posterior_mean_choice
    from chemlatent.model.modelio import load_model

    survey = Survey(faint_copy(tiny_survey.path, tmp_path / "faint"))
    use, why = posterior_mean_choice("auto", survey, torch.nn.Linear(3, 3))
    assert not use and "posterior means need a chemlatent model" in why
    assert why.startswith("100% of the stars")
    use, why = posterior_mean_choice("auto", survey, load_model(None))
    assert use and "--posterior-mean off keeps each star's own fit" in why
    with pytest.raises(ChemlatentError, match="--posterior-mean takes one of auto, on, off"):
        posterior_mean_choice("yes", survey, load_model(None))
