"""Linear calibration of the chemical latent axes to abundances in dex.

Per axis, ``dex = intercept + slope * z``: z_fe -> [Fe/H], z_c -> [C/Fe], z_alpha ->
[alpha/Fe] ([C/Fe] and [alpha/Fe] are ratios to iron; each map uses only its own axis).
The fit is robust: least squares iterated with clipping of residuals beyond ``clip`` times
the robust scatter (1.4826 * MAD), on the stars that have the reference column. The clip is
5 sigma (CLIP_SIGMA), not 3: the chemically peculiar stars the flags look for (CEMP stars,
a few per cent) sit 3-5 sigma off the line whenever the normal stars' latent scatter is
wide, and iterated 3-sigma clipping removes them, flattens the slope and so hides the very
tail the calibration is for (docs/model.md, "Refined encoder"); gross outliers (bad
cross-matches) are still clipped.

Two estimators (``method``): "regression" (the default) fits the reference on z, the mean
abundance at a given z, which pulls a noisy axis's tails toward the population mean (high
precision, lower recall for tail flags); "classical" fits z on the reference and inverts it,
unbiased in dex at every abundance (the tails keep their dex values; noise then scatters
normal stars across a threshold: higher recall, lower precision). Both store the same form. The
reference is the synthetic truth in the catalog or an external table already merged into it.

Optional Teff/logg zero point (``gauge``): a self-supervised latent is identifiable only up
to a function of the nuisance parameters (adding g(Teff, logg) to z_fe changes nothing the
decoders can see), and the adversary/KL push it toward independence from Teff/logg, which a
real population does not have (metal-poor giants are warmer...). When reference abundances
exist, the calibration can therefore also fit a smooth quadratic zero point in the model's
predicted Teff and logg: ``dex = intercept + slope * (z + sum_k gauge_k f_k)``. For the
element axes (c, alpha), whose response per dex can change with metallicity, the features
f_k also include z_fe, z_fe^2 and the products z * z_fe, z * z_fe^2 (the map stays
monotonic in z wherever ``slope + ...`` keeps its sign over the survey's z_fe range).
``corrected_latents`` applies it, so thresholds stay scalar in latent units and every rule,
score and export works on the corrected axes unchanged.

Stored as ``MODEL_DIR/calibration.json``::

    {"axes": {"fe": {"target": "fe_h", "slope": a, "intercept": b, "scatter": s, "n": n,
                     "source": "...", "fitted": "2025-01-01T00:00:00Z"}, "c": ..., "alpha": ...}}
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from chemlatent.errors import ChemlatentError
from chemlatent.flags.anomaly import AXES, MAD_TO_SIGMA

CALIBRATION_JSON = "calibration.json"
DEFAULT_TARGETS: dict[str, str] = {"fe": "fe_h", "c": "c_fe", "alpha": "alpha_fe"}
LABELS: dict[str, str] = {"fe": "[Fe/H]", "c": "[C/Fe]", "alpha": "[alpha/Fe]"}


@dataclass
class AxisCalibration:
    """dex = intercept + slope * z for one axis."""

    target: str
    slope: float
    intercept: float
    scatter: float
    n: int
    source: str = ""
    fitted: str = ""
    gauge: list[float] | None = None  # coefficients of gauge_features(), latent units
    method: str = "regression"  # or "classical" (module docstring)

    def to_dex(self, z: np.ndarray | float) -> np.ndarray | float:
        return self.intercept + self.slope * np.asarray(z)

    def to_latent(self, dex: np.ndarray | float) -> np.ndarray | float:
        if self.slope == 0:
            raise ChemlatentError(f"calibration of {self.target} has zero slope: cannot invert")
        return (np.asarray(dex) - self.intercept) / self.slope


@dataclass
class Calibration:
    """Per-axis linear maps latent -> dex (any subset of fe, c, alpha)."""

    axes: dict[str, AxisCalibration]

    def has(self, axis: str) -> bool:
        return axis in self.axes

    def axis(self, axis: str) -> AxisCalibration:
        if axis not in self.axes:
            raise ChemlatentError(
                f"the calibration has no {LABELS.get(axis, axis)} axis: refit it with that reference"
            )
        return self.axes[axis]

    def to_dex(self, axis: str, z: np.ndarray | float) -> np.ndarray | float:
        return self.axis(axis).to_dex(z)

    @property
    def has_gauge(self) -> bool:
        return any(a.gauge for a in self.axes.values())

    def corrected_latents(self, latents: pd.DataFrame) -> pd.DataFrame:
        """Latents with each calibrated axis shifted by its Teff/logg zero point (a copy).

        Returns the frame itself when the calibration has no zero-point terms."""
        if not self.has_gauge:
            return latents
        out = latents.copy()
        for axis, cal in self.axes.items():
            if cal.gauge:
                feats = gauge_features(latents, axis)[:, :len(cal.gauge)]
                out[f"z_{axis}"] = (np.asarray(latents[f"z_{axis}"], np.float64)
                                    + feats @ np.asarray(cal.gauge)).astype(np.float32)
        return out

    def to_latent(self, axis: str, dex: np.ndarray | float) -> np.ndarray | float:
        return self.axis(axis).to_latent(dex)

    def dex_columns(self, latents: pd.DataFrame) -> pd.DataFrame:
        """``<target>_cal`` and ``<target>_cal_err`` (= |slope| * z_std) for each axis."""
        out = {}
        latents_c = self.corrected_latents(latents)
        for axis, cal in self.axes.items():
            z = np.asarray(latents_c[f"z_{axis}"], dtype=np.float64)
            out[f"{cal.target}_cal"] = cal.to_dex(z).astype(np.float32)
            std_col = f"z_{axis}_std"
            if std_col in latents.columns:
                err = abs(cal.slope) * np.asarray(latents[std_col], dtype=np.float64)
                out[f"{cal.target}_cal_err"] = err.astype(np.float32)
        return pd.DataFrame(out, index=latents.index)

    def to_dict(self) -> dict:
        return {"axes": {a: asdict(c) for a, c in self.axes.items()}}

    @classmethod
    def from_dict(cls, d: dict) -> Calibration:
        try:
            axes = {}
            for a, c in d["axes"].items():
                if a not in AXES:
                    raise ValueError(f"unknown axis {a!r}")
                axes[a] = AxisCalibration(
                    target=str(c["target"]), slope=float(c["slope"]),
                    intercept=float(c["intercept"]), scatter=float(c.get("scatter", float("nan"))),
                    n=int(c.get("n", 0)), source=str(c.get("source", "")),
                    fitted=str(c.get("fitted", "")),
                    gauge=[float(v) for v in c["gauge"]] if c.get("gauge") else None,
                    method=str(c.get("method", "regression")),
                )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ChemlatentError(f"calibration is malformed ({exc})") from None
        return cls(axes)

    def save(self, model_dir: str | Path) -> Path:
        """Write ``MODEL_DIR/calibration.json`` atomically; returns its path."""
        from chemlatent.io.store import write_json_atomic

        path = Path(model_dir) / CALIBRATION_JSON
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.to_dict(), path)
        return path


def load_calibration(model_dir: str | Path | None) -> Calibration | None:
    """The calibration in ``model_dir`` or None when the model has none."""
    if model_dir is None:
        return None
    path = Path(model_dir) / CALIBRATION_JSON
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ChemlatentError(f"{path} is not valid JSON ({exc})") from None
    return Calibration.from_dict(data)


CLIP_SIGMA = 5.0  # residuals beyond this many robust sigma leave the fit (module docstring)
METHODS = ("regression", "classical")
GAUGE_FEATURES = ("t", "g", "t2", "tg", "g2")
ELEMENT_FEATURES = ("zfe", "zfe2", "z_zfe", "z_zfe2")
Z_FREE_ELEMENT_FEATURES = 2  # the first ELEMENT_FEATURES (zfe, zfe2) do not involve the axis's own z


def gauge_features(latents: pd.DataFrame, axis: str = "fe") -> np.ndarray:
    """Smooth functions of the predicted Teff and logg (t, g, t^2, t g, g^2 with
    t = (teff_pred - 5000) / 1000 and g = logg_pred - 3) and, for the c and alpha axes,
    of z_fe (z_fe, z_fe^2, z z_fe, z z_fe^2)."""
    for col in ("teff_pred", "logg_pred"):
        if col not in latents.columns:
            raise ChemlatentError(f"the latents have no {col} column, needed by this calibration")
    t = (np.asarray(latents["teff_pred"], np.float64) - 5000.0) / 1000.0
    g = np.asarray(latents["logg_pred"], np.float64) - 3.0
    cols = [t, g, t * t, t * g, g * g]
    if axis != "fe":
        zf = np.asarray(latents["z_fe"], np.float64)
        z = np.asarray(latents[f"z_{axis}"], np.float64)
        cols += [zf, zf * zf, z * zf, z * zf * zf]
    return np.stack(cols, axis=1)


def _robust_scatter(r: np.ndarray) -> float:
    """1.4826 * MAD of the residuals r (at least 1e-12)."""
    return max(float(np.median(np.abs(r - np.median(r)))) * MAD_TO_SIGMA, 1e-12)


def _clipped_lstsq(design: np.ndarray, target: np.ndarray, keep: np.ndarray, clip: float,
                   max_iter: int, min_keep: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Least squares target ~ design, refitted without residuals beyond ``clip`` robust sigma
    until the kept set stops changing: (coefficients, kept rows, residual scatter)."""
    coef = np.zeros(design.shape[1])
    scatter = float("nan")
    for _ in range(max_iter):
        coef, *_ = np.linalg.lstsq(design[keep], target[keep], rcond=None)
        resid = target - design @ coef
        scatter = _robust_scatter(resid[keep])
        new = np.isfinite(resid) & (np.abs(resid) <= clip * scatter)
        if new.sum() < min_keep or np.array_equal(new, keep):
            break
        keep = new
    return coef, keep, scatter


