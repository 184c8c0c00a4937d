"""Bad input to every command: one clear line, exit status 2, no traceback, nothing stored changed.

Every case runs the command line in-process against one small survey (made once for the
module) and its damaged copies: corrupt, truncated and empty files, NaN flux, negative
ivar, wrong shapes, unsorted wavelengths, a model on another grid, half-written surveys,
missing latents, absurd option values and paths that do not exist. Each must print exactly
one line on stderr (``chemlatent CMD: error: ...``; ``ingest`` one line per skipped file
and one summary), return 2, and leave every file of the survey and the models as it was.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import fixtures_ingest as fx
import numpy as np
import pytest

from chemlatent.app import cli
from chemlatent.encode.streaming import encode_survey
from chemlatent.errors import ChemlatentError
from chemlatent.model.modelio import BUNDLED_NAME, bundled_model_dir, load_model
from chemlatent.synth.generator import generate_survey

N_STARS = 120  # evaluate needs 100 stars with truth labels


@pytest.fixture(scope="module")
def w(tmp_path_factory) -> dict[str, Path]:
    """A small encoded survey, damaged copies of it, damaged models and damaged files."""
    root = tmp_path_factory.mktemp("bad-input")
    good = generate_survey(root / "good", N_STARS, seed=3, progress=False)
    encode_survey(good, load_model(None))
    p: dict[str, Path] = {"root": root, "good": good.path}

    def copy(name: str) -> Path:
        p[name] = root / name
        shutil.copytree(good.path, p[name])
        return p[name]

    (copy("no_json") / "survey.json").unlink()
    (copy("no_catalog") / "catalog.parquet").unlink()
    chunk = copy("trunc_chunk") / "spectra.zarr" / "flux" / "c" / "0" / "0"
    chunk.write_bytes(chunk.read_bytes()[:1000])
    shutil.rmtree(copy("missing_chunk") / "spectra.zarr" / "flux" / "c" / "0")
    (copy("bad_json") / "survey.json").write_text('{"schema_version": 1, "n_st')
    lat = copy("bad_latents") / "latents" / f"{BUNDLED_NAME}.parquet"
    lat.write_bytes(lat.read_bytes()[:200])
    shutil.rmtree(copy("no_latents") / "latents")
    p["empty_dir"] = root / "empty_dir"
    p["empty_dir"].mkdir()
    (root / "a_file.txt").write_text("keep me\n")

    bundled = bundled_model_dir()
    for name in ("m_trunc", "m_grid", "m_pickle"):
        p[name] = root / name
        shutil.copytree(bundled, p[name])
    weights = p["m_trunc"] / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    cfg = json.loads((p["m_grid"] / "config.json").read_text())
    cfg["grid"]["loglam0"] += 0.0002  # same size, other wavelengths (two pixels: no line leaves the grid)
    (p["m_grid"] / "config.json").write_text(json.dumps(cfg))
    for f in ("config.json", "weights.safetensors"):
        (p["m_pickle"] / f).unlink()
    (p["m_pickle"] / "model.pt").write_bytes(b"\x80\x04K\x01.")  # pickle of 1

    files = root / "files"
    files.mkdir()
    (files / "empty.fits").write_bytes(b"")
    (files / "garbage.fits").write_bytes(b"\x00garbage" * 300)
    sdss = fx.make_sdss(files / "spec-trunc.fits").read_bytes()
    (files / "spec-trunc.fits").write_bytes(sdss[: len(sdss) // 2])
    fx.make_sdss(files / "spec-nan.fits", flux=np.full(4100, np.nan), masked=None)
    fx.make_lamost_dr7(files / "spec-shape.fits", rows=2)
    wave, flux, err = fx.table_spectra(1)
    wave = wave.copy()
    wave[100:200] = wave[100:200][::-1]
    fx.make_parquet_long(files / "unsorted.parquet", wave=wave)
    _negative_ivar_table(files / "negative-ivar.parquet")
    p["files"] = files
    for name, carbon in (("win_off_grid", "wave_base,wave_top\n20000,21000\n"),
                         ("win_garbage", "garbage\n\x01\n")):
        p[name] = root / name
        shutil.copytree(Path(fx.__file__).parents[1] / "assets" / "windows", p[name])
        (p[name] / "carbon_regions.csv").write_text(carbon)
    p["table_trunc"] = root / "labels.parquet"
    p["table_trunc"].write_bytes(b"PAR1" + b"\x00" * 50)
    p["table_empty"] = root / "labels.csv"
    p["table_empty"].write_text("")
    return p


def _negative_ivar_table(path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    wave, flux, _ = fx.table_spectra(1)
    pq.write_table(pa.table({"wave": wave, "flux": flux[0], "ivar": -np.ones(wave.size)}), path)


def snapshot(*dirs: Path) -> dict[str, str]:
    """Every file under ``dirs`` (and the dirs' other contents) with a hash of its bytes."""
    out = {}
    for d in dirs:
        for f in sorted(Path(d).rglob("*")):
            out[str(f)] = hashlib.sha256(f.read_bytes()).hexdigest() if f.is_file() else "dir"
    return out


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    try:
        code = cli.main([str(a) for a in argv])
    except SystemExit as exc:  # argparse errors
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line(code: int, err: str, command: str, phrase: str) -> None:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2, err
    assert len(lines) == 1, err
    assert lines[0].startswith(f"chemlatent {command}: error: "), lines[0]
    assert phrase.lower() in lines[0].lower(), lines[0]
    assert "Traceback" not in err and "internal error" not in err


# --------------------------------------------------------------------------- the cases

# (command, argv with {placeholders} for the fixture paths, phrase the line must contain)
CASES = [
    # generate
    ("generate", "{root}/new --stars 0", "must be positive"),
    ("generate", "{root}/new --stars -5", "must be positive"),
    ("generate", "{root}/new --stars many", "whole number"),
    ("generate", "{root}/new --stars 1000000000000", "beyond what one survey"),
    ("generate", "{root}/new --stars 10 --seed -1", "zero or more"),
    ("generate", "{good} --stars 10", "already exists"),
    ("generate", "{root}/a_file.txt --stars 10 --overwrite", "not a directory"),
    ("generate", "{root}/files --stars 10 --overwrite", "not a survey directory"),
    ("generate", "{root}/a_file.txt/sub --stars 10", "cannot create"),
    # ingest (the per-file lines are checked separately)
    ("ingest", "{good} {files}", "already exists"),
    ("ingest", "{root}/a_file.txt {files} --overwrite", "not a directory"),
    ("ingest", "{root}/new {files} --format fits", "invalid choice"),
    # labels
    ("labels", "{good} {root}/missing.csv", "no such file"),
    ("labels", "{good} {table_trunc}", "unreadable parquet table"),
    ("labels", "{good} {table_empty}", "has no rows"),
    ("labels", "{good} {root}/a_file.txt", "has no rows"),
    ("labels", "{no_catalog} {table_empty}", "no catalog.parquet"),
    ("labels", "{no_json} {table_empty}", "no survey.json"),
    ("labels", "{good} {table_empty} --radius nan", "positive finite"),
    ("labels", "{good} {table_empty} --on name", "invalid choice"),
    ("labels", "{good} {table_empty} --prefix ../x", "--prefix"),
    # train
    ("train", "{root}/nowhere --out {root}/m", "does not exist"),
    ("train", "{no_json} --out {root}/m", "no survey.json"),
    ("train", "{no_catalog} --out {root}/m", "no catalog.parquet"),
    ("train", "{missing_chunk} --out {root}/m", "chunk files are missing"),
    ("train", "{bad_json} --out {root}/m", "not valid JSON"),
    ("train", "{trunc_chunk} --out {root}/m --epochs 1 --hidden 8", "spectra.zarr/flux is damaged"),
    ("train", "{good} --out {root}/m --epochs 0", "must be from 1"),
    ("train", "{good} --out {root}/m --lr nan", "positive finite"),
    ("train", "{good} --out {root}/m --lr 50", "at most 1"),
    ("train", "{good} --out {root}/m --adv-weight nan", "finite number >= 0"),
    ("train", "{good} --out {root}/m --adv-weight -1", "finite number >= 0"),
    ("train", "{good} --out {root}/m --hidden 10000000000", "--hidden sizes"),
    ("train", "{good} --out {root}/m --hidden 8,,8", "comma-separated"),
    ("train", "{good} --out {root}/m --batch-size 0", "must be from 1"),
    ("train", "{good} --out {root}/m --max-stars 3", "must be from 16"),
    ("train", "{good} --out {root}/m --anchors 10 --anchor-columns mg_fe", "unknown column(s) mg_fe"),
    ("train", "{good} --out {root}/m --anchor-columns fe_h", "needs --anchors"),
    ("train", "{good} --out {root}/m --decoder spline", "invalid choice: 'spline'"),
    ("train", "{good} --out {root}/m --prior flat", "invalid choice: 'flat'"),
    ("train", "{good} --out {root}/m --decoder mlp --decoder-pixels all", "needs the line decoders"),
    ("train", "{good} --out {root}/m --decoder-pixels most", "invalid choice: 'most'"),
    ("train", "{good} --out {root}/m --windows {empty_dir}", "iron_regions.csv"),
    ("train", "{good} --out {root}/m --windows {win_off_grid}", "carbon windows cover fewer than 5"),
    ("train", "{good} --out {root}/m --windows {win_garbage}", "need columns wave_base,wave_top"),
    ("train", "{good} --out {good}", "survey directory"),
    ("train", "{good} --out {root}/a_file.txt", "is a file"),
    ("train", "{good} --out {m_grid}", "already holds a model"),
    ("train", "{good} --out {root}/fresh --resume", "no checkpoint"),
    ("train", "{good} --out {root}/m --device tpu", "invalid choice"),
    # encode
    ("encode", "{root}/nowhere", "does not exist"),
    ("encode", "{no_json}", "no survey.json"),
    ("encode", "{no_catalog} --overwrite", "no catalog.parquet"),
    ("encode", "{missing_chunk} --overwrite", "chunk files are missing"),
    ("encode", "{trunc_chunk} --overwrite --device cpu", "spectra.zarr/flux is damaged"),
    ("encode", "{good}", "already exists"),
    ("encode", "{good} --overwrite --model {m_trunc}", "damaged or not a safetensors file"),
    ("encode", "{good} --overwrite --model {m_grid}", "does not match the survey grid"),
    ("encode", "{good} --overwrite --model {m_pickle}", "pickles are refused"),
    ("encode", "{good} --overwrite --model {m_pickle}/model.pt", "pickle"),
    ("encode", "{good} --overwrite --model {root}/no_model", "does not exist"),
    ("encode", "{good} --overwrite --chunk 0", "must be from 1"),
    ("encode", "{good} --overwrite --samples 100000000", "must be from 0 to 64"),
    ("encode", "{good} --scheduler local --workers 1000", "must be from 1 to 256"),
    # evaluate
    ("evaluate", "{root}/nowhere --json", "does not exist"),
    ("evaluate", "{no_catalog} --json", "no catalog.parquet"),
    ("evaluate", "{bad_latents} --json", "not a readable parquet file"),
    ("evaluate", "{good} --json --model {m_trunc}", "damaged or not a safetensors file"),
    ("evaluate", "{good} --json --model {m_grid}", "does not match the survey grid"),
    ("evaluate", "{good} --json --plots {root}/a_file.txt", "is a file"),
    ("evaluate", "{no_latents} --json --model {m_grid}", "does not match the survey grid"),
    # flag
    ("flag", "{root}/nowhere --preset cemp --out {root}/o.csv", "does not exist"),
    ("flag", "{no_latents} --preset cemp --out {root}/o.csv", "run chemlatent encode"),
    ("flag", "{bad_latents} --preset cemp --out {root}/o.csv", "not a readable parquet file"),
    ("flag", "{good} --preset nope --out {root}/o.csv", "unknown preset"),
    ("flag", "{good} --preset cemp --out {root}/o.txt", "cannot tell the format"),
    ("flag", "{good} --preset cemp --sigma nan --out {root}/o.csv", "positive finite"),
    ("flag", "{good} --preset cemp --fdr 1 --out {root}/o.csv", "between 0 and 1"),
    ("flag", "{good} --rule 'fe < < 3' --out {root}/o.csv", "cannot read rule"),
    ("flag", "{good} --rule 'fe < 1e999 dex' --out {root}/o.csv", "finite"),
    ("flag", "{good} --preset cemp --out {root}/a_file.txt/o.csv", "cannot write"),
    ("flag", "{good} --preset cemp --model nomodel --out {root}/o.csv", "no latents for model"),
    # serve (all fail before serving)
    ("serve", "{root}/nowhere", "does not exist"),
    ("serve", "{no_latents}", "run chemlatent encode"),
    ("serve", "{bad_latents}", "not a readable parquet file"),
    ("serve", "{no_catalog}", "no catalog.parquet"),
    ("serve", "{good} --port 70000", "1 to 65535"),
    ("serve", "{good} --port 0", "1 to 65535"),
    ("serve", "{good} --basic-auth short", "at least 12 characters"),
    ("serve", "{good} --allow-websocket-origin http://x/y", "without scheme or path"),
    ("serve", "{good} --max-sessions 0", "must be from 1"),
    # bench
    ("bench", "--stars 0", "must be from 1"),
    ("bench", "--stars 1000000000", "must be from 1"),
    ("bench", "--only everything", "unknown benchmark"),
    ("bench", "--survey {root}/nowhere", "does not exist"),
    ("bench", "--survey {no_latents}", "run chemlatent encode"),
    ("bench", "--copies 1000 --survey {good}", "must be from 1"),
    ("bench", "--workdir {root}/a_file.txt", "is a file"),
    # demo (fail before any work starts)
    ("demo", "--port 0 --no-show", "1 to 65535"),
    ("demo", "--stars 0 --no-show", "must be positive"),
    ("demo", "--no-show --basic-auth short --dir {root}/demo", "at least 12 characters"),
]


def _argv(text: str, w: dict[str, Path]) -> list[str]:
    import shlex

    return shlex.split(text.format(**{k: str(v) for k, v in w.items()}))


@pytest.mark.parametrize("command, args, phrase", CASES,
                         ids=[f"{c}:{a[:48]}" for c, a, _ in CASES])
def test_bad_input_is_one_line_exit_2_and_changes_nothing(w, capsys, command, args, phrase):
    stored = (w["good"], w["m_grid"], w["m_trunc"], w["files"], w["root"] / "a_file.txt")
    before = snapshot(*stored)
    code, out, err = run_cli(capsys, command, *_argv(args, w))
    assert_one_line(code, err, command, phrase)
    assert snapshot(*stored) == before
    for name in ("new", "m", "fresh", "demo", "o.csv"):
        assert not (w["root"] / name).exists()
    assert not list(w["root"].glob(".*.tmp-*"))


def test_ingest_reports_each_bad_file_on_one_line(w, capsys):
    files = sorted(w["files"].iterdir())
    code, _, err = run_cli(capsys, "ingest", w["root"] / "new", *files, w["root"] / "missing.fits")
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2 and "Traceback" not in err
    reasons = {Path(ln.split(": ", 2)[1].removeprefix("skipped ")).name: ln for ln in lines[:-1]}
    expected = {"empty.fits": "file is empty", "garbage.fits": "not a FITS, HDF5 or Parquet",
                "spec-trunc.fits": "truncated", "spec-nan.fits": "flux is all NaN",
                "spec-shape.fits": "wrong shape", "unsorted.parquet": "not monotonic",
                "negative-ivar.parquet": "no usable pixels", "missing.fits": "no such file"}
    assert set(reasons) == set(expected), lines
    for name, phrase in expected.items():
        assert reasons[name].startswith("chemlatent ingest: skipped ") and phrase in reasons[name]
    assert lines[-1].startswith("chemlatent ingest: error: nothing could be ingested")
    assert not (w["root"] / "new").exists() and not list(w["root"].glob(".new.tmp-*"))


def test_resume_with_other_options_is_one_line(w, capsys, tmp_path):
    out = tmp_path / "m"
    base = ["train", w["good"], "--out", out, "--epochs", "1", "--batch-size", "32", "--device", "cpu"]
    code, _, err = run_cli(capsys, *base, "--hidden", "8")
    assert code == 0, err
    before = snapshot(out)
    code, _, err = run_cli(capsys, *base, "--hidden", "8")
    assert_one_line(code, err, "train", "already holds a model")
    code, _, err = run_cli(capsys, *base, "--hidden", "12", "--epochs", "2", "--resume")
    assert_one_line(code, err, "train", "made with other options")
    (out / "checkpoint" / "state.json").write_text("{")
    code, _, err = run_cli(capsys, *base, "--hidden", "8", "--epochs", "2", "--resume")
    assert_one_line(code, err, "train", "damaged")
    del before[str(out / "checkpoint" / "state.json")]
    after = snapshot(out)
    del after[str(out / "checkpoint" / "state.json")]
    assert after == before


def test_evaluate_refuses_latents_of_another_model_with_the_same_name(w, capsys, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(bundled_model_dir(), other)
    weights = load_model(other).state_dict()
    weights["mu.bias"] += 0.1
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in weights.items()}, str(other / "weights.safetensors"))
    code, _, err = run_cli(capsys, "evaluate", w["good"], "--json", "--model", other)
    assert_one_line(code, err, "evaluate", "was written by the model in")


