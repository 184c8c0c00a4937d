"""Real-file ingestion: readers, resampling, normalisation, survey writing, bad files, CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import fixtures_ingest as fx
import numpy as np
import pytest
from astropy.io import fits

from chemlatent.app.cli import main
from chemlatent.errors import FormatError, SurveyError
from chemlatent.io.ingest import (
    RawSpectrum,
    air_to_vacuum,
    expand_inputs,
    ingest_files,
    iter_spectra,
    read_spectrum,
    resample_to_grid,
)
from chemlatent.io.store import Survey
from chemlatent.spectra.grid import DEFAULT_GRID

DATA = Path(__file__).parents[1] / "data"
LAMOST_DR7 = DATA / "spec-55859-F5902_sp01-001_dr7.fits.gz"
LAMOST_DR8 = DATA / "spec-55859-F5902_sp01-013_dr8.fits.gz"
GRID = DEFAULT_GRID
WAVE = GRID.wave


def line_centre(flux: np.ndarray, ivar: np.ndarray, centre: float = fx.LINE,
                half: float = 8.0) -> float:
    """Depth-weighted centroid of an absorption line in a normalised grid spectrum."""
    sel = (WAVE > centre - half) & (WAVE < centre + half) & (ivar > 0)
    depth = np.clip(1.0 - flux[sel], 0, None)
    return float((WAVE[sel] * depth).sum() / depth.sum())


def ingest(tmp_path: Path, *files: Path, **kw) -> tuple[Survey, list]:
    survey, problems = ingest_files(tmp_path / "survey", list(files), **kw)
    assert survey is not None, problems
    return survey, problems


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["ingest", *argv])
    out, err = capsys.readouterr()
    return code, out, err


# --------------------------------------------------------------------------- resampling


def test_resample_aligned_grid_is_exact() -> None:
    """Input pixels on the survey grid itself come through unchanged (flux and ivar)."""
    wave = GRID.wave[100:900]
    flux = np.linspace(5, 9, wave.size)
    ivar = np.linspace(1, 4, wave.size)
    raw = RawSpectrum(wave, flux, ivar, np.zeros(wave.size, bool), {})
    f, iv = resample_to_grid(raw, GRID)
    np.testing.assert_allclose(f[100:900], flux, rtol=1e-6)
    np.testing.assert_allclose(iv[100:900], ivar, rtol=1e-6)
    assert (iv[:100] == 0).all() and (iv[900:] == 0).all()
    assert (f[:100] == 1).all() and (f[900:] == 1).all()


@pytest.mark.parametrize("step", [0.3, 2.5])
def test_resample_ivar_matches_monte_carlo_scatter(step: float) -> None:
    """Propagated ivar equals the scatter of resampled noise (finer and coarser input)."""
    rng = np.random.default_rng(7)
    wave = 4500.0 + step * np.arange(int(600 / step))
    sigma = 0.5 + 0.5 * (wave - wave[0]) / (wave[-1] - wave[0])  # varying noise
    ivar = 1.0 / sigma**2
    draws, prop = [], None
    for _ in range(300):
        raw = RawSpectrum(wave, 10.0 + sigma * rng.standard_normal(wave.size), ivar,
                          np.zeros(wave.size, bool), {})
        f, iv = resample_to_grid(raw, GRID)
        draws.append(f)
        prop = iv
    covered = prop > 0
    emp_var = np.var(np.array(draws)[:, covered], axis=0)
    ratio = emp_var * prop[covered]
    assert abs(np.median(ratio) - 1.0) < 0.1
    assert covered.sum() > 300
    # the gain roughly follows the number of input pixels per output pixel
    px = WAVE[covered] * np.log(10) * GRID.dloglam
    expected = np.interp(WAVE[covered], wave, ivar) * np.maximum(px / step, 1.0)
    assert 0.85 < np.median(prop[covered] / expected) < 1.2


def test_resample_masked_and_uncovered_pixels_contribute_nothing() -> None:
    wave = GRID.wave[200:1200]
    flux = np.full(wave.size, 3.0)
    ivar = np.ones(wave.size)
    ivar[400:410] = 0.0
    flux[400:410] = 1e6  # garbage under the mask
    raw = RawSpectrum(wave, flux, ivar, ivar == 0, {})
    f, iv = resample_to_grid(raw, GRID)
    assert (iv[600:610] == 0).all()
    assert np.allclose(f[iv > 0], 3.0)
    assert (iv[:200] == 0).all() and (iv[1200:] == 0).all()


def test_air_to_vacuum_known_value() -> None:
    # H-alpha: 6562.80 A in air is 6564.61 A in vacuum
    assert abs(float(air_to_vacuum(np.array([6562.80]))[0]) - 6564.61) < 0.02


# --------------------------------------------------------------------------- layouts


def test_sdss_round_trip(tmp_path: Path) -> None:
    path = fx.make_sdss(tmp_path / fx.sdss_name())
    survey, problems = ingest(tmp_path, path)
    assert problems == []
    assert len(survey) == 1
    flux, ivar = survey.spectrum(0)
    assert abs(line_centre(flux, ivar) - fx.LINE) < 0.25  # < 0.25 pixel
    # masked pixels (garbage flux under and_mask) -> ivar 0
    assert (ivar[(WAVE > 6000.5) & (WAVE < 6009.5)] == 0).all()
    # outside coverage -> flux 1, ivar 0
    raw_hi = 10 ** (3.58 + 1e-4 * 4099)
    outside = WAVE > raw_hi + 2
    assert outside.any() and (ivar[outside] == 0).all() and (flux[outside] == 1).all()
    # ivar propagated: normalised ivar ~ input ivar * continuum^2
    good = (ivar > 0) & (np.abs(WAVE - fx.LINE) > 10)
    ratio = ivar[good] / (fx.continuum(WAVE[good]) ** 2 / fx.SIGMA**2)
    assert abs(np.median(ratio) - 1.0) < 0.1
    row = survey.catalog.iloc[0]
    assert row["star_id"] == 0
    assert row["obj_id"] == "1234-55555-0042"
    assert row["source_file"] == fx.sdss_name()
    assert row["format"] == "sdss"
    assert (row["ra"], row["dec"]) == (150.25, 2.5)  # PLUG_RA/DEC, not the plate centre
    assert row["class"] == "STAR" and abs(row["z"] - 1e-4) < 1e-9
    assert 70 < row["snr"] < 130
    meta = json.loads((survey.path / "survey.json").read_text())
    assert meta["ivar_layout"] == "full"
    assert meta["provenance"]["kind"] == "ingested"
    assert meta["provenance"]["files"] == [fx.sdss_name()]
    assert meta["provenance"]["formats"] == {fx.sdss_name(): "sdss"}


def test_sdss_uppercase_columns_and_header_fallback(tmp_path: Path) -> None:
    path = fx.make_sdss(tmp_path / "spec-0266-51602-0003.fits", upper=True, plate=266,
                        mjd=51602, fiber=3)
    raw = read_spectrum(path)
    assert raw.meta["format"] == "sdss" and raw.meta["obj_id"] == "0266-51602-0003"
    assert raw.mask.sum() > 0 and (raw.ivar[raw.mask] == 0).all()


@pytest.mark.parametrize("layout", ["lamost_dr7", "lamost_dr8"])
def test_lamost_layouts(tmp_path: Path, layout: str) -> None:
    path = fx.build(layout, tmp_path)
    raw = read_spectrum(path)
    assert raw.meta["format"] == "lamost"
    assert raw.ivar[-20:].sum() == 0  # zero-flux red padding is not data
    survey, _ = ingest(tmp_path, path)
    flux, ivar = survey.spectrum(0)
    assert abs(line_centre(flux, ivar) - fx.LINE) < 0.25
    assert (ivar[(WAVE > 6500.5) & (WAVE < 6509.5)] == 0).all()  # andmask
    row = survey.catalog.iloc[0]
    obsid = 700001 if layout == "lamost_dr7" else 800001
    assert row["obj_id"] == str(obsid) and row["obsid"] == obsid
    assert row["class"] == "STAR" and row["subclass"] == "G2"
    assert np.isfinite(row["ra"]) and np.isfinite(row["dec"])


def test_real_lamost_files(tmp_path: Path, capsys) -> None:
    out = tmp_path / "lamost"
    code, stdout, err = run_cli(capsys, str(out), str(LAMOST_DR7), str(LAMOST_DR8))
    assert code == 0, err
    survey = Survey(out)
    assert len(survey) == 2
    cat = survey.catalog
    assert list(cat["obj_id"]) == ["101001", "101013"]
    assert list(cat["format"]) == ["lamost", "lamost"]
    for i, path in enumerate((LAMOST_DR7, LAMOST_DR8)):
        hdr = fits.getheader(path, 0)
        assert cat["ra"][i] == pytest.approx(hdr["RA"]) and cat["dec"][i] == pytest.approx(hdr["DEC"])
        assert cat["class"][i] == "STAR" and cat["z"][i] == pytest.approx(hdr["Z"])
        flux, ivar = survey.spectrum(i)
        cov = ivar > 0
        assert np.isfinite(flux).all() and np.isfinite(ivar).all()
        assert abs(np.median(flux[cov]) - 1.0) < 0.1
        # LAMOST covers ~3700-9100 A (red end zero-padded): grid start to ~9040 A
        assert WAVE[cov][0] < 3901 and 9000 < WAVE[cov][-1] < 9100
        assert (ivar[WAVE > 9100] == 0).all() and (flux[WAVE > 9100] == 1).all()
        assert cov.sum() > 3500
        assert cat["snr"][i] > 3
    assert "ingested 2 spectra" in stdout


def test_wcs1d_linear_air_with_error_hdu(tmp_path: Path) -> None:
    path = fx.build("wcs1d_linear", tmp_path)
    raw = read_spectrum(path)
    assert raw.meta["format"] == "wcs1d" and raw.meta["medium"] == "air"
    assert raw.meta["ivar_estimated"] is False
    assert np.allclose(raw.ivar, 1.0 / fx.SIGMA**2)
    assert raw.meta["obj_id"] == "HD 140283"
    assert raw.meta["ra"] == pytest.approx(235.7629, abs=1e-3)  # sexagesimal hours
    survey, _ = ingest(tmp_path, path)
    flux, ivar = survey.spectrum(0)
    # air wavelengths converted: the line is at its vacuum wavelength (air is ~1.4 A bluer)
    assert abs(line_centre(flux, ivar) - fx.LINE) < 0.25
    assert survey.catalog["wave_medium"][0] == "air"


def test_wcs1d_undeclared_medium_uses_option(tmp_path: Path) -> None:
    """A file that says nothing about air/vacuum follows the --medium default."""
    path = fx.make_wcs1d_linear(tmp_path / "undeclared.fits", air=True)
    with fits.open(path, mode="update") as hdul:
        del hdul[0].header["AIRORVAC"]
        hdul[0].header["CTYPE1"] = "LINEAR"
    as_vac = read_spectrum(path)
    as_air = read_spectrum(path, medium="air")
    assert as_vac.meta["medium"] == "vacuum" and as_air.meta["medium"] == "air"
    assert as_air.wave[0] - as_vac.wave[0] == pytest.approx(1.09, abs=0.05)


def test_wcs1d_log_linear_estimates_ivar(tmp_path: Path) -> None:
    path = fx.build("wcs1d_log", tmp_path)
    raw = read_spectrum(path)
    assert raw.meta["format"] == "wcs1d" and raw.meta["ivar_estimated"] is True
    assert raw.meta["obj_id"] == "loglin" and np.isnan(raw.meta["ra"])  # file stem, no coords
    assert raw.wave[0] == pytest.approx(10**3.585)
    # constant ivar from the high-pass scatter: within 10% of the true noise
    assert np.median(raw.ivar) == pytest.approx(1.0 / fx.SIGMA**2, rel=0.1)
    survey, _ = ingest(tmp_path, path)
    flux, ivar = survey.spectrum(0)
    assert abs(line_centre(flux, ivar) - fx.LINE) < 0.25
    assert bool(survey.catalog["ivar_estimated"][0]) is True


@pytest.mark.parametrize("layout", ["fits_rows", "fits_long", "hdf5_rows", "hdf5_long",
                                    "hdf5_compound", "parquet_rows", "parquet_long"])
def test_table_layouts(tmp_path: Path, layout: str) -> None:
    path = fx.build(layout, tmp_path)
    n = fx.ALL_LAYOUTS[layout][3]
    spectra = list(iter_spectra(path))
    assert len(spectra) == n
    wave, _, err = fx.table_spectra(1)
    for s in spectra:
        assert s.meta["format"] == "table"
        assert s.wave[0] == pytest.approx(wave[0]) and s.wave[-1] == pytest.approx(wave[-1])
        assert np.allclose(s.ivar, 1.0 / err[0] ** 2)
    survey, problems = ingest(tmp_path, path)
    assert problems == [] and len(survey) == n
    cat = survey.catalog
    if n == 3:
        assert list(cat["obj_id"]) == list(fx.TABLE_IDS)
        assert list(cat["ra"]) == list(fx.TABLE_RA) and list(cat["dec"]) == list(fx.TABLE_DEC)
        assert list(cat["source_row"]) == [0, 1, 2]
    for i in range(n):
        flux, ivar = survey.spectrum(i)
        assert abs(line_centre(flux, ivar) - fx.LINE) < 0.25
        assert (ivar[WAVE < 4195] == 0).all() and (ivar[WAVE > 6610] == 0).all()
    assert set(cat["source_file"]) == {path.name}


def test_format_auto_detection(tmp_path: Path) -> None:
    for layout, (_, _, fmt, _) in fx.ALL_LAYOUTS.items():
        path = fx.build(layout, tmp_path)
        assert read_spectrum(path).meta["format"] == fmt, layout
    assert read_spectrum(LAMOST_DR7).meta["format"] == "lamost"
    assert read_spectrum(LAMOST_DR8).meta["format"] == "lamost"
    # forcing a format that does not fit gives a clear FormatError
    with pytest.raises(FormatError, match="SDSS"):
        read_spectrum(tmp_path / "linear.fits", fmt="sdss")
    with pytest.raises(FormatError, match="not a FITS file"):
        read_spectrum(tmp_path / "rows.parquet", fmt="lamost")
    # forcing the right one works
    assert read_spectrum(tmp_path / "long.fits", fmt="table").meta["format"] == "table"


def test_streaming_in_small_batches_keeps_order(tmp_path: Path) -> None:
    files = [fx.build("parquet_rows", tmp_path), fx.build("hdf5_rows", tmp_path)]
    survey, _ = ingest(tmp_path, *files, batch=2)
    assert len(survey) == 6
    assert list(survey.catalog["star_id"]) == list(range(6))
    assert list(survey.catalog["obj_id"]) == list(fx.TABLE_IDS) * 2
    a, _ = survey.spectrum(0)
    b, _ = survey.spectrum(3)
    np.testing.assert_array_equal(a, b)  # same star from both files


def test_globs_and_directories(tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    for layout in ("sdss", "lamost_dr8", "parquet_long"):
        fx.build(layout, src)
    (src / "notes.txt").write_text("not a spectrum")
    files, problems = expand_inputs([src, str(src / "*.parquet"), str(tmp_path / "nope*.fits")])
    assert [p.name for p in files] == sorted(["long.parquet", fx.sdss_name(),
                                              "spec-55000-F1_sp01-002.fits.gz"])
    assert problems == [(str(tmp_path / "nope*.fits"), "no files match this pattern")]


# --------------------------------------------------------------------------- bad files


def _bad_corrupt(d: Path) -> Path:
    p = d / "spec-corrupt.fits"
    p.write_bytes(b"\x00\x17garbage" * 500)
    return p


def _bad_truncated(d: Path) -> Path:
    p = fx.make_sdss(d / "spec-truncated.fits")
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    return p


def _bad_empty(d: Path) -> Path:
    p = d / "spec-empty.fits"
    p.write_bytes(b"")
    return p


def _bad_nan(d: Path) -> Path:
    return fx.make_sdss(d / "spec-nan.fits", flux=np.full(4100, np.nan), masked=None)


def _bad_shape(d: Path) -> Path:
    return fx.make_lamost_dr7(d / "spec-shape.fits", rows=2)


def _bad_monotonic(d: Path) -> Path:
    wave, _, _ = fx.table_spectra(1)
    wave = wave.copy()
    wave[100:200] = wave[100:200][::-1]
    return fx.make_parquet_long(d / "spec-unsorted.parquet", wave=wave)


def _bad_layout(d: Path) -> Path:
    p = d / "spec-image.fits"
    fits.PrimaryHDU(np.ones((20, 30), np.float32)).writeto(p)
    return p


def _bad_overlap(d: Path) -> Path:
    return fx.make_wcs1d_linear(d / "spec-uv.fits", start=1200.0, step=0.5, npix=2000)


BAD = {
    "corrupt": (_bad_corrupt, "not a FITS, HDF5 or Parquet file"),
    "truncated": (_bad_truncated, "truncated"),
    "empty": (_bad_empty, "file is empty"),
    "nan": (_bad_nan, "flux is all NaN"),
    "shape": (_bad_shape, "wrong shape"),
    "monotonic": (_bad_monotonic, "not monotonic"),
    "layout": (_bad_layout, "unknown layout"),
    "overlap": (_bad_overlap, "no overlap with the survey grid"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_file_is_skipped_with_one_line(tmp_path: Path, capsys, case: str) -> None:
    make, phrase = BAD[case]
    bad = make(tmp_path)
    good = fx.make_sdss(tmp_path / fx.sdss_name())
    out = tmp_path / "survey"
    code, _, err = run_cli(capsys, str(out), str(bad), str(good))
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 1, err
    assert len(lines) == 1, err
    assert lines[0].startswith(f"chemlatent ingest: skipped {bad}: ")
    assert phrase in lines[0]
    assert "Traceback" not in err
    survey = Survey(out)
    assert len(survey) == 1 and survey.catalog["source_file"][0] == good.name
    prov = json.loads((out / "survey.json").read_text())["provenance"]
    assert prov["files"] == [good.name] and prov["skipped"][0]["file"] == str(bad)


def test_nothing_ingestable_exits_2_without_survey(tmp_path: Path, capsys) -> None:
    bad = [BAD[c][0](tmp_path) for c in ("corrupt", "empty", "nan")]
    out = tmp_path / "survey"
    code, _, err = run_cli(capsys, str(out), *map(str, bad), str(tmp_path / "missing.fits"))
    assert code == 2
    assert not out.exists() and not list(tmp_path.glob(".survey.tmp-*"))
    lines = err.splitlines()
    assert len([ln for ln in lines if "skipped" in ln]) == 4
    assert "nothing could be ingested" in lines[-1] and "Traceback" not in err


def test_all_good_exits_0_and_format_option(tmp_path: Path, capsys) -> None:
    src = tmp_path / "in"
    src.mkdir()
    fx.build("wcs1d_log", src)
    fx.build("wcs1d_linear", src)
    out = tmp_path / "survey"
    code, stdout, err = run_cli(capsys, str(out), str(src), "--format", "wcs1d")
    assert code == 0 and err == ""
    assert "ingested 2 spectra from 2 files" in stdout
    # an existing survey needs --overwrite; then it is replaced
    code, _, err = run_cli(capsys, str(out), str(src))
    assert code == 2 and "--overwrite" in err and err.count("\n") == 1
    code, _, _ = run_cli(capsys, str(out), str(src / "loglin.fit"), "--overwrite")
    assert code == 0 and len(Survey(out)) == 1
    # a forced format that does not fit: one line per file, exit 2
    code, _, err = run_cli(capsys, str(tmp_path / "s2"), str(src), "--format", "lamost")
    assert code == 2 and err.count("skipped") == 2


def test_overwrite_refuses_to_clobber_inputs(tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    fx.build("sdss", src)
    with pytest.raises(SurveyError, match="not a survey"):
        ingest_files(src, [src], overwrite=True)
    survey, _ = ingest(tmp_path, src / fx.sdss_name())
    shutil.copy(src / fx.sdss_name(), survey.path / "copy.fits")
    with pytest.raises(SurveyError, match="inside it"):
        ingest_files(survey.path, [survey.path / "copy.fits"], overwrite=True)
    assert (src / fx.sdss_name()).exists() and (survey.path / "copy.fits").exists()


def test_bad_row_in_table_skips_only_that_row(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    wave, flux, err = fx.table_spectra(2)
    table = pa.table({"wave": [wave.tolist()] * 2,
                      "flux": [flux[0].tolist(), [float("nan")] * wave.size],
                      "error": [e.tolist() for e in err]})
    path = tmp_path / "mixed.parquet"
    pq.write_table(table, path)
    seen = []
    survey, problems = ingest_files(tmp_path / "s", [path], on_error=lambda f, m: seen.append(m))
    assert survey is not None and len(survey) == 1
    assert problems == [(str(path), "row 1: flux is all NaN")] and seen == ["row 1: flux is all NaN"]
