"""``chemlatent labels``: attaching external table columns to a survey catalog."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from astropy.table import Table

from chemlatent.app.cli import main
from chemlatent.errors import ChemlatentError
from chemlatent.io.labels import (
    attach_labels,
    canonical_name,
    find_column,
    parse_rename,
    read_table,
    table_format,
)
from chemlatent.io.store import Survey, SurveyWriter
from chemlatent.spectra.grid import WavelengthGrid

ARCSEC = 1.0 / 3600.0


@pytest.fixture
def survey_dir(tiny_survey, tmp_path) -> Path:
    """A private copy of the session's tiny synthetic survey."""
    path = tmp_path / "survey"
    shutil.copytree(tiny_survey.path, path)
    return path


def _file_survey(path: Path, files: list[str], rows: list[int] | None = None,
                 ra: list[float] | None = None, dec: list[float] | None = None) -> Path:
    """A small ingested-like survey with source_file (and source_row) columns."""
    grid = WavelengthGrid(3.6, 1e-4, 16)
    n = len(files)
    cat = pd.DataFrame({
        "star_id": np.arange(n, dtype=np.int64),
        "source_file": files,
        "source_row": np.asarray(rows if rows is not None else [0] * n, dtype=np.int64),
        "ra": np.asarray(ra if ra is not None else np.linspace(10, 20, n), dtype=np.float64),
        "dec": np.asarray(dec if dec is not None else np.zeros(n), dtype=np.float64),
        "snr": np.full(n, 30.0, np.float32),
    })
    with SurveyWriter(path, grid, chunk_stars=8) as w:
        w.write(0, np.ones((n, grid.npix)), ivar=np.ones((n, grid.npix)))
        w.finish(cat)
    return path


def _catalog(path: Path) -> pd.DataFrame:
    return pd.read_parquet(path / "catalog.parquet")


def _labels_meta(path: Path) -> list[dict]:
    return json.loads((path / "survey.json").read_text()).get("labels", [])


# --------------------------------------------------------------------------- names, formats


def test_aliases_and_formats():
    assert canonical_name("TEFF") == "teff"
    assert canonical_name("[Fe/H]") == "fe_h"
    assert canonical_name("e_[Fe/H]") == "fe_h_err"
    assert canonical_name("RAJ2000") == "ra"
    assert canonical_name("DEJ2000") == "dec"
    assert canonical_name("ALPHA_M") == "alpha_m"  # not an alias: only lower-cased
    assert canonical_name("MyFlag") == "MyFlag"
    assert find_column(["ID", "Teff", "FEH"], "teff") == "Teff"
    assert find_column(["ID", "Teff", "FEH"], "fe_h") == "FEH"
    assert find_column(["obsid", "x"], "obsid") == "obsid"
    assert find_column(["x"], "star_id") is None
    assert table_format("a.csv") == "csv" and table_format("a.TXT") == "csv"
    assert table_format("a.fits.gz") == "fits" and table_format("a.fit") == "fits"
    assert table_format("a.vot") == "votable" and table_format("a.xml") == "votable"
    assert table_format("a.votable") == "votable" and table_format("a.parquet") == "parquet"
    with pytest.raises(ChemlatentError, match="unknown table type"):
        table_format("a.xlsx")
    assert parse_rename("A=b, C = d") == {"A": "b", "C": "d"}
    with pytest.raises(ChemlatentError, match="OLD=NEW"):
        parse_rename("A")


def test_read_csv_comment_header_and_whitespace(tmp_path):
    (tmp_path / "a.csv").write_text("# from a pipeline\n#star_id,TEFF\n1,5000\n2,5100\n")
    df = read_table(tmp_path / "a.csv")
    assert list(df.columns) == ["star_id", "TEFF"] and df["TEFF"].tolist() == [5000, 5100]
    (tmp_path / "b.txt").write_text("star_id  teff   logg\n1  5000  2.5\n2 5100 3.0\n")
    df = read_table(tmp_path / "b.txt")
    assert list(df.columns) == ["star_id", "teff", "logg"] and df["logg"].tolist() == [2.5, 3.0]


@pytest.mark.parametrize("content,match", [
    (None, "no such file"),
    ("", "no rows"),
    ("star_id,teff\n", "no rows"),
])
def test_read_bad_csv(tmp_path, content, match):
    path = tmp_path / "t.csv"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ChemlatentError, match=match):
        read_table(path)


def test_read_unreadable_fits(tmp_path):
    path = tmp_path / "t.fits"
    path.write_bytes(b"this is not a FITS file at all" * 10)
    with pytest.raises(ChemlatentError, match="t.fits"):
        read_table(path)


