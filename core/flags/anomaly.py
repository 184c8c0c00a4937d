"""Anomaly scores on the three chemical latent axes (z_fe, z_c, z_alpha).

Everything here is vectorised numpy over stars (loops run over axes or over a few dozen
metallicity bins, never over stars).

Two reference frames for a star's position on an axis:

- ``prior``: the model's prior, a standard normal per chemical axis, so the standardised
  position is ``z`` itself.
- ``empirical`` (the default): the survey's own population, standardised robustly,
  ``(z - median) / (1.4826 * MAD)``. After training the aggregate of posterior means is not
  N(0, 1) (it is narrower by the posterior variance, shifted and skewed by the survey's
  real chemistry), so "3 sigma from the prior" would mean a different fraction of stars in
  every survey and every model; the median/MAD frame makes a sigma mean the same thing
  everywhere and is not dragged by the outliers we are looking for.

and a metallicity-conditional frame for the element axes (``cond``): z_c and z_alpha are
standardised against the stars of similar z_fe (median and MAD in quantile bins of z_fe,
linearly interpolated between the bin centres), because "carbon-enhanced" means something
different at [Fe/H] = -2.5 than at solar metallicity.

Tail probabilities are one-sided normal tails of the standardised positions:
``p_enh = P(N(0,1) >= s)`` and ``p_dep = P(N(0,1) <= s)``. The joint Mahalanobis distance
``D^2`` over the three axes uses a robust correlation (Gnanadesikan-Kettenring with MAD
scales) in the empirical frame and the identity in the prior frame; its tail probability is
the chi-square survival function with 3 degrees of freedom.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import special

AXES: tuple[str, ...] = ("fe", "c", "alpha")
ELEMENT_AXES: tuple[str, ...] = ("c", "alpha")
FRAMES: tuple[str, ...] = ("empirical", "prior", "cond")
MAD_TO_SIGMA = 1.4826
_MIN_SCALE = 1e-6


def latent_matrix(latents: pd.DataFrame) -> np.ndarray:
    """The (n, 3) float32 matrix of posterior means in axis order fe, c, alpha."""
    missing = [f"z_{a}" for a in AXES if f"z_{a}" not in latents.columns]
    if missing:
        from chemlatent.errors import ChemlatentError

        raise ChemlatentError(f"latents table lacks column(s) {', '.join(missing)}")
    return np.column_stack([np.asarray(latents[f"z_{a}"], dtype=np.float32) for a in AXES])


def robust_center_scale(x: np.ndarray) -> tuple[float, float]:
    """Median and 1.4826 * MAD of the finite values of ``x`` (NaN, NaN when none)."""
    x = np.asarray(x, dtype=np.float64)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return float("nan"), float("nan")
    med = float(np.median(x))
    mad = float(np.median(np.abs(x - med))) * MAD_TO_SIGMA
    if not mad > 0:  # degenerate (many equal values): fall back to the standard deviation
        mad = float(np.std(x))
    return med, max(mad, _MIN_SCALE)


def _gk_correlation(u: np.ndarray) -> np.ndarray:
    """Robust correlation matrix of standardised columns (Gnanadesikan-Kettenring, MAD)."""
    k = u.shape[1]
    r = np.eye(k)
    for i in range(k):
        for j in range(i + 1, k):
            _, sp = robust_center_scale(u[:, i] + u[:, j])
            _, sm = robust_center_scale(u[:, i] - u[:, j])
            val = (sp**2 - sm**2) / (sp**2 + sm**2)
            r[i, j] = r[j, i] = val if np.isfinite(val) else 0.0
    # make it positive definite (GK is not guaranteed to be)
    w, v = np.linalg.eigh(r)
    w = np.clip(w, 1e-3, None)
    r = (v * w) @ v.T
    d = np.sqrt(np.diag(r))
    return r / np.outer(d, d)


@dataclass
class Reference:
    """Survey-level statistics that define the empirical and conditional frames.

    ``center``/``scale``: per-axis median and 1.4826*MAD; ``corr``: robust 3x3 correlation
    of the standardised axes; ``knots``: z_fe at the centre (median) of each quantile bin;
    ``cond_center``/``cond_scale``: per element axis, the median and 1.4826*MAD of that
    axis within each bin.
    """

    center: np.ndarray
    scale: np.ndarray
    corr: np.ndarray
    knots: np.ndarray
    cond_center: dict[str, np.ndarray] = field(default_factory=dict)
    cond_scale: dict[str, np.ndarray] = field(default_factory=dict)
    n: int = 0

    def axis_index(self, axis: str) -> int:
        return AXES.index(axis)

    def cond_curve(self, axis: str, z_fe: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Median and scale of ``axis`` at the given z_fe values (linear interpolation)."""
        if axis not in ELEMENT_AXES:
            raise ValueError(f"conditional frame is defined for {ELEMENT_AXES}, not {axis!r}")
        zf = np.asarray(z_fe)
        c = np.interp(zf, self.knots, self.cond_center[axis])
        s = np.interp(zf, self.knots, self.cond_scale[axis])
        bad = ~np.isfinite(zf)
        if bad.any():  # np.interp with a single knot returns it even for NaN
            c[bad] = np.nan
            s[bad] = np.nan
        return c, s

    def to_dict(self) -> dict:
        return {
            "center": self.center.tolist(),
            "scale": self.scale.tolist(),
            "corr": self.corr.tolist(),
            "knots": self.knots.tolist(),
            "cond_center": {k: v.tolist() for k, v in self.cond_center.items()},
            "cond_scale": {k: v.tolist() for k, v in self.cond_scale.items()},
            "n": int(self.n),
        }

    @classmethod
    def from_dict(cls, d: dict) -> Reference:
        return cls(
            center=np.asarray(d["center"], float),
            scale=np.asarray(d["scale"], float),
            corr=np.asarray(d["corr"], float),
            knots=np.asarray(d["knots"], float),
            cond_center={k: np.asarray(v, float) for k, v in d["cond_center"].items()},
            cond_scale={k: np.asarray(v, float) for k, v in d["cond_scale"].items()},
            n=int(d.get("n", 0)),
        )


