"""The larger-than-memory overview answers the map's questions like the in-memory explorer."""

from __future__ import annotations

import numpy as np
import pytest

from chemlatent.encode.outofcore import LazySurvey
from chemlatent.explore import selection
from chemlatent.explore.mapraster import rasterize_map
from chemlatent.explore.survey import SurveyData


@pytest.fixture(scope="module")
def encoded(encoded_tiny):
    return encoded_tiny


def test_lazy_map_box_and_nearest_match_the_in_memory_explorer(encoded):
    lazy = LazySurvey(encoded)
    data = SurveyData(encoded, load_model=False)
    f = data.frame
    assert lazy.n == data.n
    xr, yr = lazy.data_range("z_fe"), lazy.data_range("z_c")
    r = lazy.raster("z_fe", "z_c", x_range=xr, y_range=yr, width=60, height=40)
    m = rasterize_map(f, "z_fe", "z_c", x_range=xr, y_range=yr, width=60, height=40)
    assert np.nansum(r.value) == data.n
    filled = r.hover["star_id"] >= 0
    assert set(r.hover["star_id"][filled]) <= set(f["star_id"])
    if r.spread == 0 and m.spread == 0:
        assert np.array_equal(np.nan_to_num(r.value), np.nan_to_num(m.value))
    x, y = f["z_fe"].to_numpy(), f["z_c"].to_numpy()
    box = (np.nanpercentile(x, 20), np.nanpercentile(y, 20), np.nanpercentile(x, 70), np.nanpercentile(y, 80))
    s = lazy.box_summary("z_fe", "z_c", box)
    mask = selection.box_mask(x, y, box)
    assert s.n_selected == mask.sum() > 0 and s.n_total == data.n
    assert abs(s.columns["snr"]["median"] - np.median(f["snr"].to_numpy()[mask])) < 1e-3
    k = 17
    hit = lazy.nearest("z_fe", "z_c", float(x[k]), float(y[k]), xr, yr)
    want = selection.nearest_index(x, y, float(x[k]), float(y[k]), xr, yr)
    assert hit is not None and hit["star_id"] == f["star_id"].iat[want]
    assert lazy.nearest("z_fe", "z_c", xr[1] + 100, yr[1] + 100, xr, yr) is None