# --------------------------------------------------------------------------- star_id


def test_star_id_csv_keeps_unmatched_stars(survey_dir):
    before = _catalog(survey_dir)
    keep = before["star_id"].to_numpy()[20:]  # the first 20 stars have no row
    rng = np.random.default_rng(1)
    order = rng.permutation(keep.size)
    table = pd.DataFrame({"STAR_ID": keep[order], "TEFF_PHOT": 4000.0 + keep[order],
                          "quality": np.where(keep[order] % 2 == 0, "A", "B")})
    extra = pd.DataFrame({"STAR_ID": [99999, 99998], "TEFF_PHOT": [1.0, 2.0], "quality": ["C", "C"]})
    path = survey_dir.parent / "phot.csv"
    pd.concat([table, extra]).to_csv(path, index=False)

    res = attach_labels(survey_dir, path)
    assert res.on == "star_id" and res.columns == ["teff_phot", "quality"]
    assert (res.matched, res.n_unmatched, res.table_unmatched) == (1180, 20, 2)
    assert res.summary().startswith("attached teff_phot, quality to 1,180 of 1,200 stars by star_id "
                                    "(20 unmatched: 0, 1, 2, ...); 2 table rows matched no star")

    after = Survey(survey_dir).catalog
    assert len(after) == len(before) and after.columns[0] == "star_id"
    pd.testing.assert_frame_equal(after[before.columns], before)
    assert after["teff_phot"].iloc[:20].isna().all()
    assert np.array_equal(after["teff_phot"].iloc[20:].to_numpy(), 4000.0 + keep)
    assert after["quality"].iloc[:20].isna().all()
    assert (after["quality"].iloc[20:].to_numpy() == np.where(keep % 2 == 0, "A", "B")).all()

    meta = _labels_meta(survey_dir)
    assert len(meta) == 1
    entry = meta[0]
    assert entry["table"] == "phot.csv" and entry["on"] == "star_id"
    assert entry["columns"] == ["teff_phot", "quality"] and entry["matched"] == 1180
    assert entry["time"].endswith("Z")
    assert not list(survey_dir.glob(".*tmp*"))


def test_star_id_parquet_collision_then_overwrite(survey_dir):
    before = _catalog(survey_dir)
    table = pd.DataFrame({"star_id": before["star_id"], "TEFF": np.full(len(before), 5777.0),
                          "LOGG": np.full(len(before), 4.44)})
    path = survey_dir.parent / "pipe.parquet"
    table.to_parquet(path)
    with pytest.raises(ChemlatentError, match="already has teff, logg.*--overwrite-columns"):
        attach_labels(survey_dir, path)
    pd.testing.assert_frame_equal(_catalog(survey_dir), before)
    assert _labels_meta(survey_dir) == []

    res = attach_labels(survey_dir, path, overwrite_columns=True)
    assert res.replaced == ["teff", "logg"] and res.n_unmatched == 0
    after = _catalog(survey_dir)
    assert list(after.columns) == list(before.columns)  # replaced in place
    assert (after["teff"] == 5777.0).all() and (after["logg"] == 4.44).all()
    pd.testing.assert_series_equal(after["fe_h"], before["fe_h"])

    res = attach_labels(survey_dir, path, prefix="ref_", columns=["teff"])
    assert res.columns == ["ref_teff"]
    assert _catalog(survey_dir).columns[-1] == "ref_teff"
    assert len(_labels_meta(survey_dir)) == 2


def test_votable_reference_abundances_with_rename(survey_dir):
    cat = _catalog(survey_dir)
    ids = cat["star_id"].to_numpy()[::10]
    t = Table({"ID": ids.astype(str), "[Fe/H]": cat["fe_h"].to_numpy()[::10],
               "ALPHA_M": cat["alpha_fe"].to_numpy()[::10], "RA": cat["ra"].to_numpy()[::10]})
    path = survey_dir.parent / "hires.vot"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # astropy: "Implicitly generating an ID from a name"
        t.write(path, format="votable")
    with pytest.raises(ChemlatentError, match="no star_id column"):
        attach_labels(survey_dir, path, on="star_id")
    res = attach_labels(survey_dir, path, rename={"ID": "star_id", "ALPHA_M": "alpha_fe_ref"},
                        columns=["[Fe/H]", "ALPHA_M"], prefix="hr_")
    assert res.on == "star_id" and res.columns == ["hr_fe_h", "hr_alpha_fe_ref"]
    assert res.source_columns == ["[Fe/H]", "ALPHA_M"]
    after = _catalog(survey_dir)
    assert after["hr_fe_h"].notna().sum() == len(ids)
    np.testing.assert_allclose(after["hr_fe_h"].to_numpy()[::10], cat["fe_h"].to_numpy()[::10], rtol=1e-6)
    assert after["hr_alpha_fe_ref"].iloc[1:10].isna().all()


