"""The explorer's GUI-free state (core/session.py) and spectrum data (core/spectrum_view.py),
driven without a server."""

from __future__ import annotations

import io
import sys

import numpy as np
import pandas as pd
import pytest

from chemlatent.errors import ChemlatentError
from chemlatent.explore import selection
from chemlatent.explore import spectrum as spectrum_view
from chemlatent.explore.state import ExplorerState, SurveyData


def make_latents(survey_dir, model_dir, *, epochs: int = 1, calibrate: bool = False):
    """Train a tiny model on a survey, encode it, optionally fit a calibration."""
    from chemlatent.encode.streaming import encode_survey
    from chemlatent.io.latents import read_latents
    from chemlatent.io.store import Survey
    from chemlatent.model.calibration import fit_calibration
    from chemlatent.model.modelio import load_model
    from chemlatent.model.training import TrainOptions, train

    train(survey_dir, model_dir, TrainOptions(epochs=epochs, hidden=(32, 32, 16), device="cpu",
                                              batch_size=256), progress=False)
    model = load_model(model_dir)
    survey = Survey(survey_dir)
    path = encode_survey(survey, model, overwrite=True)
    if calibrate:
        fit_calibration(read_latents(path), survey.catalog).save(model_dir)
    return path


@pytest.fixture(scope="module")
def data(tiny_survey, tmp_path_factory):
    model_dir = tmp_path_factory.mktemp("models") / "tinyvae"
    make_latents(tiny_survey.path, model_dir, calibrate=True)
    db = tmp_path_factory.mktemp("db") / "ann.sqlite"
    return SurveyData(tiny_survey.path, db=str(db), who="tester")


@pytest.fixture()
def state(data):
    return ExplorerState(data)


def test_survey_data_aligns_latents_with_catalog(data, tiny_survey):
    f = data.frame
    assert len(f) == tiny_survey.n_stars
    cat = tiny_survey.catalog
    assert np.array_equal(cat["star_id"].to_numpy()[f["row"].to_numpy()], f["star_id"].to_numpy())
    assert data.model is not None, data.notes
    assert data.calibration is not None
    assert data.truth_available
    for c in ("z_fe", "z_c", "z_alpha", "w_0", "w_1", "teff_pred", "logg_pred", "fe_h", "c_fe"):
        assert c in data.axis_options
    for c in ("density", "flagged", "snr", "chi2", "score"):
        assert c in data.color_options


def test_box_and_lasso_selection(state):
    x, y = state.xy
    # latents are quantised: keep box edges off the data values (edges count for boxes only)
    x0, x1 = np.percentile(x, [25, 75]) + 1.234e-5
    y0, y1 = np.percentile(y, [25, 75]) + 1.234e-5
    n = state.select_box((x0, y0, x1, y1))
    ref = (x >= x0) & (x <= x1) & (y >= y0) & (y <= y1)
    assert n == ref.sum() > 0
    events = []
    state.param.watch(lambda e: events.append(e.name), ["selected"])
    # a lasso covering the same box, then subtract a smaller one
    poly = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])
    assert state.select_lasso(poly) == n
    assert events == ["selected"]  # one param event per selection change
    tri = np.array([[x0, y0], [x1, y0], [x1, y1]])
    in_tri = selection.lasso_mask(x, y, tri)
    n2 = state.select_lasso(tri, mode="subtract")
    assert n2 == n - np.count_nonzero(ref & in_tri)
    summ = state.selection_summary()
    assert summ["n_selected"] == n2
    assert "snr" in summ["columns"]
    hists = state.selection_histograms()
    assert hists["snr"].selected.sum() == n2
    state.clear_selection()
    assert state.n_selected == 0


def test_selection_follows_axes(state):
    state.x_axis, state.y_axis = "teff_pred", "logg_pred"
    n = state.select_box((4000, 0, 10000, 3.5))
    f = state.data.frame
    ref = (f.teff_pred >= 4000) & (f.teff_pred <= 10000) & (f.logg_pred >= 0) & (f.logg_pred <= 3.5)
    assert n == int(ref.sum())


