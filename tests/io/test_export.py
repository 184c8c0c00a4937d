"""Exports: CSV / FITS / VOTable with provenance, in memory, atomic; SAMP broadcast."""

from __future__ import annotations

import io
import json
import os
import threading
from urllib.parse import urlparse
from urllib.request import url2pathname

import numpy as np
import pandas as pd
import pytest
from astropy.table import Table

import chemlatent
from chemlatent.errors import ChemlatentError
from chemlatent.flags.anomaly import compute_scores
from chemlatent.flags.engine import RuleEngine
from chemlatent.flags.presets import preset
from chemlatent.io import export
from chemlatent.io.export import (
    build_export_frame,
    export_bytes,
    export_table,
    format_for,
    provenance,
    send_table_samp,
)
from chemlatent.model.calibration import fit_calibration
from chemlatent.synth.latents import simulate_tables


@pytest.fixture(scope="module")
def candidates():
    lat, cat = simulate_tables(3000, seed=21)
    cal = fit_calibration(lat, cat)
    eng = RuleEngine.from_latents(lat, calibration=cal)
    rule = preset("cemp")
    chosen = lat[eng.mask(rule)].reset_index(drop=True)
    frame = build_export_frame(chosen, scores=compute_scores(chosen, eng.ref), catalog=cat,
                               calibration=cal)
    meta = provenance(survey_path="/data/surveys/sim", model_name="vae-1",
                      model_dir="/models/vae-1", rule=rule,
                      extra={"n_flagged": len(frame), "expected": 1.25})
    return frame, meta, rule


def test_format_for():
    assert format_for("a.CSV") == "csv"
    assert format_for("a.fit") == format_for("b.fits") == "fits"
    assert format_for("a.vot") == format_for("a.xml") == format_for("a.votable") == "votable"
    with pytest.raises(ChemlatentError, match="cannot tell the format"):
        format_for("a.txt")


def test_export_frame_contents(candidates):
    frame, meta, _ = candidates
    assert list(frame.columns[:3]) == ["star_id", "ra", "dec"]
    for col in ["z_fe", "z_c_std", "s_c_cond", "p_enh_c_cond", "mahal_p", "c_fe_cal",
                "c_fe_cal_err", "fe_h", "snr"]:
        assert col in frame.columns
    assert len(frame) > 10
    lat, cat = simulate_tables(50, seed=1)
    cat["ra"] = np.nan  # coordinates not known: no ra/dec columns
    cat["dec"] = np.nan
    f2 = build_export_frame(lat, catalog=cat)
    assert "ra" not in f2.columns and "dec" not in f2.columns and "fe_h_cal" not in f2.columns


def _check_table(t: Table, frame: pd.DataFrame) -> None:
    assert len(t) == len(frame)
    assert np.array_equal(np.asarray(t["star_id"]), frame["star_id"].to_numpy())
    np.testing.assert_allclose(np.asarray(t["z_c"], float), frame["z_c"], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(t["c_fe_cal"], float), frame["c_fe_cal"], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(t["ra"], float), frame["ra"], rtol=1e-12)


def test_fits_roundtrip_with_provenance(candidates, tmp_path):
    from astropy.io import fits

    frame, meta, rule = candidates
    path = export_table(frame, tmp_path / "c.fits", meta)
    t = Table.read(path)
    _check_table(t, frame)
    h = fits.getheader(path, 1)
    assert h["RULE"] == rule.describe()
    assert json.loads(h["RULEJSON"]) == json.loads(rule.to_json())
    assert h["SURVEY"] == str(os.path.abspath("/data/surveys/sim"))
    assert h["MODEL"] == "vae-1" and h["SWVERSN"] == chemlatent.__version__
    assert h["CREATOR"] == "chemlatent" and h["NFLAGGED"] == len(frame)
    assert h["NEXPECT"] == pytest.approx(1.25)
    assert h["DATE"] == meta["created"]
    history = "\n".join(str(x) for x in h["HISTORY"])
    assert "chemlatent" in history and "rule: cemp" in history
    assert len(h["COMMENT"]) >= 1
    assert t["run"][0] == "sim-0"


def test_votable_roundtrip_with_provenance(candidates, tmp_path):
    from astropy.io.votable import parse

    frame, meta, rule = candidates
    for name in ("c.vot", "c.xml"):
        path = export_table(frame, tmp_path / name, meta)
        _check_table(Table.read(path), frame)
    vt = parse(str(tmp_path / "c.vot"))
    infos = {i.name: i.value for i in vt.resources[0].infos}
    assert infos["rule"] == rule.describe()
    assert json.loads(infos["rule_json"]) == json.loads(rule.to_json())
    assert infos["version"] == chemlatent.__version__ and infos["model_name"] == "vae-1"
    params = {p.name: p.value for p in vt.get_first_table().params}
    assert params["n_flagged"] == len(frame)
    desc = {f.name: f.description for f in vt.get_first_table().fields}
    assert "metallicity" in desc["s_c_cond"] or "z_fe" in desc["s_c_cond"]


def test_csv_roundtrip_with_provenance(candidates, tmp_path):
    frame, meta, rule = candidates
    path = export_table(frame, tmp_path / "c.csv", meta)
    lines = path.read_text().splitlines()
    assert lines[0].startswith("# chemlatent")
    comments = [ln for ln in lines if ln.startswith("#")]
    assert f"# rule: {rule.describe()}" in comments
    assert any(ln.startswith("# rule_json: {") for ln in comments)
    assert f"# version: {chemlatent.__version__}" in comments
    t = Table.read(path, format="ascii.csv", comment="#")
    _check_table(t, frame)
    assert any("survey_path" in c for c in t.meta["comments"])
    assert len(Table.read(path, format="ascii")) == len(frame)
    back = pd.read_csv(path, comment="#")
    assert list(back.columns) == list(frame.columns)


