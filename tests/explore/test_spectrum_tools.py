"""Spectrum tools: markers by element, radial velocity, air/vacuum, smoothing; and the map's
colour by any numeric column of the catalog or the latents."""

from __future__ import annotations

import numpy as np

from chemlatent.explore.spectrum_tools import SpectrumToolsState, element_choices, line_markers, smooth
from chemlatent.explore.survey import SurveyData
from chemlatent.spectra.physics import C_KMS, air_to_vacuum, vacuum_to_air


def test_vacuum_to_air_inverts_air_to_vacuum():
    w = np.array([1500.0, 3900.0, 6564.6, 10400.0])
    assert np.allclose(air_to_vacuum(vacuum_to_air(w)), w, atol=1e-7)
    assert abs(vacuum_to_air(6564.61) - 6562.80) < 0.01  # H alpha
    assert vacuum_to_air(1500.0) == 1500.0


def test_markers_filter_shift_and_medium():
    assert {"Fe", "C", "H", "CH", "C2"} <= set(element_choices())
    c = line_markers(["C", "CH"], (4000, 10000))
    assert set(c["element"]) == {"C", "CH"} and (c["group"] == "c").all()
    assert np.allclose(c["wave"], c["rest"])
    moved = line_markers(["C", "CH"], None, rv_kms=300.0)
    assert np.allclose(moved["wave"], moved["rest"] * (1 + 300.0 / C_KMS))
    air = line_markers(["H"], None, air=True)
    assert (air["wave"] < air["rest"]).all()
    assert len(line_markers(None)) > len(c)


def test_smoothing_skips_bad_pixels():
    f = np.ones(50)
    f[10] = np.nan
    f[30] = 3.0
    s = smooth(f, 5)
    assert np.isnan(s[10]) and np.isclose(s[11], 1.0) and np.isclose(s[30], 1.4)
    assert np.array_equal(smooth(f, 1), f, equal_nan=True)


def test_tools_state_shows_the_spectrum():
    t = SpectrumToolsState(elements=["Fe"], rv_kms=50.0, smoothing=3, air=True)
    wave = np.linspace(4000, 6000, 500)
    shown = t.shown(wave, np.ones(500))
    assert shown.air and shown.wave[0] < 4000 and len(shown.markers) > 0
    assert (shown.markers["element"] == "Fe").all()


def test_map_colour_by_any_numeric_column(tiny_survey):
    """Catalog columns such as vmicro and latents columns such as z_c_std colour the map."""
    from chemlatent.explore.mapraster import rasterize_map
    from chemlatent.synth.latents import simulate_tables

    lat, _ = simulate_tables(tiny_survey.n_stars, seed=2)
    lat["star_id"] = tiny_survey.catalog["star_id"].to_numpy()
    (tiny_survey.path / "latents").mkdir(exist_ok=True)
    path = tiny_survey.path / "latents" / "sim.parquet"
    lat.to_parquet(path)
    try:
        data = SurveyData(tiny_survey.path, "sim", load_model=False, db="sqlite://")
        for c in ("vmicro", "rv_residual", "z_c_std", "n_good" if "n_good" in lat else "chi2"):
            assert c in data.color_options
        r = rasterize_map(data.frame, "z_fe", "z_c", "vmicro", width=40, height=30)
        assert np.isfinite(r.value).any()
    finally:
        path.unlink()
