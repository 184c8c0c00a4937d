"""The survey store: round trips, random access, streaming, damaged directories."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from chemlatent.app.cli import main
from chemlatent.errors import SurveyError
from chemlatent.io.store import Survey, SurveyWriter
from chemlatent.spectra.grid import DEFAULT_GRID, WavelengthGrid


def _write_full(path, n=700, chunk=256):
    rng = np.random.default_rng(0)
    flux = (1 + 0.01 * rng.standard_normal((n, DEFAULT_GRID.npix))).astype(np.float32)
    ivar = rng.uniform(100, 900, (n, DEFAULT_GRID.npix)).astype(np.float32)
    ivar[:, :50] = 0
    with SurveyWriter(path, DEFAULT_GRID, chunk_stars=chunk) as w:
        for s in range(0, n, 300):
            w.append(flux[s:s + 300], ivar=ivar[s:s + 300])
        survey = w.finish(pd.DataFrame({"star_id": np.arange(n), "snr": np.ones(n)}))
    return survey, flux, ivar


def test_full_layout_round_trip(tmp_path):
    survey, flux, ivar = _write_full(tmp_path / "s")
    assert survey.n_stars == 700 and survey.ivar_layout == "full"
    got = survey.read(0, 700)
    np.testing.assert_allclose(got.flux, flux, atol=1e-3)  # float16 storage
    np.testing.assert_array_equal(got.ivar, ivar)
    f, iv = survey.spectrum(333)
    np.testing.assert_allclose(f, flux[333], atol=1e-3)
    rows = np.array([650, 3, 300, 299])
    picked = survey.read_rows(rows)
    np.testing.assert_array_equal(picked.ivar, ivar[rows])
    blocks = list(survey.iter_chunks(chunk=256))
    assert [b.start for b in blocks] == [0, 256, 512]
    assert sum(b.flux.shape[0] for b in blocks) == 700


def test_scaled_profile_layout(tiny_survey):
    c = tiny_survey.read(10, 20)
    prof = tiny_survey._ivar_profile
    scale = tiny_survey._ivar_scale[10:20]
    good = c.ivar > 0
    np.testing.assert_allclose(c.ivar[good], (scale[:, None] * prof[None, :])[good], rtol=1e-6)
    np.testing.assert_allclose(np.sqrt(scale), tiny_survey.catalog["snr"].to_numpy()[10:20], rtol=1e-5)


def test_writer_exception_leaves_nothing(tmp_path):
    target = tmp_path / "s"
    with pytest.raises(RuntimeError):
        with SurveyWriter(target, DEFAULT_GRID) as w:
            w.append(np.ones((5, DEFAULT_GRID.npix), np.float32), ivar=np.ones((5, DEFAULT_GRID.npix)))
            raise RuntimeError("boom")
    assert not target.exists()
    assert not list(tmp_path.iterdir())


def test_existing_target_is_refused_unless_overwrite(tmp_path):
    _write_full(tmp_path / "s", n=10)
    with pytest.raises(SurveyError, match="already exists"):
        SurveyWriter(tmp_path / "s", DEFAULT_GRID)
    survey, _, _ = _write_full_overwrite(tmp_path / "s")
    assert survey.n_stars == 5


def _write_full_overwrite(path):
    with SurveyWriter(path, DEFAULT_GRID, overwrite=True) as w:
        w.append(np.ones((5, DEFAULT_GRID.npix), np.float32), ivar=np.ones((5, DEFAULT_GRID.npix)))
        return w.finish(pd.DataFrame({"star_id": np.arange(5)})), None, None


def test_damaged_directories_give_clear_errors(tmp_path, tiny_survey, capsys):
    with pytest.raises(SurveyError, match="does not exist"):
        Survey(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SurveyError, match="no survey.json"):
        Survey(tmp_path / "empty")
    bad = tmp_path / "bad"
    shutil.copytree(tiny_survey.path, bad)
    (bad / "survey.json").write_text("{not json")
    with pytest.raises(SurveyError, match="not valid JSON"):
        Survey(bad)
    meta = json.loads((tiny_survey.path / "survey.json").read_text())
    meta["n_stars"] = 999
    (bad / "survey.json").write_text(json.dumps(meta))
    with pytest.raises(SurveyError, match="shape"):
        Survey(bad)
    meta["n_stars"] = tiny_survey.n_stars
    (bad / "survey.json").write_text(json.dumps(meta))
    shutil.rmtree(bad / "spectra.zarr" / "flux")
    with pytest.raises(SurveyError, match="missing or damaged"):
        Survey(bad)
    assert main(["encode", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "spectra.zarr" in err[0]


def test_grid_helpers():
    g = WavelengthGrid()
    assert g.matches(WavelengthGrid.from_dict(g.to_dict()))
    assert not g.matches(WavelengthGrid(npix=100))
    assert g.pixel_of(g.wave[100]) == pytest.approx(100)
    assert 68 < g.velocity_per_pixel < 70