def test_in_memory_bytes_match_formats(candidates):
    frame, meta, _ = candidates
    for fmt, reader in [("csv", dict(format="ascii.csv", comment="#")),
                        ("fits", dict(format="fits")), ("votable", dict(format="votable")),
                        (".vot", dict(format="votable"))]:
        data = export_bytes(frame, fmt, meta)
        assert isinstance(data, bytes) and len(data) > 100
        _check_table(Table.read(io.BytesIO(data), **reader), frame)
    with pytest.raises(ChemlatentError):
        export_bytes(frame, "xlsx", meta)


def test_empty_table_exports(candidates, tmp_path):
    frame, meta, _ = candidates
    for ext in ("csv", "fits", "vot"):
        path = export_table(frame.iloc[:0], tmp_path / f"e.{ext}", meta)
        kw = {"format": "ascii.csv", "comment": "#"} if ext == "csv" else {}
        assert len(Table.read(path, **kw)) == 0


def test_awkward_pandas_dtypes(tmp_path):
    df = pd.DataFrame({"star_id": np.arange(4, dtype=np.int64),
                       "pop": pd.Categorical(["halo", "disc", None, "halo"]),
                       "n_obs": pd.array([1, None, 3, 4], dtype="Int64"),
                       "ok": pd.array([True, False, None, True], dtype="boolean"),
                       "note": ["a", None, "c\nd", "\u00e9"]})
    for ext in ("fits", "vot", "csv"):
        path = export_table(df, tmp_path / f"d.{ext}", {"rule": "x"})
        kw = {"format": "ascii.csv", "comment": "#"} if ext == "csv" else {}
        t = Table.read(path, **kw)
        assert list(t["star_id"]) == [0, 1, 2, 3]
        assert str(t["pop"][0]) == "halo"
        if ext != "csv":
            assert t["n_obs"][0] == 1 and np.ma.is_masked(t["n_obs"][1])


def test_write_is_atomic(candidates, tmp_path, monkeypatch):
    frame, meta, _ = candidates
    path = export_table(frame, tmp_path / "c.fits", meta)
    before = path.read_bytes()

    def broken(df, fh, meta):
        fh.write(b"SIMPLE  =   half a file")
        raise OSError("disk full")

    monkeypatch.setitem(export._WRITERS, "fits", broken)
    with pytest.raises(OSError):
        export_table(frame, path, meta)
    assert path.read_bytes() == before  # the old file is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.fits"]  # no temporary left
    with pytest.raises(ChemlatentError, match="directory"):
        export_table(frame, tmp_path, meta, fmt="csv")


# ------------------------------------------------------------------ SAMP


@pytest.fixture()
def samp_hub(tmp_path, monkeypatch):
    """An in-process SAMP hub (standard profile only) found through SAMP_HUB, with a
    receiving client."""
    from samp_helpers import hub_and_topcat

    got: dict = {}
    done = threading.Event()

    def on_load(private_key, sender_id, mtype, params, extra):
        got["load"] = params

    def on_select(private_key, sender_id, mtype, params, extra):
        got["select"] = params
        done.set()

    with hub_and_topcat(tmp_path / "samp-lock", monkeypatch) as receiver:
        receiver.bind_receive_notification("table.load.votable", on_load)
        receiver.bind_receive_notification("table.select.rowList", on_select)
        yield got, done


def test_samp_broadcast_load_and_select(candidates, samp_hub):
    frame, meta, _ = candidates
    got, done = samp_hub
    res = send_table_samp(frame, "cemp candidates", select_rows=[0, 2, 5], hub_timeout=5,
                          meta=meta, select_delay=0.2)
    assert done.wait(10)
    assert got["load"]["url"] == res["url"] and got["load"]["name"] == "cemp candidates"
    assert got["load"]["table-id"] == res["table_id"] == got["select"]["table-id"]
    assert got["select"]["row-list"] == ["0", "2", "5"]
    assert got["select"]["url"] == res["url"]
    assert len(res["loaded_by"]) == 1 and len(res["selected_by"]) == 1
    # the URL points at a VOTable holding the table
    path = url2pathname(urlparse(res["url"]).path)
    t = Table.read(path, format="votable")
    assert np.array_equal(np.asarray(t["star_id"]), frame["star_id"].to_numpy())


def test_samp_without_rows_sends_only_load(candidates, samp_hub):
    frame, _, _ = candidates
    got, done = samp_hub
    res = send_table_samp(Table.from_pandas(frame.head(3)), "three", hub_timeout=5)
    assert res["selected_by"] == []
    assert not done.wait(0.3)
    assert got["load"]["url"] == res["url"]


def test_samp_without_hub_is_one_clear_line(tmp_path, monkeypatch, candidates):
    monkeypatch.setenv("SAMP_HUB", f"std-lockurl:{(tmp_path / 'none').as_uri()}")
    with pytest.raises(ChemlatentError) as exc:
        send_table_samp(candidates[0].head(2), "x", hub_timeout=2)
    assert str(exc.value) == "no SAMP hub is running: start TOPCAT or Aladin, then retry"
