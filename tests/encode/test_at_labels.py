"""Encoding at the survey's own Teff/logg labels (chemlatent.encode.at_labels, encode --at-labels)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from encode_helpers import small_survey

from chemlatent.encode.at_labels import (
    LabelCoupling,
    encode_at_labels,
    measure_coupling,
    move_to_labels,
    per_star_coupling,
)
from chemlatent.encode.streaming import encode_survey
from chemlatent.errors import ChemlatentError
from chemlatent.io.latents import latents_metadata
from chemlatent.io.store import Survey
from chemlatent.model.modelio import load_model


class LinearEncoder(torch.nn.Module):
    """mu = x A, w = x B: the noise coupling of z_fe on w is (A0' S B)(B' S B)^-1 exactly."""

    def __init__(self, a: torch.Tensor, b: torch.Tensor) -> None:
        super().__init__()
        self.a, self.b = torch.nn.Parameter(a), torch.nn.Parameter(b)

    def encode(self, x, ivar):
        return x @ self.a, None, x @ self.b


def test_per_star_coupling_is_the_noise_regression_of_z_fe_on_teff_logg():
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(40, 3, generator=gen), torch.randn(40, 2, generator=gen)
    ivar = torch.rand(2, 40, generator=gen) + 0.5
    ivar[1, :10] = 0.0  # masked pixels carry no noise
    k = per_star_coupling(LinearEncoder(a, b), torch.randn(2, 40, generator=gen), ivar)
    for i in range(2):
        s = torch.where(ivar[i] > 0, 1 / ivar[i].clamp_min(1e-12), torch.zeros(40)).double()
        bb, a0 = b.double(), a[:, 0].double()
        want = torch.linalg.solve(bb.T @ (s[:, None] * bb), bb.T @ (s * a0))
        assert np.allclose(k[i], want.numpy(), rtol=1e-4, atol=1e-6)
    # and it is what repeated noise draws give, by regression
    noise = torch.randn(20000, 40, generator=gen) / ivar[0].sqrt()
    mu, w = noise @ a, noise @ b
    fit = np.linalg.lstsq(w.numpy(), mu[:, 0].numpy(), rcond=None)[0]
    assert np.allclose(k[0], fit, rtol=0.05, atol=0.02)


def test_move_to_labels_shifts_z_fe_by_the_coupling_and_leaves_unlabelled_stars():
    lat = pd.DataFrame({"z_fe": np.float32([1.0, 1.0, 1.0]), "teff_pred": [6000.0, 5000.0, 5500.0],
                        "logg_pred": [4.0, 2.0, 3.0]})
    labels = pd.DataFrame({"teff": [5000.0, 5000.0, np.nan], "logg": [4.0, 3.0, 3.0]})
    z = move_to_labels(lat, labels, LabelCoupling(0.5e-3, -0.2, 100))
    assert z.dtype == np.float32
    assert np.allclose(z, [0.5, 0.8, 1.0])  # 1000 K too hot; 1 dex too low in logg; no Teff label


def test_encode_at_labels_moves_only_z_fe_by_the_measured_coupling(tiny_survey, tmp_path):
    sv = small_survey(tiny_survey, tmp_path / "s", n=300, encode=False)
    model = load_model(None)
    plain = pd.read_parquet(encode_survey(sv, model, out_path=tmp_path / "plain.parquet"))
    path = encode_at_labels(sv, model, out_path=tmp_path / "lab.parquet")
    lab = pd.read_parquet(path)
    k = latents_metadata(path)["at_labels"]
    assert k["n_stars"] == 300 and np.isfinite(k["fe_per_kelvin"]) and k["fe_per_kelvin"] != 0
    cat = sv.catalog
    shift = (k["fe_per_kelvin"] * (plain.teff_pred - cat.teff)
             + k["fe_per_dex_logg"] * (plain.logg_pred - cat.logg))
    assert np.allclose(lab.z_fe, plain.z_fe - shift, atol=1e-4)
    assert (lab.z_fe != plain.z_fe).mean() > 0.9
    for col in ("z_c", "z_alpha", "teff_pred", "logg_pred"):
        assert np.array_equal(lab[col], plain[col])
    again = measure_coupling(model, Survey(sv.path))
    assert again.fe_per_kelvin == pytest.approx(k["fe_per_kelvin"], rel=1e-5)


def test_at_labels_without_labels_is_a_one_line_error(tiny_survey, tmp_path):
    sv = small_survey(tiny_survey, tmp_path / "s", n=100, encode=False)
    sv.catalog.drop(columns=["teff"]).to_parquet(sv.path / "catalog.parquet")
    with pytest.raises(ChemlatentError, match="no teff column"):
        encode_at_labels(Survey(sv.path), load_model(None))
    out = subprocess.run([sys.executable, "-m", "chemlatent.app.cli", "encode", str(sv.path),
                          "--at-labels", "--ids", str(tmp_path / "ids.txt")], capture_output=True, text=True)
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert "does not combine with --ids" in out.stderr


def test_a_teff_head_older_than_the_encoder_refit_is_refused(tiny_survey, tmp_path):
    import json
    import shutil

    from chemlatent.model.modelio import resolve_model_dir

    model_dir = tmp_path / "stale"
    shutil.copytree(resolve_model_dir(None), model_dir)
    cfg = json.loads((model_dir / "config.json").read_text())
    refit = cfg["training"]["encoder_refit"]
    assert "nuisance_rms_after" in refit  # the bundled model's head was refitted
    refit.pop("nuisance_rms_after")
    (model_dir / "config.json").write_text(json.dumps(cfg))
    sv = small_survey(tiny_survey, tmp_path / "s", n=100, encode=False)
    with pytest.raises(ChemlatentError, match="Teff/logg head fitted to its refitted encoder"):
        encode_at_labels(sv, load_model(model_dir))
