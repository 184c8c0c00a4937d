"""Label-free warnings about unidentified latent axes."""

from __future__ import annotations

import json

import numpy as np

from chemlatent.model.identifiability import axis_diagnostics
from chemlatent.model.training import TrainOptions, train


def test_healthy_axes_raise_no_warning():
    rng = np.random.default_rng(0)
    mu = rng.normal(size=(2000, 3))
    d = axis_diagnostics(mu, np.full_like(mu, 0.3), rng.normal(5000, 600, 2000), rng.uniform(1, 5, 2000))
    assert d["warnings"] == [] and d["n"] == 2000


def test_collapsed_duplicated_and_teff_driven_axes_are_named():
    rng = np.random.default_rng(1)
    n = 3000
    teff, logg = rng.normal(5000, 600, n), rng.uniform(1, 5, n)
    fe = rng.normal(size=n)
    mu = np.column_stack([fe, fe + 0.1 * rng.normal(size=n), 0.02 * rng.normal(size=n)])
    d = axis_diagnostics(mu, np.full_like(mu, 0.5), teff, logg)
    text = " ".join(d["warnings"])
    assert "z_alpha looks collapsed" in text
    assert "z_fe and z_c carry the same signal" in text
    mu2 = np.column_stack([(teff - 5000) / 600 + 0.1 * rng.normal(size=n), rng.normal(size=(n, 2))])
    d2 = axis_diagnostics(mu2, np.full_like(mu2, 0.2), teff, logg)
    assert any(w.startswith("z_fe is mostly a function of Teff and logg") for w in d2["warnings"])
    assert any(w.startswith("the three axes together predict Teff") for w in d2["warnings"])
    assert len(d2["warnings"]) == 2 and d2["labels_from_axes_r2"]["logg"] < 0.05


def test_a_leak_shared_across_the_axes_is_named_though_no_axis_shows_it():
    rng = np.random.default_rng(2)
    n = 3000
    teff, logg = rng.normal(5000, 600, n), rng.uniform(1, 5, n)
    t = (teff - 5000) / 600
    # each axis: a small share of Teff (R^2 ~0.1 alone) on its own chemistry
    chem = rng.normal(size=(n, 3))
    leaky = chem + 0.35 * t[:, None]
    d = axis_diagnostics(leaky, np.full_like(leaky, 0.2), teff, logg)
    assert all(d["axes"][a]["teff_logg_r2"] < 0.2 for a in ("z_fe", "z_c", "z_alpha"))
    assert d["labels_from_axes_r2"]["teff"] > 0.2
    assert [w for w in d["warnings"] if "together predict" in w] == [
        w for w in d["warnings"] if w.startswith("the three axes together predict Teff")] != []
    clean = axis_diagnostics(chem, np.full_like(chem, 0.2), teff, logg)
    assert clean["warnings"] == [] and clean["labels_from_axes_r2"]["teff"] < 0.05


def test_training_stores_and_prints_the_diagnostics(tiny_survey, tmp_path):
    lines: list[str] = []
    opts = TrainOptions(epochs=1, hidden=(16, 16, 8), max_stars=600, batch_size=128, device="cpu")
    train(tiny_survey.path, tmp_path / "m", opts, progress=False, log=lines.append)
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    diag = cfg["training"]["diagnostics"]
    assert set(diag["axes"]) == {"z_fe", "z_c", "z_alpha"} and diag["n"] > 0
    assert [f"warning: {w}" for w in diag["warnings"]] == [x for x in lines if x.startswith("warning:")]


def test_anchored_training_pins_the_axes_to_reference_abundances(tiny_survey, tmp_path, capsys):
    from chemlatent.app.cli import main

    out = tmp_path / "anch"
    argv = ["train", str(tiny_survey.path), "--out", str(out), "--epochs", "2", "--hidden", "16,16,8",
            "--max-stars", "600", "--batch-size", "128", "--device", "cpu", "--anchors", "200",
            "--refine-encoder", "0"]  # anchors act in the first pass; the refit is tested elsewhere
    assert main(argv) == 0
    assert "anchored training: 200 stars" in capsys.readouterr().out
    cfg = json.loads((out / "config.json").read_text())
    assert len(cfg["anchor_mean"]) == 3 and cfg["anchor_scale"] > 0
    hist = cfg["training"]["history"]
    assert hist[-1]["anchor_mse"] < hist[0]["anchor_mse"]
    assert cfg["training"]["options"]["anchor_stars"] == 200
    assert cfg["orientation"] == [1.0, 1.0, 1.0]  # the references fix the sign: never flipped


def test_anchor_columns_pin_only_the_chosen_axes(tiny_survey, tmp_path, capsys):
    from chemlatent.app.cli import main

    out = tmp_path / "anch_fe"
    argv = ["train", str(tiny_survey.path), "--out", str(out), "--epochs", "1", "--hidden", "16,16,8",
            "--max-stars", "600", "--batch-size", "128", "--device", "cpu", "--anchors", "200",
            "--anchor-columns", "fe_h", "--refine-encoder", "0"]
    assert main(argv) == 0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["training"]["options"]["anchor_columns"] == ["fe_h"]
    # only [Fe/H] is a reference: the carbon and alpha axes have no anchor offset
    assert cfg["anchor_mean"][0] != 0.0 and cfg["anchor_mean"][1:] == [0.0, 0.0]
