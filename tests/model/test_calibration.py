"""Latent -> dex calibration: robust fit, file format, inverse map, errors."""

from __future__ import annotations

import json
from datetime import datetime

import numpy as np
import pandas as pd
import pytest

from chemlatent.errors import ChemlatentError
from chemlatent.model.calibration import (
    CALIBRATION_JSON,
    AxisCalibration,
    Calibration,
    fit_calibration,
    load_calibration,
    robust_line,
)
from chemlatent.synth.latents import simulate_tables


def test_robust_line_ignores_outliers():
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, 5000)
    y = 0.2 + 0.5 * x + rng.normal(0, 0.05, x.size)
    bad = rng.random(x.size) < 0.08
    y[bad] += rng.uniform(1, 3, bad.sum())  # one-sided gross outliers bias plain least squares
    slope, intercept, scatter, n = robust_line(x, y)
    assert slope == pytest.approx(0.5, abs=0.01)
    assert intercept == pytest.approx(0.2, abs=0.01)
    assert scatter == pytest.approx(0.05, rel=0.1)
    assert n < x.size - 0.9 * bad.sum()
    ols = np.polyfit(x, y, 1)
    assert abs(ols[1] - 0.2) > 0.1  # what the clipping saves us from


def test_fit_from_truth_recovers_simulated_map():
    lat, cat = simulate_tables(20_000, seed=1)
    cal = fit_calibration(lat, cat)
    assert set(cal.axes) == {"fe", "c", "alpha"}
    fe = cal.axes["fe"]
    assert fe.target == "fe_h"
    assert fe.slope == pytest.approx(0.73, rel=0.1)
    assert 0.05 < fe.scatter < 0.2
    assert fe.n > 15_000
    datetime.strptime(fe.fitted, "%Y-%m-%dT%H:%M:%SZ")
    assert "fe_h" in fe.source
    # calibrated values follow the truth
    dex = cal.dex_columns(lat)
    r = np.corrcoef(dex["fe_h_cal"], cat["fe_h"])[0, 1]
    assert r > 0.95
    assert "fe_h_cal_err" in dex and np.all(dex["fe_h_cal_err"] > 0)


def test_external_columns_and_partial_axes():
    lat, cat = simulate_tables(3000, seed=2)
    ext = cat[["star_id"]].copy()
    ext["feh_ref"] = cat["fe_h"] + 0.1
    ext.loc[::2, "feh_ref"] = np.nan  # only half the stars have a reference value
    cal = fit_calibration(lat, ext, {"fe": "feh_ref", "c": "cfe_ref"}, source="APOGEE DR17")
    assert set(cal.axes) == {"fe"}  # c column absent: skipped
    assert cal.axes["fe"].target == "feh_ref"
    assert cal.axes["fe"].intercept == pytest.approx(-0.75 + 0.1, abs=0.05)
    assert "APOGEE" in cal.axes["fe"].source
    with pytest.raises(ChemlatentError, match="no calibration|has no"):
        cal.axis("c")


def test_save_load_roundtrip_and_format(tmp_path):
    lat, cat = simulate_tables(2000, seed=3)
    cal = fit_calibration(lat, cat)
    path = cal.save(tmp_path)
    assert path == tmp_path / CALIBRATION_JSON
    raw = json.loads(path.read_text())
    assert set(raw) == {"axes"}
    assert raw["axes"]["c"]["target"] == "c_fe"
    assert set(raw["axes"]["alpha"]) >= {"target", "slope", "intercept", "scatter", "n",
                                         "source", "fitted"}
    back = load_calibration(tmp_path)
    assert back == cal
    assert not list(tmp_path.glob(".*tmp*"))  # atomic write left nothing behind


def test_inverse_map_and_negative_slope():
    ax = AxisCalibration("c_fe", -0.4, 0.3, 0.1, 10)
    z = np.linspace(-3, 3, 7)
    np.testing.assert_allclose(ax.to_latent(ax.to_dex(z)), z)
    assert ax.to_latent(0.7) == pytest.approx((0.7 - 0.3) / -0.4)
    with pytest.raises(ChemlatentError):
        AxisCalibration("fe_h", 0.0, 0.0, 0.1, 1).to_latent(0.0)


def test_missing_or_bad_calibration(tmp_path):
    assert load_calibration(tmp_path) is None
    assert load_calibration(None) is None
    (tmp_path / CALIBRATION_JSON).write_text("{not json")
    with pytest.raises(ChemlatentError, match="not valid JSON"):
        load_calibration(tmp_path)
    (tmp_path / CALIBRATION_JSON).write_text('{"axes": {"fe": {"slope": 1}}}')
    with pytest.raises(ChemlatentError, match="malformed"):
        load_calibration(tmp_path)
    with pytest.raises(ChemlatentError, match="malformed"):
        Calibration.from_dict({"axes": {"zz": {"target": "x", "slope": 1, "intercept": 0}}})