def test_pick_nearest_and_spectrum(state, data):
    x, y = state.xy
    i = 17
    sid = state.pick_at(float(x[i]), float(y[i]), (x.min(), x.max()), (y.min(), y.max()))
    assert sid is not None
    k = data.index_of(sid)
    # the picked star is at (or exactly as close as) the click
    assert np.isclose(x[k], x[i]) and np.isclose(y[k], y[i])
    spec = state.picked_spectrum()
    assert spec.star_id == sid
    assert spec.flux.shape == data.survey.grid.wave.shape
    assert spec.model is not None
    inside = np.isfinite(spec.model)
    assert 0 < inside.sum() < inside.size  # NaN outside the element windows
    assert np.isfinite(spec.residual[inside & np.isfinite(spec.flux)]).all()
    assert set(spec.components) == {"fe", "c", "alpha"}
    assert spec.info["chi2"] > 0
    assert state.picked_info()["star_id"] == sid
    assert state.pick_at(1e9, 1e9, (0, 1), (0, 1)) is None
    with pytest.raises(ChemlatentError):
        state.pick_star(-12345)


def test_threshold_changes_counts(state):
    assert state.preset == "cemp"
    c3 = state.counts_summary()
    state.element_sigma = 1.0
    c1 = state.counts_summary()
    assert c1["n_flagged"] >= c3["n_flagged"]
    assert c1["expected"] > c3["expected"]
    assert "precision" in c1 and "recall" in c1
    events = []
    state.param.watch(lambda *evs: events.append(sorted(e.name for e in evs)), ["flagged", "counts"])
    state.fe_sigma = 0.0
    assert events == [["counts", "flagged"]]  # flagged and counts announced together, once
    assert state.counts_summary()["n_flagged"] >= c1["n_flagged"]
    state.preset = "apmp"
    assert state.rule.name == "apmp"
    assert state.element_dex == 0.0
    state.preset = "none"
    assert state.n_flagged == 0 and state.counts_summary()["n_flagged"] == 0


def test_dex_thresholds_with_calibration(state):
    state.unit = "dex"
    state.preset = "cemp"
    state.element_dex = 0.3
    n_lo = state.n_flagged
    state.element_dex = 1.5
    assert state.n_flagged <= n_lo
    assert "dex" in state.rule.description


def test_candidate_table_paging_and_sorting(state):
    state.element_sigma = 0.8
    state.fe_sigma = 0.0
    state.fe_dex = 0.5  # calibrated Fe axis: metal-poor is [Fe/H] in dex (docs/flags.md)
    assert state.n_flagged > 5
    state.page_size = 3
    page, total = state.candidate_page(1)
    assert total == state.n_flagged and len(page) == 3
    assert list(page["score"]) == sorted(page["score"], reverse=True)
    state.sort_by, state.ascending = "snr", True
    all_rows = state.candidates()
    assert all_rows["snr"].is_monotonic_increasing
    last, _ = state.candidate_page(10_000)  # clamps to the last page
    assert 1 <= len(last) <= 3
    state.table_source = "selection"
    assert len(state.candidates()) == 0


def test_annotate_writes_verdicts(state):
    state.element_sigma = 0.8
    ids = state.candidates()["star_id"].to_numpy()[:2]
    assert state.annotate(ids, "accept", "nice CH band") == 2
    state.annotate(ids[:1], "reject")
    v = state.verdicts(ids).set_index("star_id")
    assert v.loc[ids[0], "verdict"] == "rejected"
    assert v.loc[ids[1], "verdict"] == "accepted"
    assert v.loc[ids[1], "note"] == "nice CH band"
    assert v.loc[ids[1], "who"] == "tester"
    table = state.candidates().set_index("star_id")
    assert table.loc[ids[1], "verdict"] == "accepted"
    assert state.annotate([], "accepted") == 0


@pytest.mark.parametrize("fmt", ["csv", "fits", "votable"])
def test_export_bytes_readable_by_astropy(state, fmt):
    from astropy.table import Table

    state.element_sigma = 0.8
    name, data = state.export(fmt)
    assert name.endswith({"csv": ".csv", "fits": ".fits", "votable": ".vot"}[fmt])
    if fmt == "csv":
        t = Table.read(io.BytesIO(data), format="ascii.csv", comment="#")
    else:
        t = Table.read(io.BytesIO(data), format=fmt)
    assert len(t) == state.n_flagged
    for c in ("star_id", "z_fe", "z_c", "z_alpha", "s_c_cond", "mahal_d2"):
        assert c in t.colnames
    if fmt == "fits":
        from astropy.io import fits

        hdr = fits.getheader(io.BytesIO(data), 1)
        assert "cemp" in hdr["RULE"]