def test_debug_shows_the_traceback(w, capsys):
    for argv in (["--debug", "encode", str(w["root"] / "nowhere")],
                 ["encode", str(w["root"] / "nowhere"), "--debug"]):
        with pytest.raises(ChemlatentError, match="does not exist"):
            cli.main(argv)


def test_unexpected_errors_are_one_internal_error_line(monkeypatch, capsys):
    from chemlatent.app.cli import bench as cmd_bench

    def boom(args):
        raise KeyError("surprise")

    monkeypatch.setattr(cmd_bench, "run", boom)
    code, _, err = run_cli(capsys, "bench", "--stars", "10")
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1
    assert "internal error: KeyError" in lines[0] and "--debug" in lines[0]
    with pytest.raises(KeyError):
        cli.main(["--debug", "bench", "--stars", "10"])


def test_a_survey_that_cannot_fit_on_the_disk_is_refused_before_writing(w, capsys, monkeypatch):
    import collections

    from chemlatent.io import store

    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(store.shutil, "disk_usage", lambda p: usage(10**9, 10**9 - 10**6, 10**6))
    code, _, err = run_cli(capsys, "generate", w["root"] / "new", "--stars", "1000")
    assert_one_line(code, err, "generate", "GB are free there")
    assert not (w["root"] / "new").exists() and not list(w["root"].glob(".new.tmp-*"))


