"""Anomaly scores: frames, tails, Mahalanobis, metallicity-conditional standardisation."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from chemlatent.errors import ChemlatentError
from chemlatent.flags.anomaly import (
    AXES,
    Reference,
    compute_scores,
    conditional_scores,
    fit_reference,
    mahalanobis,
    robust_center_scale,
    standardise,
    tail_probabilities,
)
from chemlatent.synth.latents import simulate_tables


@pytest.fixture(scope="module")
def shifted():
    """A survey whose aggregate is not N(0, 1): shifted, narrower, with 2% outliers."""
    rng = np.random.default_rng(1)
    n = 20_000
    z = rng.normal([0.3, -0.2, 0.1], [0.7, 0.8, 0.6], size=(n, 3)).astype(np.float32)
    z[: n // 50, 1] += 6.0  # outliers must not drag the robust frame
    return z


def test_prior_frame_is_z_itself(shifted):
    assert np.array_equal(standardise(shifted, None, "prior"), shifted)


def test_empirical_frame_is_robust_median_mad(shifted):
    ref = fit_reference(shifted)
    s = standardise(shifted, ref, "empirical")
    for k in range(3):
        med, scale = robust_center_scale(s[:, k])
        assert abs(med) < 0.03
        assert abs(scale - 1) < 0.03
    # the centre/scale ignore the planted outliers, the mean/std would not
    assert abs(ref.center[1] - (-0.2)) < 0.05
    assert abs(ref.scale[1] - 0.8) < 0.05
    assert np.std(shifted[:, 1]) > 1.0


def test_tail_probabilities():
    pe, pd_ = tail_probabilities(np.array([-2.0, 0.0, 2.0, 5.0]))
    np.testing.assert_allclose(pe + pd_, 1.0)
    np.testing.assert_allclose(pe, stats.norm.sf([-2, 0, 2, 5]), rtol=1e-12)
    assert pe[1] == pytest.approx(0.5)
    assert np.all(np.diff(pe) < 0) and np.all(np.diff(pd_) > 0)


def test_mahalanobis_prior_is_chi2_of_norm():
    z = np.array([[0, 0, 0], [1, 2, 2], [3, 0, 0]], np.float32)
    d2, p = mahalanobis(z, None, "prior")
    np.testing.assert_allclose(d2, [0, 9, 9])
    np.testing.assert_allclose(p, stats.chi2.sf([0, 9, 9], 3), rtol=1e-6)


def test_mahalanobis_empirical_accounts_for_correlation():
    rng = np.random.default_rng(2)
    cov = np.array([[1.0, 0.8, 0.0], [0.8, 1.0, 0.0], [0.0, 0.0, 1.0]]) * 0.5
    z = rng.multivariate_normal([0.5, 0.0, -0.5], cov, size=30_000)
    ref = fit_reference(z)
    assert ref.corr[0, 1] == pytest.approx(0.8, abs=0.03)
    d2, p = mahalanobis(z, ref)
    assert np.mean(d2) == pytest.approx(3.0, rel=0.05)
    assert np.mean(p < 0.05) == pytest.approx(0.05, abs=0.01)
    # a point along the correlation is ordinary, one across it is anomalous
    u = np.sqrt(0.5) * 2.0
    along = np.array([[0.5 + u, u, -0.5]])
    across = np.array([[0.5 + u, -u, -0.5]])
    assert mahalanobis(across, ref)[0][0] > 5 * mahalanobis(along, ref)[0][0]


def _metallicity_trend(n=30_000, seed=3):
    """z_c whose median and spread change with z_fe, plus C-rich stars at low z_fe."""
    rng = np.random.default_rng(seed)
    fe = rng.normal(0, 1, n)
    c = 0.8 * fe + rng.normal(0, 1, n) * (0.3 + 0.2 * (fe < 0))
    rich = np.zeros(n, bool)
    idx = np.nonzero(fe < -1.5)[0][:150]
    rich[idx] = True
    c[idx] = 0.8 * fe[idx] + 2.5  # > 4 sigma above stars of that metallicity
    alpha = rng.normal(0, 1, n)
    return np.column_stack([fe, c, alpha]).astype(np.float32), rich


def test_conditional_scores_follow_metallicity():
    z, rich = _metallicity_trend()
    ref = fit_reference(z)
    cond = conditional_scores(z, ref)["c"]
    glob = standardise(z, ref)[:, 1]
    normal = ~rich
    for lo, hi in [(-3, -1), (-1, 0), (0, 1), (1, 3)]:
        sel = normal & (z[:, 0] > lo) & (z[:, 0] < hi)
        med, scale = robust_center_scale(cond[sel])
        assert abs(med) < 0.1, (lo, hi, med)
        assert abs(scale - 1) < 0.12, (lo, hi, scale)
    # the planted stars stand out at their metallicity but not in the global frame
    assert np.median(cond[rich]) > 3.5
    assert np.median(glob[rich]) < 1.5
    # ranking by the conditional score finds them; by the global one it does not
    top = np.argsort(-cond)[:150]
    top_glob = np.argsort(-glob)[:150]
    assert rich[top].mean() > 0.8
    assert rich[top_glob].mean() < 0.2


def test_reference_roundtrip_and_nan():
    z, _ = _metallicity_trend(5000)
    z[0, 0] = np.nan
    z[1, 1] = np.nan
    ref = fit_reference(z)
    ref2 = Reference.from_dict(ref.to_dict())
    a = conditional_scores(z, ref)["c"]
    b = conditional_scores(z, ref2)["c"]
    np.testing.assert_array_equal(a, b)
    assert np.isnan(a[0]) and np.isnan(a[1]) and np.isfinite(a[2:]).all()
    assert ref.n == 4998


def test_fit_reference_needs_stars():
    with pytest.raises(ChemlatentError):
        fit_reference(np.full((5, 3), np.nan))
    with pytest.raises(ValueError):
        fit_reference(np.zeros((5, 2)))


def test_compute_scores_columns_and_speed():
    lat, _ = simulate_tables(200_000, seed=4)
    lat.index = lat.index + 100  # scores keep the caller's index
    t0 = time.perf_counter()
    sc = compute_scores(lat)
    dt = time.perf_counter() - t0
    assert dt < 5.0
    assert list(sc.index[:2]) == [100, 101]
    expect = {f"s_{a}" for a in AXES} | {f"p_enh_{a}" for a in AXES} | {
        "s_c_cond", "s_alpha_cond", "p_enh_c_cond", "p_dep_alpha_cond", "mahal_d2", "mahal_p",
        "s_fe_prior", "mahal_p_prior"}
    assert expect <= set(sc.columns)
    assert all(sc[c].dtype == np.float32 for c in sc.columns)
    np.testing.assert_allclose(sc["s_c_prior"], lat["z_c"])
    np.testing.assert_allclose(sc["p_enh_c"] + sc["p_dep_c"], 1.0, atol=1e-6)
    # the planted carbon-rich stars are the most carbon-anomalous at their metallicity
    cat_rich = pd.Series(lat["z_c"] > 3.5)
    assert sc.loc[cat_rich.to_numpy(), "s_c_cond"].median() > 3


def test_missing_columns_is_one_line_error():
    with pytest.raises(ChemlatentError, match="z_alpha"):
        compute_scores(pd.DataFrame({"z_fe": [0.0], "z_c": [0.0]}))