def test_samp_without_hub_gives_message(state, monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.samp lock file: no hub
    monkeypatch.delenv("SAMP_HUB", raising=False)
    msg = state.send_samp(hub_timeout=2.0)
    assert "SAMP" in msg and "hub" in msg
    assert state.message == msg


def test_url_state_round_trip(data):
    a = ExplorerState(data, x_axis="teff_pred", y_axis="z_alpha", color_by="snr")
    a.element_sigma = 2.5
    a.pick_star(int(data.frame["star_id"].iat[3]))
    b = ExplorerState(data)
    b.apply_url_state({k: str(v) for k, v in a.url_state().items()})
    assert b.url_state() == a.url_state()
    b.apply_url_state({"x_axis": "nonsense", "element_sigma": "abc", "unknown": 1})
    assert b.x_axis == "teff_pred" and b.element_sigma == 2.5


def test_sessions_are_independent(data):
    a, b = ExplorerState(data), ExplorerState(data)
    a.select_box((-1e9, -1e9, 1e9, 1e9))
    a.element_sigma = 1.0
    assert b.n_selected == 0 and b.element_sigma == 3.0


def test_selection_stacks(state):
    f = state.data.frame
    state.select_box((-1e9, -1e9, 1e9, 1e9))
    state.select_ids(f["star_id"].to_numpy()[:60])
    sel, ctrl = state.selection_stacks(max_stars=50)
    assert sel.n_stars == 50
    assert 0 < ctrl.n_stars <= 50
    assert np.nanmedian(sel.mean) == pytest.approx(1.0, abs=0.2)
    assert np.isfinite(ctrl.mean).mean() > 0.9


def test_matched_control_same_cells():
    rng = np.random.default_rng(0)
    teff = rng.uniform(4000, 7000, 5000)
    logg = rng.uniform(1, 5, 5000)
    sel = (teff < 4600) & (logg > 4)
    s, c = spectrum_view.matched_control(teff, logg, sel, max_stars=100)
    assert len(s) == min(100, sel.sum())
    assert not sel[c].any()
    assert teff[c].max() < 4600 + 150 and logg[c].min() > 4 - 0.3


def test_window_spans_zoom_and_lines(data):
    spans = spectrum_view.window_spans(data.windows)
    assert set(spans["group"]) == {"fe", "c", "alpha"}
    assert (spans["hi"] > spans["lo"]).all()
    assert "CH G Band" in set(spans["label"])
    choices = spectrum_view.zoom_choices(data.windows)
    assert choices["full spectrum"] is None
    lo, hi = choices["line: Halpha"]
    assert lo < 6564.6 < hi
    lines = spectrum_view.key_lines()
    want = {"Ca II K", "Ca II H", "Hbeta", "Mg b", "Na D", "Halpha", "Ca triplet", "G band"}
    assert want <= set(lines.label)
    assert len(spectrum_view.key_lines(6000, 7000)) == 1


def test_core_does_not_import_gui():
    import subprocess

    code = ("import sys, chemlatent.explore.state, chemlatent.explore.selection, "
            "chemlatent.explore.spectrum; "
            "bad = [m for m in ('panel', 'bokeh', 'holoviews') if m in sys.modules]; "
            "print(','.join(bad)); sys.exit(1 if bad else 0)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def test_export_frame_has_verdicts(state):
    state.element_sigma = 0.8
    ids = state.candidates()["star_id"].to_numpy()[:1]
    state.annotate(ids, "candidate", "look again")
    frame = state.export_frame()
    assert isinstance(frame, pd.DataFrame)
    row = frame.set_index("star_id").loc[ids[0]]
    assert row["verdict"] == "candidate" and row["note"] == "look again"


def test_tiled_copy_for_benchmarks_has_unique_ids_and_real_rows(tmp_path, tiny_survey):
    import shutil

    from chemlatent.encode.streaming import encode_survey
    from chemlatent.explore.survey import SurveyData
    from chemlatent.io.store import Survey
    from chemlatent.model.modelio import load_model

    path = tmp_path / "s"
    shutil.copytree(tiny_survey.path, path, ignore=shutil.ignore_patterns("latents", "annotations*"))
    encode_survey(Survey(path), load_model(None))
    data = SurveyData(path, load_model=False)
    big = data.tiled(3)
    assert big.n == 3 * data.n and big.frame["star_id"].is_unique
    assert np.array_equal(big.frame["row"].to_numpy()[: data.n], data.frame["row"].to_numpy())
    assert np.array_equal(big.frame["z_fe"].to_numpy()[: data.n], data.frame["z_fe"].to_numpy())
    assert not np.array_equal(big.frame["z_fe"].to_numpy()[data.n:2 * data.n], data.frame["z_fe"].to_numpy())
    assert np.isfinite(big.frame["score"].to_numpy()).all()
    assert data.n == len(data.frame)  # the original is untouched
