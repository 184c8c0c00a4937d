"""Box, lasso and tap selection masks and selection summaries (core/selection.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from chemlatent.explore import selection


@pytest.fixture(scope="module")
def cloud():
    rng = np.random.default_rng(0)
    return rng.normal(size=200_000).astype(np.float32), rng.normal(size=200_000).astype(np.float32)


def test_box_mask_matches_definition_and_any_corner_order(cloud):
    x, y = cloud
    m = selection.box_mask(x, y, (-0.5, -1.0, 1.0, 0.5))
    ref = (x >= -0.5) & (x <= 1.0) & (y >= -1.0) & (y <= 0.5)
    assert np.array_equal(m, ref)
    assert np.array_equal(selection.box_mask(x, y, (1.0, 0.5, -0.5, -1.0)), ref)


def test_box_mask_never_selects_nan():
    x = np.array([0.0, np.nan, 0.5])
    y = np.array([0.0, 0.0, np.nan])
    assert selection.box_mask(x, y, (-1, -1, 1, 1)).tolist() == [True, False, False]


def test_polygon_square_equals_box(cloud):
    x, y = cloud
    sq = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], float)
    m = selection.lasso_mask(x, y, sq)
    ref = (np.abs(x) < 1) & (np.abs(y) < 1)
    # points exactly on an edge may go either way; none here in float32 noise
    assert np.array_equal(m, ref)


def test_polygon_triangle_against_shapely(cloud):
    shapely = pytest.importorskip("shapely")
    x, y = cloud
    tri = np.array([[-2.0, -1.5], [2.5, -0.5], [0.1, 2.2]])
    m = selection.lasso_mask(x, y, tri)
    ref = shapely.contains_xy(shapely.Polygon(tri), x.astype(float), y.astype(float))
    assert (m != ref).sum() == 0


def test_lasso_degenerate_and_nan_vertices():
    x = np.zeros(3)
    y = np.zeros(3)
    assert not selection.lasso_mask(x, y, np.zeros((2, 2))).any()
    assert not selection.lasso_mask(x, y, np.zeros((0,))).any()
    poly = np.array([[-1, -1], [np.nan, 0], [1, -1], [1, 1], [-1, 1]], float)
    assert selection.lasso_mask(x, y, poly).all()


def test_self_intersecting_lasso_uses_even_odd():
    # a bow tie: the two lobes are inside, the crossing point region is split
    bow = np.array([[-1, -1], [1, 1], [1, -1], [-1, 1]], float)
    x = np.array([-0.9, 0.9, 0.0, 0.0])
    y = np.array([0.0, 0.0, 0.9, -0.9])
    assert selection.lasso_mask(x, y, bow).tolist() == [True, True, False, False]


def test_lasso_on_two_million_points_matches_a_reference_on_a_sample():
    rng = np.random.default_rng(1)
    x = rng.normal(size=2_000_000).astype(np.float32)
    y = rng.normal(size=2_000_000).astype(np.float32)
    t = np.linspace(0, 2 * np.pi, 200, endpoint=False)
    poly = np.c_[1.5 * np.cos(t), np.sin(t) * (1 + 0.3 * np.sin(5 * t))]
    m = selection.lasso_mask(x, y, poly)
    assert 0.2 < m.mean() < 0.9
    from matplotlib.path import Path as MplPath

    k = np.arange(0, x.size, 97)
    want = MplPath(poly).contains_points(np.column_stack([x[k], y[k]]))
    assert np.count_nonzero(m[k] != want) <= 2


@pytest.mark.parametrize("mode,expected", [("replace", [0, 1, 1, 0]), ("add", [1, 1, 1, 0]),
                                           ("subtract", [1, 0, 0, 0]), ("intersect", [0, 1, 0, 0])])
def test_combine_modes(mode, expected):
    old = np.array([1, 1, 0, 0], bool)
    new = np.array([0, 1, 1, 0], bool)
    assert selection.combine(old, new, mode).astype(int).tolist() == expected


def test_combine_rejects_unknown_mode():
    with pytest.raises(ValueError):
        selection.combine(None, np.zeros(2, bool), "xor")


def test_nearest_uses_screen_normalised_distance():
    # x in thousands, y in units: the nearest in raw units is not the nearest on screen
    x = np.array([5000.0, 5100.0])
    y = np.array([1.0, 0.0])
    # click at (5000, 0): raw distance favours star 0 (dx 0, dy 1) vs star 1 (dx 100);
    # on a screen spanning 1000 K by 2 units star 1 is nearer (0.1 vs 0.5 of the view)
    k = selection.nearest_index(x, y, 5000.0, 0.0, (4500, 5500), (-1, 1), max_distance=None)
    assert k == 1


def test_nearest_respects_max_distance_and_nan():
    x = np.array([0.0, np.nan])
    y = np.array([0.0, 0.0])
    assert selection.nearest_index(x, y, 0.5, 0.5, (-1, 1), (-1, 1), max_distance=0.05) is None
    assert selection.nearest_index(x, y, 0.01, 0.0, (-1, 1), (-1, 1)) == 0
    assert selection.nearest_index(x, y, np.nan, 0.0) is None


def test_compare_histograms_and_summary():
    rng = np.random.default_rng(2)
    v = rng.normal(size=10_000)
    mask = v > 1
    h = selection.compare_histograms(v, mask, bins=20, column="v")
    assert h.total.sum() == 10_000
    assert h.selected.sum() == mask.sum()
    sel, tot = h.normalised()
    assert np.isclose((sel * np.diff(h.edges)).sum(), 1.0)
    assert selection.compare_histograms(np.full(5, np.nan), np.ones(5, bool)) is None
    frame = pd.DataFrame({"snr": v * 10 + 50, "other": v})
    s = selection.selection_summary(frame, mask)
    assert s["n_selected"] == int(mask.sum())
    assert s["columns"]["snr"]["median"] > 50
    assert "other" not in s["columns"]
    assert selection.selection_summary(frame, np.zeros(len(v), bool))["columns"] == {}


def test_column_digest_matches_exact_histograms_and_quantiles():
    rng = np.random.default_rng(3)
    v = rng.lognormal(1.0, 0.6, 200_000).astype(np.float32)
    v[::997] = np.nan
    mask = rng.random(v.size) < 0.3
    d = selection.ColumnDigest.build(v, "v", bins=30)
    h = d.histograms(v, mask)
    ref = selection.compare_histograms(v, mask, bins=30, column="v")
    assert np.allclose(h.edges, ref.edges)
    assert np.array_equal(h.total, ref.total) and np.array_equal(h.selected, ref.selected)
    q, n = d.quantiles(v, mask)
    sel = v[mask & np.isfinite(v)]
    assert n == sel.size
    width = (d.hi - d.lo) / d.nfine
    assert np.allclose(q, np.percentile(sel, [16, 50, 84]), atol=width)
    # a selection of the far tail (beyond the digest's range) is summarised exactly
    tail = np.nan_to_num(v, nan=0) > np.nanpercentile(v, 99.9)
    q, n = d.quantiles(v, tail, qs=(50,))
    assert q[0] == np.percentile(v[tail], 50)
    assert d.quantiles(v, np.zeros(v.size, bool)) == ([], 0)
    assert selection.ColumnDigest.build(np.full(4, np.nan)) is None


def test_banded_polygon_test_agrees_with_matplotlib_on_random_star_polygons():
    from matplotlib.path import Path as MplPath

    rng = np.random.default_rng(7)
    x = rng.uniform(-2, 2, 50_000).astype(np.float32)
    y = rng.uniform(-2, 2, 50_000).astype(np.float32)
    for nv in (3, 7, 60, 400):
        ang = np.sort(rng.uniform(0, 2 * np.pi, nv))
        rad = rng.uniform(0.3, 1.8, nv)
        xs, ys = rad * np.cos(ang), rad * np.sin(ang)
        got = selection.polygon_mask(x, y, xs, ys)
        want = MplPath(np.column_stack([xs, ys])).contains_points(np.column_stack([x, y]))
        # points within float rounding of an edge may go either way
        assert np.count_nonzero(got != want) <= 2, nv
        assert got.sum() > 0
