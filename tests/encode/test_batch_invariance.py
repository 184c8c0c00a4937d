"""A star's latents do not depend on the other stars encoded with it, the chunk size, --ids,
the thread count or the precision path's kernel choice (tiles of fixed shape)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from encode_helpers import small_survey

from chemlatent.encode.streaming import Encoder, encode_survey, read_rows_raw
from chemlatent.encode.tiles import CPU_TILE, map_tiles
from chemlatent.model.modelio import load_model

N = 600
COLUMNS = ["z_fe", "z_c", "z_alpha", "z_fe_std", "z_c_std", "z_alpha_std", "w_0", "w_1",
           "teff_pred", "logg_pred", "chi2", "n_good"]


@pytest.fixture(scope="module")
def survey(tiny_survey, tmp_path_factory):
    return small_survey(tiny_survey, tmp_path_factory.mktemp("inv") / "s", n=N, encode=False)


@pytest.fixture(scope="module")
def whole(survey, tmp_path_factory):
    out = tmp_path_factory.mktemp("inv") / "whole.parquet"
    return pd.read_parquet(encode_survey(survey, load_model(None), out_path=out)).set_index("star_id")


def _rows_equal(got: pd.DataFrame, ref: pd.DataFrame) -> None:
    ref = ref.loc[got.index]
    for c in COLUMNS:
        np.testing.assert_array_equal(got[c].to_numpy(), ref[c].to_numpy(), err_msg=c)


@pytest.mark.parametrize("precision", ["bf16", "fp32"])
def test_a_rows_result_does_not_depend_on_its_tile_neighbours(precision):
    torch.manual_seed(0)
    layer = torch.nn.Sequential(torch.nn.Linear(300, 64), torch.nn.SiLU(), torch.nn.Linear(64, 5))
    x = torch.randn(1000, 300)

    def fn(t):
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16,
                                                    enabled=precision == "bf16"):
            return (layer(t).float(),)

    full = map_tiles(fn, x, rows=CPU_TILE, workers=2)[0]
    assert full.shape == (1000, 5)
    for sel in (np.array([7]), np.arange(3, 40), np.array([999, 0, 512]), np.arange(0, 1000, 3)):
        for workers in (1, 2):
            part = map_tiles(fn, x[sel], rows=CPU_TILE, workers=workers)[0]
            assert torch.equal(part, full[sel]), (sel[:5], workers)


@pytest.mark.parametrize("chunk", [64, 192, 8192])
def test_whole_survey_encode_is_the_same_for_any_chunk(survey, whole, chunk, tmp_path):
    got = pd.read_parquet(encode_survey(survey, load_model(None), out_path=tmp_path / "c.parquet",
                                        chunk=chunk)).set_index("star_id")
    _rows_equal(got, whole)


def test_ids_subsets_and_single_stars_match_the_whole_survey(survey, whole, tmp_path):
    rng = np.random.default_rng(5)
    rows = np.sort(rng.choice(N, 37, replace=False))
    got = pd.read_parquet(encode_survey(survey, load_model(None), out_path=tmp_path / "s.parquet",
                                        rows=rows)).set_index("star_id")
    assert len(got) == 37
    _rows_equal(got, whole)
    enc = Encoder(load_model(None), survey)
    ids = survey.catalog["star_id"].to_numpy()
    for r in (0, 1, 299, N - 1):  # each star encoded alone
        res = enc(read_rows_raw(survey, np.array([r])))
        alone = pd.DataFrame({"star_id": ids[[r]], **res}).set_index("star_id")
        _rows_equal(alone, whole)


def test_encoding_does_not_depend_on_the_thread_count(survey, whole, tmp_path):
    out = tmp_path / "t1.parquet"
    code = ("import sys, torch; torch.set_num_threads(1); "
            "from chemlatent.io.store import Survey; from chemlatent.encode.streaming import encode_survey; "
            "from chemlatent.model.modelio import load_model; "
            f"encode_survey(Survey({str(survey.path)!r}), load_model(None), out_path={str(out)!r}, "
            "chunk=128)")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)
    _rows_equal(pd.read_parquet(out).set_index("star_id"), whole)


def test_the_tile_pool_leaves_the_process_thread_count_alone(survey):
    before = torch.get_num_threads()
    Encoder(load_model(None), survey)(read_rows_raw(survey, np.arange(10)))
    assert torch.get_num_threads() == before


def test_the_tile_threads_end_with_the_call(survey):
    """Idle threads that ran torch slow every later OpenMP region in the process (each hand-off
    sleeps), so the tile workers live only for one call."""
    import threading

    Encoder(load_model(None), survey)(read_rows_raw(survey, np.arange(600)))
    assert not [t for t in threading.enumerate() if t.name.startswith("chemlatent-tile")]