def _default_bins(n: int) -> int:
    return int(np.clip(n // 500, 1, 40))


def fit_reference(
    z: np.ndarray,
    *,
    n_bins: int | None = None,
    max_sample: int = 1_000_000,
    seed: int = 0,
) -> Reference:
    """Fit the empirical and metallicity-conditional frames on a survey's latent means.

    ``z`` is (n, 3) in axis order fe, c, alpha. Surveys larger than ``max_sample`` are
    subsampled (seeded) for the medians: their statistical error is far below the scatter.
    ``n_bins`` quantile bins of z_fe (default: one per 500 stars, 1..40).
    """
    z = np.asarray(z)
    if z.ndim != 2 or z.shape[1] != 3:
        raise ValueError(f"z must be (n, 3), got {z.shape}")
    ok = np.isfinite(z).all(axis=1)
    zs = z[ok].astype(np.float64)
    if zs.shape[0] > max_sample:
        rng = np.random.default_rng(seed)
        zs = zs[rng.integers(0, zs.shape[0], max_sample)]
    n = zs.shape[0]
    if n < 3:
        from chemlatent.errors import ChemlatentError

        raise ChemlatentError(f"need at least 3 stars with finite latents to fit a reference, got {n}")
    center = np.empty(3)
    scale = np.empty(3)
    for k in range(3):
        center[k], scale[k] = robust_center_scale(zs[:, k])
    corr = _gk_correlation((zs - center) / scale)
    nb = _default_bins(n) if n_bins is None else max(1, min(int(n_bins), n // 3))
    order = np.argsort(zs[:, 0], kind="stable")
    groups = np.array_split(order, nb)
    knots = np.array([np.median(zs[g, 0]) for g in groups])
    cond_center: dict[str, np.ndarray] = {}
    cond_scale: dict[str, np.ndarray] = {}
    for axis in ELEMENT_AXES:
        k = AXES.index(axis)
        cs = np.array([robust_center_scale(zs[g, k]) for g in groups])
        cond_center[axis] = cs[:, 0]
        cond_scale[axis] = np.maximum(cs[:, 1], scale[k] * 1e-3)
    # np.interp needs increasing knots; ties (discrete z_fe) are nudged apart
    knots = np.maximum.accumulate(knots + np.arange(nb) * 1e-9)
    return Reference(center, scale, corr, knots, cond_center, cond_scale, n)


def standardise(z: np.ndarray, ref: Reference | None, frame: str = "empirical") -> np.ndarray:
    """(n, 3) standardised positions in the ``empirical`` or ``prior`` frame (float32)."""
    z = np.asarray(z, dtype=np.float32)
    if frame == "prior":
        return z.copy()
    if frame != "empirical":
        raise ValueError(f"frame must be 'empirical' or 'prior' here, got {frame!r}")
    if ref is None:
        raise ValueError("the empirical frame needs a Reference (fit_reference)")
    return ((z - ref.center.astype(np.float32)) / ref.scale.astype(np.float32)).astype(np.float32)


def conditional_scores(z: np.ndarray, ref: Reference) -> dict[str, np.ndarray]:
    """z_c and z_alpha standardised against stars of similar z_fe: {'c': s, 'alpha': s}."""
    z = np.asarray(z)
    out = {}
    for axis in ELEMENT_AXES:
        c, s = ref.cond_curve(axis, z[:, 0])
        out[axis] = ((z[:, AXES.index(axis)] - c) / s).astype(np.float32)
    return out


def tail_probabilities(score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One-sided normal tails of a standardised position: (p_enhanced, p_depleted)."""
    s = np.asarray(score, dtype=np.float64)
    return special.ndtr(-s), special.ndtr(s)


def mahalanobis(z: np.ndarray, ref: Reference | None, frame: str = "empirical"
                ) -> tuple[np.ndarray, np.ndarray]:
    """Joint squared Mahalanobis distance over the 3 chemical axes and its chi2(3) tail."""
    u = standardise(z, ref, frame).astype(np.float64)
    if frame == "prior":
        d2 = np.einsum("ij,ij->i", u, u)
    else:
        inv = np.linalg.inv(ref.corr)
        d2 = np.einsum("ij,jk,ik->i", u, inv, u)
    return d2, special.chdtrc(3, d2)


def compute_scores(
    latents: pd.DataFrame,
    reference: Reference | None = None,
    *,
    include_prior: bool = True,
) -> pd.DataFrame:
    """All per-star scores as a DataFrame aligned with ``latents`` (float32 columns).

    Columns: ``s_<axis>`` (empirical standardised position), ``p_enh_<axis>`` /
    ``p_dep_<axis>`` (its one-sided tails), ``s_<el>_cond``, ``p_enh_<el>_cond``,
    ``p_dep_<el>_cond`` for el in c, alpha (metallicity-conditional), ``mahal_d2`` /
    ``mahal_p`` (empirical), and with ``include_prior`` ``s_<axis>_prior``, its tails and
    ``mahal_d2_prior`` / ``mahal_p_prior``.
    """
    z = latent_matrix(latents)
    ref = reference if reference is not None else fit_reference(z)
    cols: dict[str, np.ndarray] = {}
    frames = ["empirical", "prior"] if include_prior else ["empirical"]
    for frame in frames:
        suffix = "" if frame == "empirical" else "_prior"
        s = standardise(z, ref, frame)
        for k, axis in enumerate(AXES):
            pe, pd_ = tail_probabilities(s[:, k])
            cols[f"s_{axis}{suffix}"] = s[:, k]
            cols[f"p_enh_{axis}{suffix}"] = pe.astype(np.float32)
            cols[f"p_dep_{axis}{suffix}"] = pd_.astype(np.float32)
    cond = conditional_scores(z, ref)
    for axis in ELEMENT_AXES:
        pe, pd_ = tail_probabilities(cond[axis])
        cols[f"s_{axis}_cond"] = cond[axis]
        cols[f"p_enh_{axis}_cond"] = pe.astype(np.float32)
        cols[f"p_dep_{axis}_cond"] = pd_.astype(np.float32)
    for frame in frames:
        suffix = "" if frame == "empirical" else "_prior"
        d2, p = mahalanobis(z, ref, frame)
        cols[f"mahal_d2{suffix}"] = d2.astype(np.float32)
        cols[f"mahal_p{suffix}"] = p.astype(np.float32)
    return pd.DataFrame(cols, index=latents.index)