def robust_gauge_fit(z: np.ndarray, feats: np.ndarray, y: np.ndarray, clip: float = CLIP_SIGMA,
                     max_iter: int = 20) -> tuple[float, float, np.ndarray, float, int]:
    """Clipped least squares y = b + a (z + feats @ c): (slope a, intercept b, c, scatter, n)."""
    keep = np.isfinite(z) & np.isfinite(y) & np.isfinite(feats).all(1)
    if keep.sum() < 20:
        raise ChemlatentError(
            f"need at least 20 reference stars for a Teff/logg zero point, got {keep.sum()}")
    design = np.column_stack([np.ones_like(z), z, feats])
    coef, keep, scatter = _clipped_lstsq(design, y, keep, clip, max_iter, 20)
    intercept, slope = float(coef[0]), float(coef[1])
    if slope == 0:
        raise ChemlatentError("the latent axis has no slope against the reference: cannot calibrate")
    return slope, intercept, coef[2:] / slope, scatter, int(keep.sum())


def classical_fit(z: np.ndarray, y: np.ndarray, feats: np.ndarray | None = None,
                  clip: float = CLIP_SIGMA, max_iter: int = 20
                  ) -> tuple[float, float, np.ndarray, float, int]:
    """Clipped least squares of the latent on the reference, z = alpha + beta y - feats @ c,
    inverted to the stored form y = b + a (z + feats @ c) with a = 1 / beta, b = -alpha / beta:
    (slope a, intercept b, c, scatter in dex, n). ``feats`` must not involve z."""
    f = np.zeros((len(z), 0)) if feats is None else feats
    keep = np.isfinite(z) & np.isfinite(y) & np.isfinite(f).all(1)
    if keep.sum() < max(3, f.shape[1] + 3):
        raise ChemlatentError(f"need more reference stars to calibrate, got {keep.sum()}")
    design = np.column_stack([np.ones_like(y), y, f])
    coef, keep, _ = _clipped_lstsq(design, z, keep, clip, max_iter, 3)
    beta = float(coef[1])
    if abs(beta) < 1e-9:
        raise ChemlatentError("the latent axis does not follow the reference: cannot calibrate")
    slope, intercept, c = 1.0 / beta, -float(coef[0]) / beta, -coef[2:]
    dex = y - (intercept + slope * (z + f @ c))
    return slope, intercept, c, _robust_scatter(dex[keep]), int(keep.sum())


