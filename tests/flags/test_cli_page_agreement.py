"""``chemlatent flag`` and the dashboard's state flag exactly the same stars for every
preset, unit and threshold, with and without a calibration (one pipeline, see docs/flags.md)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from chemlatent.app.cli import main
from chemlatent.explore.state import ExplorerState, SurveyData
from chemlatent.model.calibration import CALIBRATION_JSON
from chemlatent.model.modelio import bundled_model_dir

SIGMAS = (2.0, 3.0, 4.5)
FE_SIGMAS = (0.5, 1.0, 2.0)
DEX = {"cemp": ((0.7, -1.0), (0.3, -0.5), (1.2, -1.5)), "apmp": ((0.0, -1.0), (0.2, -0.5), (-0.2, -1.5))}
ELEMENT_AXIS = {"cemp": ("c", ">"), "apmp": ("alpha", "<")}


@pytest.fixture(scope="module", params=["calibrated", "uncalibrated"])
def setup(request, encoded_tiny, tmp_path_factory):
    """(survey dir, model dir, state) with the bundled model's calibration or without it."""
    model_dir = bundled_model_dir()
    if request.param == "uncalibrated":
        model_dir = tmp_path_factory.mktemp("model") / model_dir.name
        shutil.copytree(bundled_model_dir(), model_dir, ignore=shutil.ignore_patterns(CALIBRATION_JSON))
    data = SurveyData(encoded_tiny, model=model_dir, load_model=False)
    assert (data.calibration is not None) == (request.param == "calibrated")
    return Path(encoded_tiny), model_dir, ExplorerState(data)


def _cli_ids(survey: Path, model_dir: Path, out: Path, *argv: str) -> np.ndarray:
    code = main(["flag", str(survey), "--model", str(model_dir), "--out", str(out), *argv])
    assert code == 0
    return np.sort(pd.read_csv(out, comment="#")["star_id"].to_numpy(np.int64))


def _header(path: Path) -> dict[str, str]:
    """The ``# key: value`` provenance lines of a CSV export."""
    out = {}
    for line in path.read_text().splitlines():
        if not line.startswith("# "):
            break
        k, _, v = line[2:].partition(": ")
        out[k] = v
    return out


def _page_ids(state: ExplorerState) -> np.ndarray:
    return np.sort(state.data.frame["star_id"].to_numpy(np.int64)[state.flagged])


@pytest.mark.parametrize("name", ["cemp", "apmp"])
def test_sigma_thresholds_agree(setup, name, tmp_path):
    survey, model_dir, state = setup
    for s in SIGMAS:
        for fe in FE_SIGMAS:
            state.param.update(preset=name, unit="sigma", element_sigma=s, fe_sigma=fe, fe_dex=-1.0)
            cli = _cli_ids(survey, model_dir, tmp_path / "out.csv", "--preset", name, "--sigma", str(s),
                           "--fe-sigma", str(fe))
            page = _page_ids(state)
            assert np.array_equal(cli, page), (name, s, fe, cli.size, page.size)
            assert state.counts.n_flagged == cli.size
            # the same expected-by-chance, under the same (recorded) null
            head = _header(tmp_path / "out.csv")
            assert head["null"] == state.counts.null == "frame"
            assert float(head["expected"]) == pytest.approx(state.counts.expected, abs=1e-3)
            # and both say what the latents are
            assert head["latents"] == state.export_meta()["latents"] == "each star's own fit"


@pytest.mark.parametrize("name", ["cemp", "apmp"])
def test_dex_thresholds_agree(setup, name, tmp_path, capsys):
    survey, model_dir, state = setup
    if state.data.calibration is None:
        assert "dex" not in state.param.unit.objects  # the page offers no dex without calibration
        code = main(["flag", str(survey), "--model", str(model_dir), "--out", str(tmp_path / "o.csv"),
                     "--preset", name])
        assert code == 2  # and the command line refuses it in one line
        assert "calibration" in capsys.readouterr().err
        return
    axis, op = ELEMENT_AXIS[name]
    for k, (el, fe) in enumerate(DEX[name]):
        state.param.update(preset=name, unit="dex")
        state.param.update(element_dex=el, fe_dex=fe)
        page = _page_ids(state)
        if k == 0:  # the paper's definition: the preset itself
            cli = _cli_ids(survey, model_dir, tmp_path / "out.csv", "--preset", name)
        else:
            cli = _cli_ids(survey, model_dir, tmp_path / "out.csv", "--rule",
                           f"fe < {fe} dex and {axis} {op} {el} dex")
        assert np.array_equal(cli, page), (name, el, fe, cli.size, page.size)


def test_calibrated_sigma_preset_keeps_metal_poor_in_dex(setup):
    """The decision in docs/flags.md: with a calibrated Fe axis the metal-poor condition
    stays [Fe/H] < -1 dex in the sigma unit; without one it is z_fe in the survey frame."""
    _, _, state = setup
    state.param.update(preset="cemp", unit="sigma", element_sigma=3.0, fe_sigma=1.0, fe_dex=-1.0)
    cond = state.rule.condition
    if state.data.calibration is not None:
        assert (cond.unit, cond.threshold) == ("dex", -1.0)
    else:
        assert (cond.unit, cond.frame, cond.threshold) == ("sigma", "empirical", -1.0)
