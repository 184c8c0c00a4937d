"""Label-free checks that a trained model's chemical axes look identified.

Without abundance labels nobody can say whether z_alpha tracks [alpha/Fe], but some
failures show in the latents alone: an axis that collapsed to its prior (its posterior
means barely spread compared with the posterior widths), two axes carrying the same signal
(strongly correlated means), an axis that is mostly a function of Teff and logg, or axes
that together predict Teff or logg better than a survey's chemistry usually does (a leak of
the labels into the axes, or a survey whose abundances run with Teff/logg: only the user can
tell which). ``train`` runs these on its validation stars, prints a warning for each and
stores them with the model.
"""

from __future__ import annotations

import numpy as np

AXES = ("z_fe", "z_c", "z_alpha")
COLLAPSE_RATIO = 0.25  # spread of the means / typical posterior width below this: collapsed
SAME_SIGNAL_R = 0.9  # |Pearson r| between two axes' means above this: the same signal
TEFF_LOGG_R2 = 0.7  # share of an axis's variance a quadratic in Teff/logg explains above this
# held-out R^2 of Teff or logg from a quadratic in the three axes together above this: the axes
# may leak them. On 3,000 stars of their surveys, models with an evaluated excess leakage
# <= 0.05 read 0.04-0.07, the stand-in si3's two (excess 0.11-0.16) 0.07-0.11 and 0.20 with
# a stronger adversary (logg excess 0.24); the true
# abundances of our surveys give 0.03-0.08 (docs/model.md, "Label-free identifiability warnings")
LABELS_FROM_AXES_R2 = 0.2
MIN_STARS_JOINT = 200  # fewer validation stars: no joint check (its R^2 would be noise)


def _r(a: np.ndarray, b: np.ndarray) -> float:
    if a.std() == 0 or b.std() == 0:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


def _quadratic_features(x: np.ndarray) -> np.ndarray:
    """1, the standardised columns of ``x`` and every product of two of them (squares too)."""
    xs = (x - x.mean(0)) / (x.std(0) + 1e-12)
    cols = [np.ones(len(xs))] + [xs[:, i] for i in range(xs.shape[1])]
    cols += [xs[:, i] * xs[:, j] for i in range(xs.shape[1]) for j in range(i, xs.shape[1])]
    return np.column_stack(cols)


def _heldout_quadratic_r2(x: np.ndarray, y: np.ndarray) -> float:
    """R^2 of ``y`` from a quadratic in the columns of ``x``, fitted on every other star and
    scored on the rest (both ways, averaged): stable on the few thousand validation stars."""
    feats = _quadratic_features(x)
    half = np.arange(len(y)) % 2 == 0
    scores = []
    for fit in (half, ~half):
        coef, *_ = np.linalg.lstsq(feats[fit], y[fit], rcond=None)
        res = y[~fit] - feats[~fit] @ coef
        scores.append(1.0 - res.var() / max(y[~fit].var(), 1e-12))
    return float(np.mean(scores))


def _r2_teff_logg(y: np.ndarray, teff: np.ndarray, logg: np.ndarray) -> float:
    """R^2 of a quadratic least-squares fit of y on standardised (Teff, logg)."""
    x = _quadratic_features(np.column_stack([teff, logg]))
    coef, *_ = np.linalg.lstsq(x, y, rcond=None)
    res = y - x @ coef
    return float(1.0 - res.var() / max(y.var(), 1e-12))


def axis_diagnostics(mu: np.ndarray, std: np.ndarray, teff: np.ndarray | None = None,
                     logg: np.ndarray | None = None) -> dict:
    """Per-axis spread, pairwise correlations, Teff/logg dependence and the warnings they
    raise. ``mu``, ``std``: (n, 3) posterior means and widths; ``teff``/``logg`` optional."""
    mu = np.asarray(mu, np.float64)
    std = np.asarray(std, np.float64)
    ok = np.isfinite(mu).all(1) & np.isfinite(std).all(1)
    have = ok if teff is None or logg is None else ok & np.isfinite(teff) & np.isfinite(logg)
    out: dict = {"n": int(ok.sum()), "axes": {}, "pairs": {}, "warnings": []}
    for k, name in enumerate(AXES):
        spread = float(mu[ok, k].std()) if ok.any() else 0.0
        width = float(np.median(std[ok, k])) if ok.any() else 0.0
        ratio = spread / width if width > 0 else float("inf")
        entry = {"spread": round(spread, 4), "posterior_width": round(width, 4), "ratio": round(ratio, 3)}
        if teff is not None and logg is not None and have.sum() > 10:
            entry["teff_logg_r2"] = round(_r2_teff_logg(mu[have, k], teff[have], logg[have]), 3)
            if entry["teff_logg_r2"] > TEFF_LOGG_R2:
                out["warnings"].append(
                    f"{name} is mostly a function of Teff and logg (R^2 = {entry['teff_logg_r2']:.2f}); "
                    "it may carry little chemistry")
        if ratio < COLLAPSE_RATIO:
            out["warnings"].append(
                f"{name} looks collapsed to its prior: its means spread {spread:.3g}, "
                f"{ratio:.2f} of a posterior width")
        out["axes"][name] = entry
    if teff is not None and logg is not None and have.sum() >= MIN_STARS_JOINT:
        out["labels_from_axes_r2"] = {}
        for label, values in (("Teff", teff), ("logg", logg)):
            r2 = round(_heldout_quadratic_r2(mu[have], np.asarray(values, np.float64)[have]), 3)
            out["labels_from_axes_r2"][label.lower()] = r2
            if r2 > LABELS_FROM_AXES_R2:
                out["warnings"].append(
                    f"the three axes together predict {label} (held-out R^2 = {r2:.2f}, above "
                    f"{LABELS_FROM_AXES_R2:g}): unless the survey's abundances run with {label}, the axes "
                    f"leak it; compare stars within narrow Teff/logg ranges")
    for i in range(3):
        for j in range(i + 1, 3):
            r = _r(mu[ok, i], mu[ok, j]) if ok.sum() > 2 else 0.0
            out["pairs"][f"{AXES[i]}~{AXES[j]}"] = round(r, 3)
            if abs(r) > SAME_SIGNAL_R:
                out["warnings"].append(
                    f"{AXES[i]} and {AXES[j]} carry the same signal (r = {r:+.2f}); "
                    "one of them is not identified")
    return out