def test_duplicate_star_id_is_an_error(survey_dir):
    path = survey_dir.parent / "dup.csv"
    pd.DataFrame({"star_id": [1, 2, 2, 3], "teff_x": [1.0, 2.0, 3.0, 4.0]}).to_csv(path, index=False)
    with pytest.raises(ChemlatentError, match="duplicate star_id in column 'star_id': 2 appears 2 times"):
        attach_labels(survey_dir, path)


def test_no_match_and_no_key_are_errors(survey_dir):
    path = survey_dir.parent / "none.csv"
    pd.DataFrame({"star_id": [-5, -6], "teff_x": [1.0, 2.0]}).to_csv(path, index=False)
    with pytest.raises(ChemlatentError, match="no row of none.csv matched"):
        attach_labels(survey_dir, path)
    path = survey_dir.parent / "nokey.csv"
    pd.DataFrame({"name": ["a"], "teff_x": [1.0]}).to_csv(path, index=False)
    with pytest.raises(ChemlatentError, match="cannot match nokey.csv"):
        attach_labels(survey_dir, path)
    with pytest.raises(ChemlatentError, match="no source_file column"):
        attach_labels(survey_dir, path, on="source_file")


# --------------------------------------------------------------------------- radec


def test_radec_fits_radius_respected(survey_dir):
    cat = _catalog(survey_dir)
    ra, dec = cat["ra"].to_numpy(), cat["dec"].to_numpy()
    rows = np.arange(0, 50)
    t_ra = ra[rows].copy()
    t_dec = dec[rows].copy()
    t_dec[0] += 3.0 * ARCSEC  # 3" away: not matched at 1.5"
    t_dec[1] += 1.0 * ARCSEC  # 1" away: matched
    t = Table({"RAJ2000": t_ra, "DEJ2000": t_dec, "logg_phot": np.arange(50, dtype=np.float32)})
    path = survey_dir.parent / "xmatch.fits"
    t.write(path)
    res = attach_labels(survey_dir, path, dry_run=True)
    assert res.on == "radec" and res.radius_arcsec == 1.5 and not res.written
    assert res.matched == 49 and res.table_unmatched == 1 and res.unmatched_ids[0] == 0
    assert "logg_phot" not in _catalog(survey_dir).columns  # dry run wrote nothing

    res = attach_labels(survey_dir, path, on="radec")
    after = _catalog(survey_dir)
    assert np.isnan(after["logg_phot"].iloc[0]) and after["logg_phot"].iloc[1] == 1.0
    assert np.array_equal(after["logg_phot"].to_numpy()[2:50], np.arange(2, 50))
    assert after["logg_phot"].iloc[50:].isna().all()
    assert "position within 1.5\"" in res.summary()

    res = attach_labels(survey_dir, path, radius_arcsec=4.0, overwrite_columns=True)
    assert res.matched == 50 and _catalog(survey_dir)["logg_phot"].iloc[0] == 0.0
    assert _labels_meta(survey_dir)[-1]["radius_arcsec"] == 4.0


@pytest.mark.parametrize("radius", [0.0, -1.0, float("nan"), 1e4])
def test_absurd_radius(survey_dir, radius):
    cat = _catalog(survey_dir)
    path = survey_dir.parent / "r.csv"
    pd.DataFrame({"ra": cat["ra"][:3], "dec": cat["dec"][:3], "x": [1, 2, 3]}).to_csv(path, index=False)
    with pytest.raises(ChemlatentError, match="radius"):
        attach_labels(survey_dir, path, radius_arcsec=radius)


def test_radec_table_row_goes_to_closest_star(tmp_path):
    # stars 0 and 1 are 1" apart; one table row sits 0.2" from star 1
    path = _file_survey(tmp_path / "s", ["a.fits", "b.fits", "c.fits"],
                        ra=[10.0, 10.0, 30.0], dec=[5.0, 5.0 + ARCSEC, -5.0])
    t = pd.DataFrame({"ra": [10.0, 30.0, 30.0], "dec": [5.0 + 1.2 * ARCSEC, -5.0 + 0.5 * ARCSEC, -5.0],
                      "teff": [4500.0, 6000.0, 6100.0]})
    t.to_csv(tmp_path / "t.csv", index=False)
    res = attach_labels(path, tmp_path / "t.csv", on="radec")
    after = _catalog(path)
    assert np.isnan(after["teff"].iloc[0])  # the row went to the closer star 1
    assert after["teff"].iloc[1] == 4500.0
    assert after["teff"].iloc[2] == 6100.0  # the closer of two rows
    assert res.matched == 2 and res.table_unmatched == 1


