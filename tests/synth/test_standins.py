"""Stand-in surveys: the generator with other physics, resolution, grid and populations."""

from __future__ import annotations

import json

import numpy as np
import pytest

from chemlatent.app.cli import main
from chemlatent.errors import ChemlatentError
from chemlatent.spectra.grid import DEFAULT_GRID
from chemlatent.synth.generator import Generator
from chemlatent.synth.populations import sample_labels
from chemlatent.synth.standins import StandIn, grid_for_range


def test_default_standin_changes_nothing():
    idx = np.arange(20)
    a = Generator(5).render(Generator(5).labels(idx))[0]
    b = Generator(5, standin=StandIn()).render(Generator(5).labels(idx))[0]
    assert np.array_equal(a.view(np.uint16), b.view(np.uint16))


def test_line_scatter_resolution_and_bands_change_the_spectra_not_the_labels():
    idx = np.arange(50)
    base, other = Generator(5), Generator(5, standin=StandIn(0.3, 0.3, 1500.0))
    lab = base.labels(idx)
    assert lab.equals(other.labels(idx))
    fa, fb = base.render(lab)[0].astype(np.float32), other.render(lab)[0].astype(np.float32)
    assert np.abs(fa - fb).mean() > 2e-3
    offs = StandIn(0.3).line_offsets(400)
    assert 0.25 < offs.std() < 0.35 and np.array_equal(offs, StandIn(0.3).line_offsets(400))
    assert not np.array_equal(offs, StandIn(0.3, physics_seed=2).line_offsets(400))


def test_teff_tilt_weakens_hot_stars_lines_and_strengthens_cool_ones():
    base, tilted = Generator(5), Generator(5, standin=StandIn(teff_tilt_dex=0.5))
    lab = base.labels(np.arange(200))
    lab["snr"] = 1e4  # depths, not noise
    depth = lambda g: 1.0 - g.render(lab)[0].astype(np.float32).mean(1)  # noqa: E731
    change = depth(tilted) - depth(base)
    hot, cool = lab.teff.to_numpy() > 6200, lab.teff.to_numpy() < 5200
    assert hot.sum() > 5 and cool.sum() > 5
    assert (change[hot] < 0).all() and (change[cool] > 0).all()
    assert StandIn(teff_tilt_dex=0.5).tilt(np.array([5777.0]))[0] == 0.0


def test_weak_lines_add_fe_absorption_that_grows_with_metallicity():
    base, forest = Generator(5), Generator(5, standin=StandIn(weak_lines=3000))
    assert len(forest.ll) == len(base.ll) + 3000 and forest.ll.species[-1] == "Fe I"
    assert (forest.ll.wave[len(base.ll):] < 6000).mean() > 0.5  # denser to the blue
    lab = base.labels(np.arange(200))
    lab["snr"] = 1e4
    extra = (base.render(lab)[0].astype(np.float32) - forest.render(lab)[0].astype(np.float32)).mean(1)
    assert (extra > 0).mean() > 0.8  # (the continuum normalisation can offset a weak forest)
    feh = lab.fe_h.to_numpy()
    assert extra[feh > -0.3].mean() > 2 * extra[feh < -1.5].mean()


def test_population_mix():
    idx = np.arange(20000)
    halo = sample_labels(1, idx, (0.1, 0.1, 0.8))["population"].astype(str).str.startswith("halo").mean()
    assert 0.77 < halo < 0.83
    assert StandIn(mix=(2, 1, 1)).mix == (0.5, 0.25, 0.25)


def test_snr_range_and_shape_change_only_the_snr():
    idx = np.arange(20000)
    base = Generator(5).labels(idx)
    faint = Generator(5, standin=StandIn(snr_range=(8, 100), snr_shape="log")).labels(idx)
    flat = Generator(5, standin=StandIn(snr_range=(8, 100), snr_shape="uniform")).labels(idx)
    assert base.drop(columns="snr").equals(faint.drop(columns="snr"))
    assert base.snr.between(10, 90).all() and 40 < base.snr.median() < 55
    assert faint.snr.between(8, 100).all() and flat.snr.between(8, 100).all()
    assert 25 < faint.snr.median() < 32  # log-uniform: the geometric mean, sqrt(8 * 100)
    assert 0.2 < (faint.snr < 15).mean() < 0.3 and 48 < flat.snr.median() < 60
    # the S/N follows the same uniform draw: a star's rank is kept across shapes
    order = np.argsort(base.snr.to_numpy(), kind="stable")
    assert (np.diff(faint.snr.to_numpy()[order]) > -0.01).all()


@pytest.mark.parametrize("kw", [{"line_scatter_dex": -1}, {"resolution": 50}, {"mix": (1, -1, 1)},
                                {"mix": (1, 1)}, {"teff_tilt_dex": 3}, {"weak_lines": -1},
                                {"snr_range": (50, 20)}, {"snr_range": (0, 20)},
                                {"snr_shape": "gamma"}])
def test_bad_standins_are_refused(kw):
    with pytest.raises(ChemlatentError):
        StandIn(**kw)


def test_grid_for_range():
    g = grid_for_range(3700, 9000)
    assert abs(g.wave[0] - 3700) < 0.5 and g.wave[-1] <= 9000 < g.wave[-1] * 10 ** g.dloglam
    assert g.dloglam == DEFAULT_GRID.dloglam
    with pytest.raises(ChemlatentError):
        grid_for_range(9000, 3700)


def test_generate_writes_a_standin_survey(tmp_path, capsys):
    out = tmp_path / "s"
    assert main(["generate", str(out), "--stars", "64", "--seed", "2", "--line-scatter", "0.3",
                 "--resolution", "1800", "--wave-range", "3700,9000", "--mix", "0.2,0.3,0.5",
                 "--teff-tilt", "0.3", "--snr-range", "8,100", "--snr-shape", "log", "--quiet"]) == 0
    prov = json.loads((out / "survey.json").read_text())
    assert prov["provenance"]["standin"]["snr_range"] == [8.0, 100.0]
    assert prov["provenance"]["standin"]["snr_shape"] == "log"
    assert prov["provenance"]["standin"]["line_scatter_dex"] == 0.3
    assert prov["provenance"]["standin"]["teff_tilt_dex"] == 0.3
    assert prov["provenance"]["resolution"] == 1800.0
    assert abs(10 ** prov["grid"]["loglam0"] - 3700) < 0.5
    assert main(["generate", str(tmp_path / "bad"), "--stars", "8", "--mix", "1,2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--mix needs 3" in err[0]
    assert main(["generate", str(tmp_path / "bad"), "--stars", "8", "--snr-range", "30,10"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "S/N range 30-10" in err[0]
