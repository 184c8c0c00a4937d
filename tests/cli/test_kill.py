"""Faults: ``ingest``, ``encode`` and ``train`` killed (SIGKILL) at a random moment, then rerun.

After the kill nothing that looks finished may be half-written; the rerun (``--resume`` for
training) must give exactly what an uninterrupted run gives. The moment is drawn at random
once the command has started writing; the seed is in every assertion message.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable

import fixtures_ingest as fx
import h5py
import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from chemlatent.app.cli import main
from chemlatent.io.latents import find_latents
from chemlatent.io.store import Survey
from chemlatent.model.modelio import BUNDLED_NAME
from chemlatent.synth.generator import generate_survey

pytestmark = pytest.mark.slow

SEED = int.from_bytes(os.urandom(4), "little")


def cli(*argv) -> list[str]:
    return [sys.executable, "-m", "chemlatent.app.cli", *map(str, argv)]


def kill_at_random_moment(argv: list[str], started: Callable[[], bool], window: float,
                          rng: random.Random, env: dict | None = None) -> tuple[float, bool]:
    """Run ``argv``; once ``started()`` holds, wait a random fraction of ``window`` seconds and
    SIGKILL it. Returns (the delay, whether it was still running when killed)."""
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    try:
        deadline = time.time() + 120
        while not started() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.01)
        delay = rng.uniform(0.0, window)
        time.sleep(delay)
        running = proc.poll() is None
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    err = proc.stderr.read().decode(errors="replace")
    assert running or proc.returncode == 0, f"seed {SEED}: the command failed by itself: {err}"
    return delay, running


@pytest.fixture(scope="module")
def survey(tmp_path_factory) -> Survey:
    return generate_survey(tmp_path_factory.mktemp("kill") / "s", 4000, seed=21, progress=False)


def test_killed_ingest_leaves_nothing_half_written_and_rerun_is_identical(tmp_path):
    rng = random.Random(SEED)
    n, npix = 500, 2500
    wave = 10.0 ** (3.58 + 1e-4 * np.arange(npix))
    noise = np.random.default_rng(1).standard_normal((n, npix))
    src = tmp_path / "many.h5"
    with h5py.File(src, "w") as f:
        f.create_dataset("wavelength", data=wave)
        f.create_dataset("flux", data=(fx.model_flux(wave) + noise).astype(np.float32))
        f.create_dataset("ivar", data=np.ones((n, npix), np.float32))
    out = tmp_path / "survey"
    delay, running = kill_at_random_moment(
        cli("ingest", out, src), lambda: any(tmp_path.glob(".survey.tmp-*")), 4.0, rng)
    msg = f"seed {SEED}, killed {delay:.2f} s in, {'running' if running else 'finished'}"
    if out.exists():  # killed after the rename: then it must be complete
        assert len(Survey(out)) == n, msg
    assert main(["ingest", str(out), str(src)] + (["--overwrite"] if out.exists() else [])) == 0, msg
    assert not any(tmp_path.glob(".survey.tmp-*")), msg  # the killed run's leftovers are gone
    assert main(["ingest", str(tmp_path / "ref"), str(src)]) == 0
    got, ref = Survey(out), Survey(tmp_path / "ref")
    a, b = got.read(0, n), ref.read(0, n)
    np.testing.assert_array_equal(a.flux, b.flux, err_msg=msg)
    np.testing.assert_array_equal(a.ivar, b.ivar, err_msg=msg)
    pd.testing.assert_frame_equal(got.catalog, ref.catalog)


def test_killed_encode_leaves_nothing_half_written_and_rerun_is_identical(survey, tmp_path):
    import shutil

    rng = random.Random(SEED + 1)
    work = tmp_path / "s"
    shutil.copytree(survey.path, work)
    lat = work / "latents" / f"{BUNDLED_NAME}.parquet"
    argv = ["encode", work, "--chunk", "512", "--device", "cpu"]
    delay, running = kill_at_random_moment(
        cli(*argv), lambda: any(lat.parent.glob(f".{BUNDLED_NAME}.parquet.tmp-*")), 1.0, rng)
    msg = f"seed {SEED}, killed {delay:.2f} s in, {'running' if running else 'finished'}"
    if lat.exists():  # killed after the rename: then it must be complete
        assert len(pd.read_parquet(lat)) == survey.n_stars, msg
    assert main([str(a) for a in argv] + (["--overwrite"] if lat.exists() else [])) == 0, msg
    assert find_latents(work).path == lat, msg  # a temporary file is never taken for latents
    assert not list(lat.parent.glob(f".{BUNDLED_NAME}.parquet.tmp-*")), msg  # the killed run's is gone
    ref_dir = tmp_path / "ref"
    shutil.copytree(survey.path, ref_dir)
    assert main(["encode", str(ref_dir), "--chunk", "512", "--device", "cpu"]) == 0
    got = pd.read_parquet(lat).drop(columns="run")
    ref = pd.read_parquet(ref_dir / "latents" / f"{BUNDLED_NAME}.parquet").drop(columns="run")
    pd.testing.assert_frame_equal(got, ref, check_exact=True, obj=msg)


def test_killed_training_resumes_to_the_same_weights(survey, tmp_path):
    """What is guaranteed: on one machine, a run killed and resumed gives bit-identical
    weights to an uninterrupted run of the same options, whatever thread count the resuming
    process starts with (the checkpoint's count is used again) and wherever the process's
    arrays land in memory (strict MKL reproducibility, set by ``import chemlatent``)."""
    rng = random.Random(SEED + 2)
    opts = ["--epochs", "4", "--batch-size", "128", "--hidden", "16", "--max-stars", "800",
            "--device", "cpu", "--seed", "3", "--refine-stars", "200",
            "--refine-encoder", "5"]  # train's defaults, a short refit
    out = tmp_path / "model"
    two_threads = {**os.environ, "OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"}
    delay, running = kill_at_random_moment(
        cli("train", survey.path, "--out", out, *opts),
        lambda: (out / "checkpoint" / "state.json").exists(), 3.0, rng, env=two_threads)
    msg = f"seed {SEED}, killed {delay:.2f} s after the first checkpoint, " \
          f"{'running' if running else 'finished'}"
    one_thread = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    resumed = subprocess.run(cli("train", survey.path, "--out", out, *opts, "--resume"), env=one_thread,
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, f"{msg}: {resumed.stderr[-2000:]}"
    assert "using 2 threads, as the run that wrote the checkpoint did" in resumed.stdout, msg
    assert subprocess.run(cli("train", survey.path, "--out", tmp_path / "ref", *opts), env=two_threads,
                          capture_output=True, timeout=600).returncode == 0
    got = load_file(str(out / "weights.safetensors"))
    ref = load_file(str(tmp_path / "ref" / "weights.safetensors"))
    assert got.keys() == ref.keys()
    for k in ref:
        assert torch.equal(got[k], ref[k]), f"{msg}: {k} differs"
    # the last epoch's state, and the refinement's targets kept for a resumed run
    assert sorted((out / "checkpoint").iterdir()) == [out / "checkpoint" / "refined.safetensors",
                                                        out / "checkpoint" / "state-00004.safetensors",
                                                        out / "checkpoint" / "state.json"], msg
