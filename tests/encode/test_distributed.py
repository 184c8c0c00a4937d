"""Whole-survey encoding on a Dask cluster and the latents as a Dask dataframe."""

from __future__ import annotations

import os
import sys
import threading

import cloudpickle
import numpy as np
import pandas as pd
import pytest
from distributed import Client, LocalCluster, WorkerPlugin
from encode_helpers import digest, small_survey

import chemlatent.encode.distributed as dist
from chemlatent.app.cli import main
from chemlatent.encode.distributed import PARTS_DIR, encode_distributed, open_latents_dask, worker_model_loads
from chemlatent.encode.streaming import encode_survey
from chemlatent.errors import ChemlatentError
from chemlatent.model.modelio import BUNDLED_NAME, load_model

cloudpickle.register_pickle_by_value(sys.modules[__name__])  # worker processes need not import tests/

N = 600  # ten 64-star chunks; partitions of 128 stars: five tasks


@pytest.fixture(scope="module")
def survey(tiny_survey, tmp_path_factory):
    return small_survey(tiny_survey, tmp_path_factory.mktemp("dist") / "s", n=N, encode=False)


@pytest.fixture(scope="module")
def reference(survey, tmp_path_factory):
    out = tmp_path_factory.mktemp("dist") / "ref.parquet"
    return pd.read_parquet(encode_survey(survey, load_model(None), out_path=out))


@pytest.fixture(scope="module")
def client():
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=":0") as cl, \
            Client(cl) as c:
        yield c


def _run(survey, client, **kw):
    opts = {"scheduler": client, "device": "cpu", "partition_stars": 128, "overwrite": True, **kw}
    return encode_distributed(survey.path, **opts)


def _same(got: pd.DataFrame, ref: pd.DataFrame) -> None:
    assert list(got.columns) == list(ref.columns) and len(got) == len(ref)
    assert got["star_id"].is_unique
    for c in ref.columns:
        if c != "run":
            np.testing.assert_array_equal(got[c].to_numpy(), ref[c].to_numpy(), err_msg=c)


def test_cluster_encode_equals_local_encode(survey, reference, client):
    res = _run(survey, client)
    assert res.partitions == 5 and res.skipped == 0 and res.n_stars == N
    _same(pd.read_parquet(res.path), reference)
    assert set(worker_model_loads(client).values()) == {1}  # one replica per worker, not per task
    assert not (survey.path / "latents" / PARTS_DIR).exists()
    again = _run(survey, client)
    assert set(worker_model_loads(client).values()) == {1}  # loaded once, reused by the next encode
    _same(pd.read_parquet(again.path), reference)


def test_failed_partition_keeps_the_rest_and_a_rerun_resumes(survey, reference, client, monkeypatch):
    out = survey.path / "latents" / f"{BUNDLED_NAME}.parquet"
    _run(survey, client)
    before = digest(out)
    real = dist.encode_rows
    calls: list[int] = []

    def failing(survey_, model, start, stop, **kw):
        calls.append(start)
        if start == 256:
            raise RuntimeError("disk full")
        return real(survey_, model, start, stop, **kw)

    monkeypatch.setattr(dist, "encode_rows", failing)
    with pytest.raises(ChemlatentError, match="run the same command again to resume"):
        _run(survey, client)
    assert digest(out) == before  # the previous latents are intact
    parts = list((survey.path / "latents" / PARTS_DIR).glob("*/part-*.parquet"))
    assert sorted(p.name for p in parts) == ["part-00000000.parquet", "part-00000002.parquet",
                                             "part-00000006.parquet", "part-00000008.parquet"]
    calls.clear()
    monkeypatch.setattr(dist, "encode_rows", lambda *a, **k: calls.append(a[2]) or real(*a, **k))
    res = _run(survey, client)
    assert calls == [256] and res.skipped == 4  # only the missing partition is encoded
    _same(pd.read_parquet(res.path), reference)


def test_refuses_to_replace_latents_without_overwrite(survey, client):
    _run(survey, client)
    with pytest.raises(ChemlatentError, match="already exists"):
        encode_distributed(survey.path, scheduler=client, device="cpu")


class KillOnce(WorkerPlugin):
    """Kills the worker process the first time any worker starts an encoding task."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def transition(self, key, start, finish, **kw):
        if finish == "executing" and "chemlatent-encode" in str(key):
            try:
                os.close(os.open(self.marker, os.O_CREAT | os.O_EXCL))
            except FileExistsError:
                return
            os._exit(1)


@pytest.mark.slow
def test_a_killed_worker_loses_no_partition_and_duplicates_none(survey, reference, tmp_path):
    marker = tmp_path / "killed"
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cl, \
            Client(cl) as c:
        c.register_plugin(KillOnce(str(marker)))
        res = encode_distributed(survey.path, scheduler=c, device="cpu", partition_stars=64, overwrite=True)
        assert marker.exists()  # a worker really died mid-run
        loads = worker_model_loads(c)
    assert res.partitions == 10
    _same(pd.read_parquet(res.path), reference)
    assert set(loads.values()) == {1}  # the restarted worker loaded its own replica once


def test_open_latents_dask_joins_the_catalog(survey, client):
    _run(survey, client)
    lat = pd.read_parquet(survey.path / "latents" / f"{BUNDLED_NAME}.parquet").drop(columns="run")
    want = lat.merge(survey.catalog, on="star_id", how="left")
    ddf = open_latents_dask(survey.path)
    got = ddf.compute().sort_values("star_id").reset_index(drop=True)
    assert set(got.columns) == set(want.columns)
    pd.testing.assert_frame_equal(got[want.columns], want, check_dtype=False)
    url = open_latents_dask(f"file://{survey.path}").compute()  # any fsspec URL
    pd.testing.assert_frame_equal(url.sort_values("star_id").reset_index(drop=True)[want.columns], want,
                                  check_dtype=False)
    sub = open_latents_dask(survey.path, columns=["z_fe"], catalog_columns=["snr"]).compute()
    assert sorted(sub.columns) == ["snr", "star_id", "z_fe"] and len(sub) == N
    # an unsorted latents file still joins (through a shuffle)
    lat.iloc[::-1].to_parquet(survey.path / "latents" / "shuffled.parquet", index=False)
    got2 = open_latents_dask(survey.path, "shuffled").compute().sort_values("star_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(got2[want.columns], want, check_dtype=False)
    (survey.path / "latents" / "shuffled.parquet").unlink()


def test_cli_scheduler_address(survey, reference, client, capsys):
    addr = client.scheduler.address
    assert main(["encode", str(survey.path), "--scheduler", addr, "--chunk", "256", "--overwrite",
                 "--device", "cpu"]) == 0
    assert "3 partitions" in capsys.readouterr().out
    _same(pd.read_parquet(survey.path / "latents" / f"{BUNDLED_NAME}.parquet"), reference)
    assert main(["encode", str(survey.path), "--scheduler", "tcp://127.0.0.1:9", "--overwrite"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot reach the Dask scheduler" in err[0]


def test_progress_counts_every_star_once(survey, client):
    seen = []
    lock = threading.Lock()

    def progress(n):
        with lock:
            seen.append(n)

    _run(survey, client, progress=progress)
    assert sum(seen) == N
