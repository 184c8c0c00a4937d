"""Seeded simulated latents with truth labels (tests and the rule benchmark)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from chemlatent.model.calibration import AxisCalibration, Calibration


def simulate_latents(n_stars: int, seed: int = 0, cemp_fraction: float = 0.02
                     ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Seeded simulated survey: (z (n, 3) float32, truth dict fe_h/c_fe/alpha_fe float32).

    A disc/halo mixture in [Fe/H] with alpha enhancement at low metallicity and a planted
    carbon-enhanced metal-poor population; z = (dex - mean) / scale + posterior noise.
    """
    rng = np.random.default_rng(seed)
    n = int(n_stars)
    halo = rng.random(n) < 0.35
    fe = np.where(halo, rng.normal(-1.6, 0.5, n), rng.normal(-0.3, 0.3, n)).astype(np.float32)
    alpha = np.where(fe < -1, 0.3, 0.3 * np.clip(-fe, 0, 1)) + rng.normal(0, 0.08, n)
    alpha[halo & (rng.random(n) < 0.05)] -= 0.4  # alpha-poor metal-poor minority
    c = rng.normal(0.0, 0.2, n)
    cemp = (fe < -1.0) & (rng.random(n) < cemp_fraction / 0.3)
    c[cemp] = rng.uniform(0.8, 2.5, int(cemp.sum()))
    truth = {"fe_h": fe, "c_fe": c.astype(np.float32), "alpha_fe": alpha.astype(np.float32)}
    z = np.empty((n, 3), np.float32)
    # roughly N(0, 1) aggregate, like a trained VAE's posterior means
    z[:, 0] = (fe + 0.75) / 0.73 + rng.normal(0, 0.15, n)
    z[:, 1] = c / 0.2 + rng.normal(0, 0.2, n)
    z[:, 2] = (alpha - 0.15) / 0.15 + rng.normal(0, 0.3, n)
    return z, truth


def simulate_tables(n_stars: int, seed: int = 0, cemp_fraction: float = 0.02
                    ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(latents, catalog) DataFrames in the survey contract from :func:`simulate_latents`."""
    z, truth = simulate_latents(n_stars, seed, cemp_fraction)
    rng = np.random.default_rng(seed + 1)
    n = z.shape[0]
    sid = np.arange(1, n + 1, dtype=np.int64) * 7
    lat = pd.DataFrame({"star_id": sid, "z_fe": z[:, 0], "z_c": z[:, 1], "z_alpha": z[:, 2]})
    for a, s in (("fe", 0.15), ("c", 0.2), ("alpha", 0.3)):
        lat[f"z_{a}_std"] = np.float32(s) * rng.uniform(0.8, 1.2, n).astype(np.float32)
    lat["w_0"] = rng.normal(0, 1, n).astype(np.float32)
    lat["w_1"] = rng.normal(0, 1, n).astype(np.float32)
    lat["teff_pred"] = rng.normal(5000, 600, n).astype(np.float32)
    lat["logg_pred"] = rng.normal(3.0, 1.0, n).astype(np.float32)
    lat["chi2"] = rng.gamma(20, 1 / 20, n).astype(np.float32)
    lat["run"] = "sim-0"
    pop = np.where(truth["c_fe"] > 0.7, "cemp", np.where(truth["fe_h"] < -1, "halo", "disc"))
    cat = pd.DataFrame({"star_id": sid, "snr": rng.uniform(10, 90, n).astype(np.float32),
                        "ra": rng.uniform(0, 360, n), "dec": np.degrees(np.arcsin(rng.uniform(-1, 1, n))),
                        "teff": lat["teff_pred"] + rng.normal(0, 50, n).astype(np.float32),
                        "logg": lat["logg_pred"], **truth, "population": pop})
    return lat, cat


SIM_CALIBRATION = Calibration({
    "fe": AxisCalibration("fe_h", 0.73, -0.75, 0.1, 0, "simulation"),
    "c": AxisCalibration("c_fe", 0.2, 0.0, 0.04, 0, "simulation"),
    "alpha": AxisCalibration("alpha_fe", 0.15, 0.15, 0.05, 0, "simulation"),
})
