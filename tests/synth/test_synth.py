"""The synthetic generator: physics, noise, determinism, populations, atomic writes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
from scipy.ndimage import median_filter

from chemlatent.app.cli import main
from chemlatent.io.store import Survey
from chemlatent.synth.generator import Generator, generate_survey
from chemlatent.synth.populations import sample_labels


def _stars(gen: Generator, snr: float = 3000.0, **columns) -> pd.DataFrame:
    """Labels of a few stars differing only in the given columns (lists of equal length)."""
    n = len(next(iter(columns.values())))
    base = gen.labels(np.arange(1)).iloc[[0] * n].reset_index(drop=True)
    base["star_id"] = np.arange(n)
    base["snr"] = np.float32(snr)
    base["rv_residual"] = np.float32(0.0)
    base["n_fe"] = np.float32(0.0)
    for k, v in columns.items():
        base[k] = np.asarray(v, dtype=np.float32)
    return base


def _depth(gen: Generator, flux: np.ndarray, lo: float, hi: float) -> np.ndarray:
    w = gen.grid.wave
    sel = (w >= lo) & (w <= hi)
    return 1.0 - flux[:, sel].astype(np.float64).mean(axis=1)


@pytest.fixture(scope="module")
def gen() -> Generator:
    return Generator(seed=5)


def test_cemp_stars_have_deeper_carbon_features(gen):
    common = dict(teff=[4800] * 2, logg=[1.8] * 2, fe_h=[-2.5] * 2, alpha_fe=[0.4] * 2, vmicro=[1.8] * 2)
    flux, _ = gen.render(_stars(gen, c_fe=[0.0, 2.0], **common))
    g_band = _depth(gen, flux, 4290, 4318)
    swan = _depth(gen, flux, 5130, 5166)
    assert g_band[1] > g_band[0] + 0.05
    assert swan[1] > swan[0] + 0.005


def test_alpha_rich_stars_have_deeper_mg_b_and_ca_triplet(gen):
    common = dict(teff=[5000] * 2, logg=[2.5] * 2, fe_h=[-1.0] * 2, c_fe=[0.0] * 2, vmicro=[1.5] * 2)
    flux, _ = gen.render(_stars(gen, alpha_fe=[-0.1, 0.4], **common))
    assert _depth(gen, flux, 5165, 5190)[1] > _depth(gen, flux, 5165, 5190)[0] + 0.01
    assert _depth(gen, flux, 8530, 8555)[1] > _depth(gen, flux, 8530, 8555)[0] + 0.005


def test_cooler_stars_have_stronger_metal_lines(gen):
    common = dict(logg=[4.4] * 2, fe_h=[-0.5] * 2, c_fe=[0.0] * 2, alpha_fe=[0.1] * 2, vmicro=[1.0] * 2)
    flux, _ = gen.render(_stars(gen, teff=[4800, 5900], **common))
    fe_region = _depth(gen, flux, 5320, 5460)
    assert fe_region[0] > fe_region[1] * 1.3


def test_metal_rich_stars_have_stronger_lines(gen):
    common = dict(teff=[5500] * 2, logg=[4.3] * 2, c_fe=[0.0] * 2, alpha_fe=[0.0] * 2, vmicro=[1.0] * 2)
    flux, _ = gen.render(_stars(gen, fe_h=[-2.0, 0.0], **common))
    assert _depth(gen, flux, 4400, 4600)[1] > _depth(gen, flux, 4400, 4600)[0] * 2


def test_temperature_and_gravity_move_the_chemical_pixels(gen):
    """Confounding: the carbon and alpha windows change with Teff and logg at fixed abundances."""
    common = dict(fe_h=[-1.0] * 3, c_fe=[0.3] * 3, alpha_fe=[0.3] * 3, vmicro=[1.5] * 3)
    flux, _ = gen.render(_stars(gen, teff=[4600, 5600, 5600], logg=[2.5, 2.5, 4.5], **common))
    gb = _depth(gen, flux, 4290, 4318)
    mgb = _depth(gen, flux, 5165, 5190)
    assert abs(gb[0] - gb[1]) > 0.02
    assert abs(mgb[1] - mgb[2]) > 0.01


def test_measured_noise_matches_ivar(gen):
    lab = gen.labels(np.arange(40))
    noisy, mask = gen.render(lab)
    clean_lab = lab.copy()
    clean_lab["snr"] = np.float32(1e5)
    clean, _ = gen.render(clean_lab)
    ivar = gen.ivar(lab, mask)
    resid = noisy.astype(np.float64) - clean.astype(np.float64)
    # the continuum fit differs a little between a noisy and a clean spectrum (as in real
    # pipelines); remove that smooth part before comparing the noise with ivar
    smooth = median_filter(resid, size=(1, 61), mode="nearest")
    pulls = (resid - smooth) * np.sqrt(ivar)
    good = ivar > 0
    std = pulls[good].std()
    assert 0.95 < std < 1.05
    assert abs(pulls[good].mean()) < 0.05


def test_regenerating_star_i_gives_the_same_spectrum(tiny_survey):
    gen = Generator(seed=11)
    for i in (0, 517, 1199):
        flux, ivar, labels = gen.spectrum(i)
        f2, iv2 = tiny_survey.spectrum(i)
        np.testing.assert_array_equal(flux, f2)
        np.testing.assert_allclose(ivar, iv2, rtol=1e-6)
        assert labels["teff"] == tiny_survey.catalog.loc[i, "teff"]


def test_labels_do_not_depend_on_chunking():
    a = sample_labels(3, np.arange(100, 200))
    b = sample_labels(3, np.array([150]))
    pd.testing.assert_series_equal(a.iloc[50].drop("star_id"), b.iloc[0].drop("star_id"), check_names=False)


def test_population_statistics():
    lab = sample_labels(1, np.arange(200_000))
    mp2 = lab["fe_h"] < -2
    cemp_frac = (lab.loc[mp2, "c_fe"] > 0.7).mean()
    assert 0.1 < cemp_frac < 0.5  # tens of per cent below [Fe/H] = -2
    assert (lab.loc[lab["fe_h"] > -0.5, "c_fe"] > 0.7).mean() < 0.02
    assert lab["snr"].between(10, 90).all()
    assert 35 < lab["snr"].median() < 55
    assert lab["teff"].between(3800, 7000).all() and lab["logg"].between(0.5, 5.0).all()
    assert lab["fe_h"].min() < -3.2 and lab["fe_h"].max() > 0.3
    apmp = (lab["fe_h"] < -1) & (lab["alpha_fe"] < 0)
    assert apmp.sum() > 1000
    thick = lab["population"] == "thick_disc"
    thin = lab["population"] == "thin_disc"
    assert lab.loc[thick, "alpha_fe"].mean() > lab.loc[thin, "alpha_fe"].mean() + 0.15
    giants = lab["logg"] < 3.5
    assert 0.25 < giants.mean() < 0.6


def test_generated_survey_layout(tiny_survey):
    s = tiny_survey
    assert s.n_stars == 1200
    assert 4000 <= s.grid.npix <= 4300
    assert s.grid.wave[0] == pytest.approx(3900, abs=2) and s.grid.wave[-1] == pytest.approx(10400, abs=5)
    cat = s.catalog
    assert list(cat.columns[:1]) == ["star_id"]
    for col in ("snr", "ra", "dec", "teff", "logg", "fe_h", "c_fe", "alpha_fe", "population"):
        assert col in cat.columns
    chunk = s.read(0, 300)
    assert chunk.flux.dtype == np.float32 and np.isfinite(chunk.flux).all()
    bad = chunk.ivar == 0
    assert 0 < bad.mean() < 0.01  # a few masked pixels
    assert abs(np.median(chunk.flux) - 0.99) < 0.03


def test_generate_command(tmp_path, capsys):
    out = tmp_path / "s"
    assert main(["generate", str(out), "--stars", "300", "--seed", "2", "--quiet"]) == 0
    assert Survey(out).n_stars == 300
    assert main(["generate", str(out), "--stars", "300", "--quiet"]) == 2  # exists
    assert "already exists" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["generate", str(tmp_path / "t"), "--stars", "-5"])
    assert exc.value.code == 2


@pytest.mark.slow
def test_killed_generate_leaves_no_survey_and_rerun_is_identical(tmp_path):
    target = tmp_path / "big"
    proc = subprocess.Popen([sys.executable, "-m", "chemlatent.app.cli", "generate", str(target),
                             "--stars", "400000", "--quiet"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline and not any(tmp_path.glob(".big.tmp-*")):
        time.sleep(0.1)
    time.sleep(1.5)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not target.exists()  # nothing that looks complete
    generate_survey(target, 700, seed=0, progress=False)
    assert not any(tmp_path.glob(".big.tmp-*"))  # the stale temporary was cleaned up
    ref = generate_survey(tmp_path / "ref", 700, seed=0, progress=False)
    np.testing.assert_array_equal(Survey(target).read(0, 700).flux, ref.read(0, 700).flux)