def robust_line(x: np.ndarray, y: np.ndarray, clip: float = CLIP_SIGMA, max_iter: int = 20
                ) -> tuple[float, float, float, int]:
    """Iteratively clipped least squares y = b + a x: (slope, intercept, scatter, n_used)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    keep = np.isfinite(x) & np.isfinite(y)
    if keep.sum() < 3:
        raise ChemlatentError(f"need at least 3 stars with a reference value to calibrate, got {keep.sum()}")
    if np.ptp(x[keep]) == 0:
        raise ChemlatentError("the latent axis is constant on the reference stars: cannot calibrate")
    slope = intercept = scatter = float("nan")
    for _ in range(max_iter):
        slope, intercept = np.polyfit(x[keep], y[keep], 1)
        resid = y - (intercept + slope * x)
        r = resid[keep]
        scatter = max(float(np.median(np.abs(r - np.median(r)))) * MAD_TO_SIGMA, 1e-12)
        new = np.isfinite(x) & np.isfinite(y) & (np.abs(resid) <= clip * scatter)
        if new.sum() < 3 or np.array_equal(new, keep):
            break
        keep = new
    return float(slope), float(intercept), float(scatter), int(keep.sum())


def fit_calibration(
    latents: pd.DataFrame,
    catalog: pd.DataFrame,
    columns: dict[str, str] | None = None,
    *,
    source: str = "catalog truth labels",
    clip: float = CLIP_SIGMA,
    gauge: bool = False,
    method: str = "regression",
) -> Calibration:
    """Fit dex = intercept + slope * z per axis against reference columns of ``catalog``.

    ``columns`` maps axis -> catalog column (default fe_h, c_fe, alpha_fe); axes whose
    column is absent or has fewer than 3 values are skipped; none at all is an error.
    Rows are matched on ``star_id``.
    """
    if method not in METHODS:
        raise ChemlatentError(f"unknown calibration method {method!r}: use {' or '.join(METHODS)}")
    targets = dict(DEFAULT_TARGETS if columns is None else columns)
    bad = [a for a in targets if a not in AXES]
    if bad:
        raise ChemlatentError(f"unknown axis {bad[0]!r}: use fe, c or alpha")
    if "star_id" not in latents.columns or "star_id" not in catalog.columns:
        raise ChemlatentError("latents and catalog both need a star_id column to calibrate")
    present = {a: c for a, c in targets.items() if c in catalog.columns}
    if not present:
        raise ChemlatentError(
            f"the catalog has none of the reference columns {', '.join(targets.values())}: "
            "attach reference abundances first (chemlatent labels DIR TABLE)"
        )
    ref = catalog[["star_id", *present.values()]]
    keep_cols = ["star_id", *[f"z_{a}" for a in present]]
    if gauge:
        keep_cols += ["teff_pred", "logg_pred"] + (["z_fe"] if "fe" not in present else [])
    merged = latents[keep_cols].merge(ref, on="star_id", how="inner")
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    axes = {}
    for axis, col in present.items():
        y = pd.to_numeric(merged[col], errors="coerce").to_numpy(np.float64)
        x = merged[f"z_{axis}"].to_numpy(np.float64)
        n_ref = int((np.isfinite(x) & np.isfinite(y)).sum())
        if n_ref < 3:
            continue
        what = f"{source}: column {col}, {n_ref} stars with a value"
        what += "; with a Teff/logg zero point" if gauge else ""
        feats = gauge_features(merged, axis) if gauge else None
        if method == "classical":
            what += "; classical"
            if feats is not None:  # only the zero point's features that do not involve z itself
                feats = feats[:, :len(GAUGE_FEATURES) + (Z_FREE_ELEMENT_FEATURES if axis != "fe" else 0)]
            slope, intercept, coefs, scatter, n_used = classical_fit(x, y, feats, clip=clip)
        elif feats is not None:
            slope, intercept, coefs, scatter, n_used = robust_gauge_fit(x, feats, y, clip=clip)
        else:
            slope, intercept, scatter, n_used = robust_line(x, y, clip=clip)
        axes[axis] = AxisCalibration(col, slope, intercept, scatter, n_used, what, now,
                                     [float(v) for v in coefs] if feats is not None else None, method)
    if not axes:
        raise ChemlatentError("no reference column has 3 or more stars with values: cannot calibrate")
    return Calibration(axes)