def test_fit_errors():
    lat, cat = simulate_tables(100, seed=4)
    with pytest.raises(ChemlatentError, match="reference columns"):
        fit_calibration(lat, cat[["star_id", "snr"]])
    few = cat[["star_id", "fe_h"]].copy()
    few.loc[2:, "fe_h"] = np.nan
    with pytest.raises(ChemlatentError, match="3 or more"):
        fit_calibration(lat, few)
    with pytest.raises(ChemlatentError, match="unknown axis"):
        fit_calibration(lat, cat, {"mg": "mg_fe"})
    with pytest.raises(ChemlatentError, match="star_id"):
        fit_calibration(lat.drop(columns="star_id"), cat)
    const = pd.DataFrame({"star_id": lat["star_id"], "z_fe": 1.0, "z_c": 0.0, "z_alpha": 0.0})
    with pytest.raises(ChemlatentError, match="constant"):
        fit_calibration(const, cat, {"fe": "fe_h"})


def test_calibrated_r_is_that_of_the_dex_values_whatever_the_slopes_sign():
    from chemlatent.model.calibration import AxisCalibration, Calibration
    from chemlatent.model.evaluation import evaluate
    from chemlatent.synth.latents import SIM_CALIBRATION, simulate_tables

    lat, cat = simulate_tables(3000, seed=5)
    flipped = lat.assign(z_alpha=-lat["z_alpha"])  # an axis whose latent falls as alpha rises
    cal = Calibration({**SIM_CALIBRATION.axes,
                       "alpha": AxisCalibration("alpha_fe", -0.15, 0.15, 0.05, 0, "simulation")})
    same = evaluate(lat, cat, SIM_CALIBRATION)["pearson_r_calibrated"]["alpha_fe"]
    out = evaluate(flipped, cat, cal)
    assert out["pearson_r_calibrated"]["alpha_fe"] > 0.5
    assert abs(out["pearson_r_calibrated"]["alpha_fe"] - same) < 1e-9
    assert out["pearson_r"]["alpha_fe"] < -0.5  # the raw latent's r keeps its sign


def test_calibration_keeps_the_chemically_peculiar_tail():
    from chemlatent.model.calibration import robust_line

    rng = np.random.default_rng(3)
    n = 20_000
    y = rng.normal(0.0, 0.1, n)  # normal stars' [C/Fe]
    tail = rng.random(n) < 0.03
    y[tail] = rng.uniform(0.8, 2.5, tail.sum())  # CEMP stars
    z = y + rng.normal(0, 0.15, n)  # a latent that follows every star, noisier than the normal spread
    y[:100] += rng.uniform(2.0, 4.0, 100)  # and a few bad cross-matches
    slope, intercept, _, n_used = robust_line(z, y)
    found = np.mean(intercept + slope * z[tail] > 0.7)
    assert found > 0.8 and n_used < n - 80  # the tail kept, the bad references clipped
    s3, i3, _, _ = robust_line(z, y, clip=3.0)  # iterated 3-sigma clipping loses the tail
    assert np.mean(i3 + s3 * z[tail] > 0.7) < 0.3


def test_classical_calibration_keeps_the_tails_dex_values():
    from chemlatent.model.calibration import classical_fit

    rng = np.random.default_rng(4)
    n = 20_000
    y = rng.normal(0.0, 0.1, n)
    tail = rng.random(n) < 0.03
    y[tail] = rng.uniform(0.8, 2.5, tail.sum())
    z = 0.4 + 2.0 * y + rng.normal(0, 0.3, n)  # latent units: 2 per dex, offset 0.4
    slope, intercept, c, scatter, used = classical_fit(z, y)
    assert slope == pytest.approx(0.5, rel=0.03) and intercept == pytest.approx(-0.2, abs=0.02)
    assert c.size == 0 and used > 0.99 * n
    dex = intercept + slope * z
    assert abs(float(np.mean(dex[tail] - y[tail]))) < 0.03  # unbiased in the tail
    s_r, i_r, _, _ = robust_line(z, y)  # the regression pulls the tail toward the mean
    assert float(np.mean(i_r + s_r * z[tail] - y[tail])) < -0.05
    # with a Teff/logg zero point, on the simulated survey: same storage form, sensible map
    lat, cat = simulate_tables(20_000, seed=2)
    cal = fit_calibration(lat, cat, gauge=True, method="classical")
    assert all(cal.axes[a].method == "classical" for a in ("fe", "c", "alpha"))
    assert len(cal.axes["fe"].gauge) == 5 and len(cal.axes["c"].gauge) == 7
    got = cal.dex_columns(lat)["c_fe_cal"].to_numpy()
    cemp = cat["c_fe"].to_numpy() > 0.7
    assert abs(float(np.mean(got[cemp] - cat["c_fe"].to_numpy()[cemp]))) < 0.1
    again = type(cal).from_dict(cal.to_dict())
    assert again.axes["c"].method == "classical"
    from chemlatent.flags.pipeline import calibration_text

    assert calibration_text(cal).count("classical") == 3  # exports record which estimator
    assert "classical" not in calibration_text(fit_calibration(lat, cat))
    with pytest.raises(ChemlatentError, match="unknown calibration method"):
        fit_calibration(lat, cat, method="best")
