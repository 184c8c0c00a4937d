"""The latent map's rasteriser: counts, colour means, a real star per pixel, spreading."""

from __future__ import annotations

import numpy as np
import pandas as pd

from chemlatent.explore.mapraster import rasterize_map


def _frame(n=5000, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"x": rng.normal(0, 1, n).astype(np.float32),
                         "y": rng.normal(0, 1, n).astype(np.float32),
                         "snr": rng.uniform(10, 90, n).astype(np.float32),
                         "star_id": np.arange(n, dtype=np.int64) + 1000})


def test_density_counts_every_star_in_view_and_rows_name_stars_in_their_pixel():
    f = _frame()
    r = rasterize_map(f, "x", "y", x_range=(-5, 5), y_range=(-5, 5), width=40, height=30,
                      hover=("star_id", "snr"))
    assert r.spread == 0
    assert np.nansum(r.value) == len(f)
    assert r.value.shape == (30, 40) == r.row.shape
    filled = r.row >= 0
    assert np.isnan(r.value[~filled]).all()
    # the star named by each pixel lies inside that pixel
    dx, dy = 10 / 40, 10 / 30
    jj, ii = np.nonzero(filled)
    rows = r.row[filled]
    assert np.all(np.abs(f["x"].to_numpy()[rows] - r.xs[ii]) <= dx / 2 + 1e-6)
    assert np.all(np.abs(f["y"].to_numpy()[rows] - r.ys[jj]) <= dy / 2 + 1e-6)
    assert np.array_equal(r.hover["star_id"][filled], f["star_id"].to_numpy()[rows])
    # hover reaches an isolated star from empty pixels up to HOVER_REACH away, never farther
    from scipy import ndimage

    from chemlatent.explore.mapraster import HOVER_REACH

    near = ndimage.binary_dilation(filled, structure=np.ones((2 * HOVER_REACH + 1,) * 2, bool))
    assert np.all(r.hover["star_id"][~near] == -1)
    assert np.all(r.hover["star_id"][near & ~filled] >= 0)
    assert np.all(np.isin(r.hover["star_id"][near], f["star_id"].to_numpy()))


def test_mean_colour_and_flagged_extra_column():
    f = _frame()
    r = rasterize_map(f, "x", "y", "snr", x_range=(-5, 5), y_range=(-5, 5), width=1, height=1)
    assert abs(r.value[0, 0] - f["snr"].mean()) < 1e-3
    flagged = np.zeros(len(f), np.float32)
    flagged[7] = 1
    r = rasterize_map(f, "x", "y", "flagged", x_range=(-5, 5), y_range=(-5, 5), width=20, height=20,
                      extra={"flagged": flagged})
    assert np.nanmax(r.value) == 1 and np.nansum(r.value) == 1


def test_sparse_views_spread_isolated_stars_and_default_range_covers_the_data():
    f = _frame(n=30)
    r = rasterize_map(f, "x", "y", width=300, height=300)
    assert r.spread >= 1
    assert r.n_pixels_filled > 30  # each star covers a small disc now
    assert np.nansum(r.value) > 30
    assert r.x_range[0] < f["x"].min() and r.x_range[1] > f["x"].max()
    # spread pixels name one of the stars
    assert set(np.unique(r.row[r.row >= 0])) <= set(range(30))


def test_survey_map_raster_is_shared_and_keyed_by_the_view(encoded_tiny, tmp_path):
    from chemlatent.explore.survey import SurveyData

    data = SurveyData(encoded_tiny, db=str(tmp_path / "a.sqlite"), load_model=False)
    a = data.map_raster("z_fe", "z_c", "density", width=40, height=30, hover=("star_id",))
    assert data.map_raster("z_fe", "z_c", "density", width=40, height=30, hover=("star_id",)) is a
    want = rasterize_map(data.frame, "z_fe", "z_c", "density", width=40, height=30, hover=("star_id",))
    np.testing.assert_array_equal(a.row, want.row)
    zoomed = data.map_raster("z_fe", "z_c", "density", x_range=(-1, 0), y_range=(-1, 1), width=40,
                             height=30, hover=("star_id",))
    assert zoomed is not a and zoomed.x_range == (-1.0, 0.0)
    for k in range(data.RASTERS_KEPT):  # old views are dropped
        data.map_raster("z_fe", "z_c", "density", x_range=(-1, k / 10), width=40, height=30)
    assert data.map_raster("z_fe", "z_c", "density", width=40, height=30, hover=("star_id",)) is not a
