"""Scientific evaluation of a model on a survey with truth labels (never its training set).

- Pearson r of each chemical axis with its true abundance ratio.
- Leakage: R^2 of a non-linear regressor predicting Teff (logg) from z, minus the R^2 of the
  same regressor predicting it from the three true abundances, so that correlations the
  population itself has (halo giants are metal-poor, ...) do not count as leakage.
- CEMP and alpha-poor metal-poor flags with the reference paper's definitions, from the
  model's calibrated latent cuts.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from chemlatent.errors import ChemlatentError
from chemlatent.flags.engine import RuleEngine
from chemlatent.flags.presets import preset
from chemlatent.flags.statistics import precision_recall, truth_mask
from chemlatent.model.calibration import Calibration, fit_calibration

TRUTH = {"fe": "fe_h", "c": "c_fe", "alpha": "alpha_fe"}


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 3:
        return float("nan")
    return float(np.corrcoef(x[ok], y[ok])[0, 1])


def _r2_cv(x: np.ndarray, y: np.ndarray, seed: int = 0) -> float:
    """Held-out R^2 of a gradient-boosted regressor (2-fold cross-validation).

    The regressor runs single-threaded: its trees are small, so its many short OpenMP regions
    cost more in hand-offs than they gain, and after an encode in the same process (whose
    torch threads idle in another OpenMP runtime) each hand-off sleeps (3,000 stars: 4.6 s on
    two threads, 0.3 s on one). The result does not depend on the thread count."""
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.model_selection import cross_val_score
    from threadpoolctl import threadpool_limits

    reg = HistGradientBoostingRegressor(max_iter=100, learning_rate=0.15, random_state=seed)
    with threadpool_limits(1, user_api="openmp"):
        return float(np.mean(cross_val_score(reg, x, y, cv=2, scoring="r2")))


def leakage(z: np.ndarray, truth: np.ndarray, target: np.ndarray, max_stars: int = 30_000,
            seed: int = 0) -> dict:
    """Excess R^2 of ``target`` from z over the R^2 from the true abundances."""
    ok = np.isfinite(z).all(1) & np.isfinite(truth).all(1) & np.isfinite(target)
    idx = np.nonzero(ok)[0]
    if idx.size > max_stars:
        idx = np.random.default_rng(seed).choice(idx, max_stars, replace=False)
    r2_z = _r2_cv(z[idx], target[idx], seed)
    r2_t = _r2_cv(truth[idx], target[idx], seed)
    return {"excess": r2_z - r2_t, "r2_from_z": r2_z, "r2_from_abundances": r2_t}


def evaluate(latents: pd.DataFrame, catalog: pd.DataFrame, calibration: Calibration | None,
             *, calibrate_fraction: float = 0.5, seed: int = 0,
             calibration_method: str = "regression") -> dict:
    """Metrics dict (see module docstring). Latents and catalog are matched on star_id.

    Without a calibration, one is fitted on a random ``calibrate_fraction`` of the stars and
    the flags are scored on the rest (so no star is both calibrated on and scored), with
    ``calibration_method`` (chemlatent.model.calibration: "regression" or "classical").
    """
    missing = [c for c in ("fe_h", "c_fe", "alpha_fe", "teff", "logg") if c not in catalog.columns]
    if missing:
        raise ChemlatentError(f"evaluation needs truth labels; the catalog lacks {', '.join(missing)}")
    df = latents.merge(catalog, on="star_id", how="inner", suffixes=("", "_cat"))
    if len(df) < 100:
        raise ChemlatentError(f"only {len(df)} stars have both latents and truth: too few to evaluate")
    z = df[["z_fe", "z_c", "z_alpha"]].to_numpy(np.float64)
    truth = df[["fe_h", "c_fe", "alpha_fe"]].to_numpy(np.float64)
    out: dict = {"n_stars": int(len(df))}
    out["pearson_r"] = {TRUTH[a]: pearson(z[:, i], truth[:, i]) for i, a in enumerate(TRUTH)}
    leaks = {t: leakage(z, truth, df[t].to_numpy(np.float64), seed=seed) for t in ("teff", "logg")}
    out["leakage_r2"] = {t: v["excess"] for t, v in leaks.items()}
    out["leakage_detail"] = leaks
    score_rows = np.ones(len(df), bool)
    if calibration is None:
        rng = np.random.default_rng(seed)
        cal_rows = rng.random(len(df)) < calibrate_fraction
        calibration = fit_calibration(df.loc[cal_rows, ["star_id", "z_fe", "z_c", "z_alpha",
                                                        "teff_pred", "logg_pred"]],
                                      df.loc[cal_rows], source="half of the evaluated survey",
                                      gauge=True, method=calibration_method)
        score_rows = ~cal_rows
        out["calibration"] = (f"fitted ({calibration_method}) on a random half of this survey; "
                              "flags scored on the other half")
    else:
        out["calibration"] = "the model's calibration.json"
    out["calibration_scatter_dex"] = {TRUTH[a]: calibration.axes[a].scatter
                                      for a in TRUTH if calibration.has(a)}
    eng = RuleEngine.from_latents(df, calibration=calibration)
    flags = {}
    for name in ("cemp", "apmp"):
        rule = preset(name, calibration=calibration)
        flagged = eng.mask(rule)
        tr, known = truth_mask(rule, df)
        sel = score_rows & known
        pr = precision_recall(flagged[sel], tr[sel])
        flags[name] = {"precision": pr["precision"], "recall": pr["recall"], "f1": pr["f1"],
                       "n_flagged": int(flagged[sel].sum()), "n_true": pr["n_true"]}
    out["flags"] = flags
    zc = calibration.corrected_latents(df)[["z_fe", "z_c", "z_alpha"]].to_numpy(np.float64)
    dex = {a: np.asarray(calibration.to_dex(a, zc[:, i])) for i, a in enumerate(TRUTH) if calibration.has(a)}
    out["dex_scatter"] = {TRUTH[a]: float(np.nanstd(dex[a] - truth[:, i]))
                          for i, a in enumerate(TRUTH) if a in dex}
    # r of the calibrated dex values (a negative slope flips the corrected latent, not the dex)
    out["pearson_r_calibrated"] = {TRUTH[a]: pearson(dex.get(a, zc[:, i]), truth[:, i])
                                   for i, a in enumerate(TRUTH)}
    return out


def plot_evaluation(latents: pd.DataFrame, catalog: pd.DataFrame, calibration: Calibration | None,
                    out_dir: Path) -> list[Path]:
    """Latent-vs-abundance and flagged-population figures like the reference paper's."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    df = latents.merge(catalog, on="star_id", how="inner", suffixes=("", "_cat"))
    paths = []
    fig, ax = plt.subplots(1, 3, figsize=(15, 4.4))
    for i, (a, t) in enumerate(TRUTH.items()):
        ax[i].hexbin(df[t], df[f"z_{a}"], gridsize=70, bins="log", mincnt=1, cmap="viridis")
        ax[i].set_xlabel(f"true {t}")
        ax[i].set_ylabel(f"z_{a}")
        ax[i].set_title(f"r = {pearson(df[f'z_{a}'].to_numpy(), df[t].to_numpy()):.3f}")
    fig.tight_layout()
    p = out_dir / "latent_vs_abundance.png"
    fig.savefig(p, dpi=90)
    plt.close(fig)
    paths.append(p)
    if calibration is not None:
        eng = RuleEngine.from_latents(df, calibration=calibration)
        fig, ax = plt.subplots(1, 2, figsize=(12, 4.6))
        for k, (name, ycol) in enumerate((("cemp", "c_fe"), ("apmp", "alpha_fe"))):
            rule = preset(name, calibration=calibration)
            flagged = eng.mask(rule)
            ax[k].scatter(df["fe_h"], df[ycol], s=1, c="0.75", rasterized=True, label="all")
            ax[k].scatter(df.loc[flagged, "fe_h"], df.loc[flagged, ycol], s=2, c="crimson",
                          rasterized=True, label=f"flagged {name} ({int(flagged.sum())})")
            ax[k].axvline(-1, color="k", lw=0.8)
            ax[k].axhline(0.7 if name == "cemp" else 0.0, color="k", lw=0.8)
            ax[k].set_xlabel("true [Fe/H]")
            ax[k].set_ylabel(f"true {ycol}")
            ax[k].legend(markerscale=5, loc="upper right")
        fig.tight_layout()
        p = out_dir / "flagged_populations.png"
        fig.savefig(p, dpi=90)
        plt.close(fig)
        paths.append(p)
    return paths
