"""Subset re-encoding into runs, the device (torch) feature path, the sparse row reader."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import zarr
from encode_helpers import digest, small_survey

from chemlatent.app.cli import main
from chemlatent.encode.runs import (
    compare_runs,
    encode_subset,
    list_runs,
    merged_latents,
    read_run,
    read_star_ids,
    run_info,
    runs_dir,
)
from chemlatent.encode.streaming import Encoder, read_raw, read_rows_raw
from chemlatent.errors import ChemlatentError
from chemlatent.io.rowreader import plain_chunk_files, take_rows
from chemlatent.model.devicefeatures import chi2_torch, features_torch, pixel_sigma, upload
from chemlatent.model.features import chi2_from_raw, features_from_raw
from chemlatent.model.modelio import BUNDLED_NAME, load_model

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def survey(tiny_survey, tmp_path_factory):
    return small_survey(tiny_survey, tmp_path_factory.mktemp("rein") / "s", n=600)


@pytest.fixture(scope="module")
def full_survey(tiny_survey, tmp_path_factory):
    return small_survey(tiny_survey, tmp_path_factory.mktemp("rein") / "full", n=300, layout="full",
                        encode=False)


@pytest.fixture(scope="module")
def model():
    return load_model(None)


def _base(survey):
    return survey.path / "latents" / f"{BUNDLED_NAME}.parquet"


@pytest.mark.parametrize("layout", ["scaled", "full"])
def test_torch_features_and_chi2_match_numba(layout, survey, full_survey, model):
    s = survey if layout == "scaled" else full_survey
    blk = read_raw(s, 0, 100)
    prof = None if s.ivar_layout == "full" else s._ivar_profile
    dev = upload(blk, CPU)
    sqrt_prof = None if prof is None else torch.from_numpy(prof).sqrt()
    ref = features_from_raw(blk.flux16, mask=blk.mask, scale=blk.scale, profile=prof, ivar=blk.ivar)
    np.testing.assert_allclose(features_torch(dev, sqrt_prof).numpy(), ref, atol=1e-5, rtol=1e-5)
    idx = model.win_all.cpu().numpy()
    rec = np.random.default_rng(0).uniform(0.5, 1.0, (blk.n, idx.size)).astype(np.float32)
    c_ref, n_ref = chi2_from_raw(blk.flux16, idx, rec, mask=blk.mask, scale=blk.scale, profile=prof,
                                 ivar=blk.ivar)
    c, n = chi2_torch(dev, torch.from_numpy(idx), torch.from_numpy(rec),
                      None if prof is None else torch.from_numpy(prof))
    np.testing.assert_array_equal(n.numpy(), n_ref)
    np.testing.assert_allclose(c.numpy(), c_ref, rtol=1e-4)
    sig = pixel_sigma(dev, sqrt_prof).numpy()
    flux, ivar = s.read(0, 100).flux, s.read(0, 100).ivar
    good = ivar > 0
    assert np.all(sig[~good] == 0)
    np.testing.assert_allclose(sig[good], 1 / np.sqrt(ivar[good]), rtol=1e-5)
    assert flux.shape == sig.shape


def test_encoder_torch_path_matches_numba_path(survey, model):
    blk = read_raw(survey, 0, 256)
    a = Encoder(model, survey, precision="fp32", features="numba")(blk)
    b = Encoder(model, survey, precision="fp32", features="torch")(blk)
    assert list(a) == list(b)
    for k in a:
        np.testing.assert_allclose(b[k], a[k], rtol=1e-4, atol=1e-4, err_msg=k)
    assert b["n_good"].dtype == np.int32


def test_sparse_row_reader_matches_zarr(survey, full_survey, tmp_path):
    rows = np.array([0, 1, 2, 63, 64, 65, 200, 301, 302, 599])
    assert plain_chunk_files(survey._flux) is not None  # uncompressed flux: rows read directly
    assert plain_chunk_files(survey._mask) is None  # compressed: zarr reads whole chunks
    np.testing.assert_array_equal(take_rows(survey._flux, rows), np.asarray(survey._flux[:])[rows])
    np.testing.assert_array_equal(take_rows(survey._mask, rows), np.asarray(survey._mask[:])[rows])
    frows = rows[rows < 300]
    full_ivar = np.asarray(full_survey._ivar[:])
    np.testing.assert_array_equal(take_rows(full_survey._ivar, frows), full_ivar[frows])
    blk = read_rows_raw(survey, rows)
    np.testing.assert_array_equal(blk.scale, survey._ivar_scale[rows])
    # a chunk zarr never wrote (all fill value) reads as the fill value, as through zarr
    arr = zarr.create_array(tmp_path / "a.zarr", shape=(40, 5), chunks=(8, 5), dtype="float16",
                            compressors=None, fill_value=1.0)
    arr[:8] = np.arange(40, dtype=np.float16).reshape(8, 5)
    assert plain_chunk_files(arr) is not None
    got = take_rows(arr, np.array([3, 9, 39]))
    np.testing.assert_array_equal(got, np.asarray(arr[:])[[3, 9, 39]])
    assert (got[1:] == 1.0).all()


def test_subset_run_is_new_file_with_provenance(survey):
    base = _base(survey)
    before = digest(base)
    ids = survey.catalog["star_id"].to_numpy()[[5, 70, 71, 400, 599, 5]]
    info = encode_subset(survey.path, ids, device="cpu", batch=2)
    assert digest(base) == before  # nothing replaced
    assert info.path == runs_dir(survey.path) / f"{info.run_id}.parquet" and info.path.exists()
    assert info.n_stars == 5 and info.base == f"{BUNDLED_NAME}.parquet" and info.samples == 0
    meta = run_info(survey.path, info.run_id).meta
    assert meta["model_name"] == BUNDLED_NAME and meta["options"]["batch"] == 2
    assert meta["created"].endswith("Z") and meta["subset"] is True and meta["n_stars"] == 5
    run = read_run(survey.path, info.run_id)
    assert sorted(run["star_id"]) == sorted(set(ids.tolist())) and (run["run"] == info.run_id).all()
    old = pd.read_parquet(base).set_index("star_id").loc[run["star_id"]]
    for c in ("z_fe", "z_c", "z_alpha", "z_fe_std", "chi2", "teff_pred"):
        np.testing.assert_array_equal(run[c].to_numpy(), old[c].to_numpy())  # same model: same numbers
    cmp = compare_runs(survey.path, info.run_id)
    assert list(cmp["star_id"]) == list(run["star_id"]) and cmp["in_base"].all()
    assert (cmp["d_z_fe"] == 0).all() and np.allclose(cmp["z_c_old"], cmp["z_c_new"])
    assert info.run_id in [r.run_id for r in list_runs(survey.path)]
    # another run can be the base of a comparison
    again = encode_subset(survey.path, ids[:2], device="cpu")
    cmp2 = compare_runs(survey.path, again.run_id, base=info.run_id)
    assert len(cmp2) == 2 and (cmp2["d_z_alpha"] == 0).all()
    assert list_runs(survey.path)[0].run_id == again.run_id  # newest first


def test_posterior_samples_give_reproducible_uncertainties(survey):
    ids = survey.catalog["star_id"].to_numpy()[:80]
    a = encode_subset(survey.path, ids, samples=6, seed=3, device="cpu", batch=40)
    b = encode_subset(survey.path, ids, samples=6, seed=3, device="cpu", batch=40)
    c = encode_subset(survey.path, ids, samples=6, seed=4, device="cpu", batch=40)
    ra, rb, rc = (read_run(survey.path, x.run_id) for x in (a, b, c))
    base = pd.read_parquet(_base(survey)).iloc[:80]
    for ax in ("z_fe", "z_c", "z_alpha"):
        np.testing.assert_array_equal(ra[ax], base[ax])  # positions: the observed spectrum's mean
        np.testing.assert_array_equal(ra[f"{ax}_sigma"], base[f"{ax}_std"])  # encoder's own width
        np.testing.assert_array_equal(ra[f"{ax}_std"], rb[f"{ax}_std"])  # same seed, same draws
        assert not np.array_equal(ra[f"{ax}_std"], rc[f"{ax}_std"])
        ratio = ra[f"{ax}_std"] / ra[f"{ax}_sigma"]
        assert (ra[f"{ax}_std"] > 0).all() and 0.9 < np.median(ratio) < 4
        assert np.abs(ra[f"{ax}_mean"] - ra[ax]).median() < 3 * ra[f"{ax}_std"].median()
    assert a.samples == 6 and set(a.median_std) == {"z_fe", "z_c", "z_alpha"}
    assert run_info(survey.path, a.run_id).meta["median_sigma"]["z_fe"] > 0


def test_merged_latents_replace_only_the_run_stars(survey):
    ids = survey.catalog["star_id"].to_numpy()[[10, 20, 30]]
    info = encode_subset(survey.path, ids, samples=4, device="cpu")
    base = pd.read_parquet(_base(survey))
    merged = merged_latents(survey.path, info.run_id)
    assert len(merged) == len(base) and list(merged["star_id"]) == list(base["star_id"])
    hit = merged["star_id"].isin(ids).to_numpy()
    run = read_run(survey.path, info.run_id).set_index("star_id")
    np.testing.assert_array_equal(merged.loc[hit, "z_fe_std"], run.loc[ids, "z_fe_std"])
    assert not np.array_equal(merged.loc[hit, "z_fe_std"], base.loc[hit, "z_fe_std"])
    np.testing.assert_array_equal(merged.loc[~hit, "z_fe_std"], base.loc[~hit, "z_fe_std"])
    assert (merged.loc[hit, "run"] == info.run_id).all() and (merged.loc[~hit, "run"] != info.run_id).all()
    assert merged.loc[~hit, "z_fe_mean"].isna().all() and merged.loc[hit, "z_fe_mean"].notna().all()


def test_failed_or_cancelled_runs_write_nothing(survey, monkeypatch):
    base = _base(survey)
    before, runs_before = digest(base), {p.name for p in runs_dir(survey.path).glob("*")}
    ids = survey.catalog["star_id"].to_numpy()[:200]
    calls = {"n": 0}
    real = Encoder.launch

    def flaky(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("device lost")
        return real(self, *a, **k)

    monkeypatch.setattr(Encoder, "launch", flaky)
    with pytest.raises(RuntimeError, match="device lost"):
        encode_subset(survey.path, ids, device="cpu", batch=32)
    monkeypatch.undo()
    seen = []
    with pytest.raises(ChemlatentError, match="cancelled after 64 of 200"):
        encode_subset(survey.path, ids, device="cpu", batch=32, progress=lambda d, t: seen.append(d),
                      should_stop=lambda: len(seen) >= 2)
    assert {p.name for p in runs_dir(survey.path).glob("*")} == runs_before  # no run, no temp file
    assert digest(base) == before


def test_bad_subsets_are_one_line_errors(survey, tmp_path):
    with pytest.raises(ChemlatentError, match="2 of 3 star_ids are not in"):
        encode_subset(survey.path, [0, 10**9, 10**9 + 1], device="cpu")
    with pytest.raises(ChemlatentError, match="empty"):
        encode_subset(survey.path, [], device="cpu")
    with pytest.raises(ChemlatentError, match="no run 'nope'"):
        read_run(survey.path, "nope")
    with pytest.raises(ChemlatentError, match="not a run id"):
        read_run(survey.path, "../../etc/passwd")
    with pytest.raises(ChemlatentError, match="model directory"):
        encode_subset(survey.path, [0], tmp_path / "no-model", device="cpu")


def test_read_star_ids_formats_and_errors(tmp_path):
    cases = {
        "a.txt": ("# picked by hand\n12\n\n7\n12\n", [12, 7, 12]),
        "b.csv": ("star_id,ra\n3,1.5\n4,2.5\n", [3, 4]),
        "c.tsv": ("ra\tStar_ID\n1\t8\n", [8]),
        "d.txt": ("star_id\n5\n6\n", [5, 6]),
        "e.dat": ("ra dec star_id\n1 2 9\n", [9]),
    }
    for name, (text, want) in cases.items():
        (tmp_path / name).write_text(text)
        assert read_star_ids(tmp_path / name).tolist() == want, name
    pd.DataFrame({"star_id": [1, 2]}).to_parquet(tmp_path / "f.parquet")
    assert read_star_ids(tmp_path / "f.parquet").tolist() == [1, 2]
    bad = {
        "g.txt": ("1\n2\nabc\n", "line 3: 'abc' is not a star_id"),
        "h.csv": ("id,ra\n1,2\n", r"no star_id column \(columns: id, ra\)"),
        "i.csv": ("star_id\n1\n2.5\n", "row 2: star_id '2.5' is not a whole number"),
        "j.txt": ("# nothing\n\n", "lists no star_id"),
    }
    for name, (text, msg) in bad.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(ChemlatentError, match=msg):
            read_star_ids(tmp_path / name)
    (tmp_path / "k.txt").write_bytes(b"\xff\xfe\x00\x81binary")
    with pytest.raises(ChemlatentError, match="not a text file"):
        read_star_ids(tmp_path / "k.txt")
    with pytest.raises(ChemlatentError, match="does not exist"):
        read_star_ids(tmp_path / "missing.txt")


def test_cli_encode_ids(survey, tmp_path, capsys):
    ids = tmp_path / "ids.txt"
    ids.write_text("\n".join(str(i) for i in survey.catalog["star_id"].to_numpy()[::50]))
    before = len(list_runs(survey.path))
    assert main(["encode", str(survey.path), "--ids", str(ids), "--samples", "2", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "wrote run" in out and "12 stars" in out and "from 2 samples" in out
    assert len(list_runs(survey.path)) == before + 1 and list_runs(survey.path)[0].samples == 2
    for argv, msg in [(["--ids", str(tmp_path / "none.txt")], "does not exist"),
                      (["--ids", str(ids), "--scheduler", "local"], "one or the other"),
                      (["--ids", str(ids), "--overwrite"], "replaces nothing")]:
        assert main(["encode", str(survey.path), *argv]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and msg in err[0]


def test_whole_survey_encode_with_samples(survey, tmp_path, model):
    from chemlatent.encode.streaming import encode_survey

    out = encode_survey(survey, model, out_path=tmp_path / "s.parquet", rows=np.arange(50), samples=3,
                        seed=1)
    lat = pd.read_parquet(out)
    base = pd.read_parquet(_base(survey)).iloc[:50]
    np.testing.assert_array_equal(lat["z_c"], base["z_c"])
    np.testing.assert_array_equal(lat["z_c_sigma"], base["z_c_std"])
    assert (lat["z_c_std"] != lat["z_c_sigma"]).all() and lat["z_alpha_mean"].notna().all()
