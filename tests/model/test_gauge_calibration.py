"""The calibration's optional Teff/logg zero point."""

from __future__ import annotations

import numpy as np
import pandas as pd

from chemlatent.flags.engine import RuleEngine
from chemlatent.flags.presets import preset
from chemlatent.model.calibration import Calibration, fit_calibration


def _population(n=20_000, seed=0):
    rng = np.random.default_rng(seed)
    teff = rng.uniform(4000, 6800, n)
    logg = rng.uniform(1, 4.8, n)
    fe = -1.0 + 0.6 * (teff - 5400) / 1000 - 0.2 * (logg - 3) + 0.6 * rng.standard_normal(n)
    cfe = np.where(rng.random(n) < 0.1, 1.5, 0.0) + 0.1 * rng.standard_normal(n)
    afe = 0.2 + 0.1 * rng.standard_normal(n)
    # a latent that lost the population's Teff/logg trend of [Fe/H] (independence gauge)
    gauge = 0.6 * (teff - 5400) / 1000 - 0.2 * (logg - 3) + 0.1 * ((teff - 5400) / 1000) ** 2
    lat = pd.DataFrame({
        "star_id": np.arange(n), "z_fe": 2.0 * (fe - gauge) + 0.05 * rng.standard_normal(n),
        "z_c": 1.5 * cfe + 0.05 * rng.standard_normal(n), "z_alpha": 3 * afe,
        "teff_pred": teff + 30 * rng.standard_normal(n), "logg_pred": logg + 0.05 * rng.standard_normal(n),
    })
    cat = pd.DataFrame({"star_id": np.arange(n), "fe_h": fe, "c_fe": cfe, "alpha_fe": afe})
    return lat, cat


def test_zero_point_recovers_the_population_trend():
    lat, cat = _population()
    plain = fit_calibration(lat, cat)
    gauged = fit_calibration(lat, cat, gauge=True)
    assert gauged.has_gauge and not plain.has_gauge
    fe_plain = plain.to_dex("fe", lat["z_fe"].to_numpy())
    fe_gauged = gauged.to_dex("fe", gauged.corrected_latents(lat)["z_fe"].to_numpy())
    err_plain = np.std(fe_plain - cat["fe_h"])
    err_gauged = np.std(fe_gauged - cat["fe_h"])
    assert err_gauged < 0.06 < err_plain
    again = Calibration.from_dict(gauged.to_dict())
    np.testing.assert_allclose(again.corrected_latents(lat)["z_fe"], gauged.corrected_latents(lat)["z_fe"])
    cols = gauged.dex_columns(lat)
    assert np.std(cols["fe_h_cal"] - cat["fe_h"]) < 0.06


def test_rules_use_the_corrected_axes():
    lat, cat = _population(seed=1)
    cal = fit_calibration(lat, cat, gauge=True)
    eng = RuleEngine.from_latents(lat, calibration=cal)
    flagged = eng.mask(preset("cemp", calibration=cal))
    truth = (cat["fe_h"] < -1) & (cat["c_fe"] > 0.7)
    tp = (flagged & truth).sum()
    assert tp / flagged.sum() > 0.9 and tp / truth.sum() > 0.85