def test_radec_sexagesimal_strings(tmp_path):
    path = _file_survey(tmp_path / "s", ["a.fits", "b.fits"], ra=[150.0, 10.0], dec=[-30.5, 2.0])
    (tmp_path / "t.csv").write_text('RA,DEC,teff\n"10:00:00.0","-30:30:00",5000\n')
    res = attach_labels(path, tmp_path / "t.csv")
    assert res.on == "radec" and res.matched == 1
    assert _catalog(path)["teff"].iloc[0] == 5000


# --------------------------------------------------------------------------- source_file


def test_source_file_votable_basenames(tmp_path):
    path = _file_survey(tmp_path / "s", ["spec-1.fits.gz", "spec-2.fits", "spec-3.fits", "spec-4.fits"])
    t = Table({"FILENAME": ["/data/dr8/spec-1.fits", "spec-2.fits.gz", "SPEC-3.fits", "spec-9.fits"],
               "TEFF": [5000.0, 5100.0, 5200.0, 5300.0], "LOGG": [1.0, 2.0, 3.0, 4.0]})
    t.write(tmp_path / "pipe.vot", format="votable")
    res = attach_labels(path, tmp_path / "pipe.vot")
    assert res.on == "source_file" and res.columns == ["teff", "logg"]
    after = _catalog(path)
    assert after["teff"].tolist()[:2] == [5000.0, 5100.0]
    assert after["teff"].iloc[2:].isna().all()  # case-sensitive; spec-4 has no row
    assert res.n_unmatched == 2 and res.unmatched_ids == [2, 3] and res.table_unmatched == 2
    assert list(after["source_file"]) == ["spec-1.fits.gz", "spec-2.fits", "spec-3.fits", "spec-4.fits"]


def test_source_file_duplicates_and_rows(tmp_path):
    path = _file_survey(tmp_path / "s", ["t1.fits", "t1.fits", "t2.fits"], rows=[0, 1, 0])
    (tmp_path / "dup.csv").write_text("source_file,teff\nt2.fits,1\nt2.fits.gz,2\n")
    with pytest.raises(ChemlatentError, match="duplicate source_file.*t2.fits appears 2 times"):
        attach_labels(path, tmp_path / "dup.csv")
    (tmp_path / "multi.csv").write_text("source_file,teff\nt1.fits,1\nt2.fits,2\n")
    with pytest.raises(ChemlatentError, match="share a source_file.*source_row"):
        attach_labels(path, tmp_path / "multi.csv")
    (tmp_path / "rows.csv").write_text("file,source_row,teff\nt1.fits,1,11\nt1.fits,0,10\nt2.fits,0,20\n")
    res = attach_labels(path, tmp_path / "rows.csv")
    assert res.on == "source_file" and res.matched == 3 and res.columns == ["teff"]
    assert _catalog(path)["teff"].tolist() == [10, 11, 20]


# --------------------------------------------------------------------------- command line


def test_cli_success_and_errors(survey_dir, capsys):
    cat = _catalog(survey_dir)
    path = survey_dir.parent / "p.fits"
    Table({"STAR_ID": cat["star_id"].to_numpy()[:-3], "TEFF_SPEC": np.ones(len(cat) - 3)}).write(path)
    assert main(["labels", str(survey_dir), str(path), "--columns", "teff_spec"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out == ["attached teff_spec to 1,197 of 1,200 stars by star_id "
                   "(3 unmatched: 1197, 1198, 1199); every table row matched"]

    # name collision, missing table, absurd radius, no key: one line, exit status 2
    cases = [
        [str(path), "--columns", "teff_spec"],
        [str(survey_dir.parent / "missing.csv")],
        [str(path), "--on", "radec", "--radius", "5000"],
        [str(path), "--on", "source_file"],
        [str(path), "--rename", "nonsense"],
    ]
    for extra in cases:
        assert main(["labels", str(survey_dir), *extra]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("chemlatent labels: error: "), err
    with pytest.raises(SystemExit) as exc:
        main(["labels", str(survey_dir), str(path), "--radius", "-1"])
    assert exc.value.code == 2
    assert len(_labels_meta(survey_dir)) == 1
    assert main(["labels", str(survey_dir), str(path), "--overwrite-columns", "--dry-run"]) == 0
    assert capsys.readouterr().out.startswith("would attach teff_spec")
    assert main(["labels", str(survey_dir / "nope"), str(path)]) == 2
