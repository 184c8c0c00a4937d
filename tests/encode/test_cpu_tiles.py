"""The CPU encode path that builds features, runs the model and computes chi2 per tile, the
buffer pool its blocks are read into, and reads into given arrays."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from encode_helpers import small_survey

from chemlatent.encode.buffers import BufferPool
from chemlatent.encode.streaming import Encoder, encode_survey, iter_raw, read_raw, release
from chemlatent.encode.tiles import map_tiles
from chemlatent.io.rowreader import read_range, take_rows
from chemlatent.model.features import chi2_from_raw, features_from_raw
from chemlatent.model.modelio import load_model


@pytest.fixture(scope="module")
def surveys(tiny_survey, tmp_path_factory):
    root = tmp_path_factory.mktemp("cputiles")
    return {"scaled": small_survey(tiny_survey, root / "s", n=600, encode=False),
            "full": small_survey(tiny_survey, root / "f", n=300, layout="full", encode=False)}


@pytest.fixture(scope="module")
def model():
    return load_model(None)


def _block_first(enc: Encoder, blk) -> dict[str, np.ndarray]:
    """The same numbers the way the GPU path orders the work: the whole block's features,
    then the model over tiles, then chi2."""
    kw = {"mask": blk.mask, "scale": blk.scale, "profile": enc.profile, "ivar": blk.ivar}
    x = torch.from_numpy(features_from_raw(blk.flux16, **kw))
    mu, std, w, rec = map_tiles(enc._forward, x, rows=enc.tile, workers=2)
    chi2, ngood = chi2_from_raw(blk.flux16, enc.chi2_idx, rec.numpy(), **kw)
    return {"z": mu.numpy(), "std": std.numpy(), "w": w.numpy(), "chi2": chi2, "n_good": ngood}


@pytest.mark.parametrize("layout", ["scaled", "full"])
def test_per_tile_path_gives_the_block_paths_numbers(layout, surveys, model):
    s = surveys[layout]
    blk = read_raw(s, 0, 300)  # 300 rows: one whole tile of 256 and a padded one
    enc = Encoder(model, s, precision="fp32")
    got = enc(blk)
    ref = _block_first(enc, blk)
    z = np.stack([got["z_fe"], got["z_c"], got["z_alpha"]], 1)
    np.testing.assert_array_equal(z, ref["z"])
    np.testing.assert_array_equal(got["z_alpha_std"], ref["std"][:, 2])
    np.testing.assert_array_equal(got["w_1"], ref["w"][:, 1])
    np.testing.assert_array_equal(got["chi2"], ref["chi2"])
    np.testing.assert_array_equal(got["n_good"], ref["n_good"])
    assert np.all(got["n_good"] > 0)


def test_encoding_reuses_block_memory_and_keeps_every_row(surveys, model, tmp_path):
    s = surveys["scaled"]
    a = encode_survey(s, model, out_path=tmp_path / "a.parquet", chunk=128)  # 5 blocks, reused
    b = encode_survey(s, model, out_path=tmp_path / "b.parquet", chunk=600)  # one block
    da, db = pd.read_parquet(a), pd.read_parquet(b)
    assert len(da) == s.n_stars
    np.testing.assert_array_equal(da["star_id"], s.catalog["star_id"])
    for col in ("z_fe", "z_c", "z_alpha", "chi2"):
        np.testing.assert_array_equal(da[col], db[col], err_msg=col)


def test_released_blocks_are_read_again_into_the_same_memory(surveys):
    s = surveys["scaled"]
    pool = BufferPool()
    seen, ids = [], set()
    for blk in iter_raw(s, 128, prefetch=1, buffers=pool):
        np.testing.assert_array_equal(blk.flux16, np.asarray(s._flux[blk.start:blk.start + blk.n]))
        np.testing.assert_array_equal(blk.mask, np.asarray(s._mask[blk.start:blk.start + blk.n]))
        seen.append(blk.n)
        ids.add(id(blk.flux16))
        release(blk, pool)
    assert sum(seen) == s.n_stars
    assert len(ids) < len(seen)  # memory came back round


def test_pool_hands_back_only_whole_arrays_of_the_asked_shape():
    pool = BufferPool()
    a = pool.take((4, 3), np.float32)
    pool.give(a, a[1:], None)  # a view is not taken back
    assert pool.take((4, 3), np.float32) is a
    assert pool.take((4, 3), np.float32) is not a
    pool.give(a)
    assert pool.take((4, 3), np.float16) is not a
    assert pool.take((3, 4), np.float32) is not a


def test_reads_into_given_arrays_match_zarr(surveys):
    s = surveys["scaled"]
    ref_f, ref_m = np.asarray(s._flux[100:230]), np.asarray(s._mask[100:230])
    out_f, out_m = np.full_like(ref_f, 7), np.full_like(ref_m, 7)
    assert read_range(s._flux, 100, 230, out_f) is out_f  # plain chunk files
    assert read_range(s._mask, 100, 230, out_m) is out_m  # compressed: decoded by zarr
    np.testing.assert_array_equal(out_f, ref_f)
    np.testing.assert_array_equal(out_m, ref_m)
    np.testing.assert_array_equal(read_range(s._mask, 100, 230), ref_m)
    with pytest.raises(ValueError, match="shape"):
        take_rows(s._flux, np.arange(3), np.empty((2, s._flux.shape[1]), np.float16))
