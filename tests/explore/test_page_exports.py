"""Tables downloaded from the page carry the calibration and the null used, units on every
column that has one (FITS TUNIT, VOTable unit and UCD, the CSV header), and no path on the
server."""

from __future__ import annotations

import io

import pytest
from astropy.io import fits
from astropy.io.votable import parse_single_table

from chemlatent.explore.state import ExplorerState, SurveyData


@pytest.fixture(scope="module")
def state(encoded_tiny, tmp_path_factory):
    data = SurveyData(encoded_tiny, db=str(tmp_path_factory.mktemp("exports") / "a.sqlite"), load_model=False)
    st = ExplorerState(data, element_sigma=1.0)
    assert st.n_flagged > 0
    return st


def _no_server_paths(text: str, state) -> None:
    assert str(state.data.path.resolve()) not in text
    if state.data.model_dir is not None:
        assert str(state.data.model_dir.resolve()) not in text and str(state.data.model_dir) not in text


def test_fits_download(state):
    _, data = state.export("fits")
    with fits.open(io.BytesIO(data)) as hdul:
        h = hdul[1].header
        names = [h[f"TTYPE{i}"] for i in range(1, h["TFIELDS"] + 1)]
        units = {n: h.get(f"TUNIT{i}") for i, n in enumerate(names, start=1)}
        assert units["ra"] == "deg" and units["dec"] == "deg"
        assert h["NULLHYP"] == "frame" and "median/MAD" in h["NULLDESC"]
        assert "CALIB" in h and "NEXPECT" in h
        _no_server_paths(repr(h), state)


def test_votable_download(state):
    _, data = state.export("votable")
    t = parse_single_table(io.BytesIO(data))
    fields = {f.name: f for f in t.fields}
    assert str(fields["ra"].unit) == "deg" and fields["ra"].ucd == "pos.eq.ra;meta.main"
    assert str(fields["dec"].unit) == "deg" and fields["star_id"].ucd == "meta.id;meta.main"
    text = data.decode()
    assert 'name="null" value="frame"' in text and 'name="calibration"' in text
    _no_server_paths(text, state)


def test_csv_download(state):
    _, data = state.export("csv")
    text = data.decode()
    head = [line for line in text.splitlines() if line.startswith("# ")]
    assert any(line.startswith("# null: frame") for line in head)
    assert any(line.startswith("# calibration: ") for line in head)
    assert any("ra=deg" in line and "dec=deg" in line for line in head if line.startswith("# units:"))
    _no_server_paths(text, state)