@pytest.mark.parametrize("text, phrase", [
    ("lo,hi\n4000,4100\n", "need columns wave_base,wave_top"),
    ("wave_base,wave_top\n4000,abc\n", "line 2: wave_base/wave_top must be numbers"),
    ("wave_base,wave_top\n4100,4000\n", "line 2: element window 4100.0-4000.0 A is empty or reversed"),
    ("wave_base,wave_top\n", "no windows in it"),
    ("", "need columns wave_base,wave_top"),
    (b"\xff\xfe\x00garbage", "not a readable CSV"),
])
def test_malformed_window_files_give_one_clean_error(tmp_path, text, phrase):
    from chemlatent.spectra.grid import WINDOW_FILES, load_windows

    for name in WINDOW_FILES.values():
        (tmp_path / name).write_text("wave_base,wave_top\n4000,4100\n")
    bad = tmp_path / WINDOW_FILES["c"]
    bad.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(ChemlatentError, match=phrase.replace(".", r"\.")) as err:
        load_windows(tmp_path)
    assert str(bad) in str(err.value)


def test_a_killed_writers_temporary_latents_are_removed_and_a_live_ones_kept(tmp_path):
    import os
    import subprocess
    import sys

    from chemlatent.encode.streaming import LatentsWriter

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    target = tmp_path / "latents" / "m.parquet"
    target.parent.mkdir()
    killed = target.with_name(f".m.parquet.tmp-{int(dead.stdout)}-abcd1234")
    live = target.with_name(f".m.parquet.tmp-{os.getpid()}-ffff0000")
    other = target.with_name(".other.parquet.tmp-1-00000000")
    for p in (killed, live, other):
        p.write_bytes(b"partial")
    w = LatentsWriter(target, {})
    assert not killed.exists() and live.exists() and other.exists()
    w.abort()
    assert not target.exists()


def test_a_demo_whose_first_run_fails_stops_serving_and_exits_2(tmp_path):
    import subprocess
    import sys

    from serving_helpers import free_port

    blocker = tmp_path / "taken"
    blocker.write_text("not a survey")
    free = free_port()
    code = ("import chemlatent.app.cli.demo as d; d.FAILED_GRACE_S = 0.5\n"
            "from chemlatent.app.cli import main\n"
            f"raise SystemExit(main(['demo', '--no-show', '--dir', {str(blocker)!r}, '--stars', '10', "
            f"'--port', '{free}']))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("chemlatent demo: error: first run failed:") and "already exists" in last
    assert "Traceback" not in done.stderr
    assert blocker.read_text() == "not a survey"  # nothing stored was changed
