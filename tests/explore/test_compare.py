"""Differential spectrum of two star sets: statistics, feature identification, the command
line and a synthetic survey where the answer is known (CEMP vs metal-poor normal stars)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from chemlatent.app.cli import main
from chemlatent.errors import ChemlatentError
from chemlatent.explore.compare import compare_sets, identify
from chemlatent.explore.starsets import read_star_ids
from chemlatent.flags.statistics import benjamini_hochberg, bh_qvalues
from chemlatent.io.annotations import open_annotations


def _cemp_sets(catalog: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """True CEMP stars, and metal-poor normal stars matched to them in Teff, logg and [Fe/H]
    (the 4 nearest of each), so that what differs is carbon."""
    from sklearn.neighbors import NearestNeighbors

    mp = catalog["fe_h"].to_numpy() < -1
    c = catalog["c_fe"].to_numpy()
    a, normal = mp & (c > 0.7), mp & (c < 0.3)
    x = np.c_[catalog["teff"] / 150, catalog["logg"] / 0.3, catalog["fe_h"] / 0.1]
    _, k = NearestNeighbors(n_neighbors=4).fit(x[normal]).kneighbors(x[a])
    b = np.zeros(len(catalog), bool)
    b[np.flatnonzero(normal)[k.ravel()]] = True
    return a, b


def test_bh_qvalues_agree_with_the_step_up():
    rng = np.random.default_rng(1)
    p = np.r_[rng.uniform(0, 1, 300), rng.uniform(0, 1e-4, 30), np.nan]
    q = bh_qvalues(p)
    assert np.isnan(q[-1]) and np.all((q[:-1] >= p[:-1]) & (q[:-1] <= 1))
    for level in (0.01, 0.05, 0.2):
        rejected, _ = benjamini_hochberg(p, level)
        assert np.array_equal(rejected, q <= level)


def test_identify_lines_bands_and_groups():
    names, groups = identify([4313.2, 4773.1, 5160.0, 6000.0])
    assert names[0] == "CH G band 4315" and groups[0] == "c"
    assert names[1].startswith("C I") and groups[1].startswith("c")
    assert "C2 Swan band 5166" in names[2]
    assert names[3] == "" and groups[3] == ""


@pytest.fixture(scope="module")
def survey5k(tmp_path_factory):
    """5,000 synthetic stars (about 150 true CEMP stars)."""
    from chemlatent.synth.generator import generate_survey

    return generate_survey(tmp_path_factory.mktemp("cmp") / "s5k", 5000, seed=3, chunk=512,
                           progress=False)


@pytest.fixture(scope="module")
def standin5k(tmp_path_factory):
    """5,000 stars of a stand-in survey: every line and band strength off by ~0.3 dex, R 1800,
    3700-9000 A, a halo-rich mix (the physics differs from the default generator's)."""
    from chemlatent.synth.generator import generate_survey
    from chemlatent.synth.standins import StandIn, grid_for_range

    standin = StandIn(line_scatter_dex=0.3, band_scatter_dex=0.3, resolution=1800.0,
                      mix=(0.3, 0.25, 0.45), physics_seed=7)
    return generate_survey(tmp_path_factory.mktemp("cmp") / "si5k", 5000, seed=5, chunk=512,
                           progress=False, grid=grid_for_range(3700, 9000), standin=standin)


@pytest.mark.slow
def test_carbon_bands_lead_on_a_stand_in_survey(standin5k):
    cat = standin5k.catalog
    a, b = _cemp_sets(cat)
    top = compare_sets(standin5k, np.arange(len(cat)), a, b).features(5)
    assert top["feature"].iloc[0] == "CH G band 4315"
    assert {"C2 Swan band 5166", "C2 Swan band 4738", "C2 Swan band 5636"} <= set(top["feature"])


@pytest.mark.slow
def test_cemp_against_metal_poor_normal_stars(survey5k):
    cat = survey5k.catalog
    a, b = _cemp_sets(cat)
    assert a.sum() >= 100
    comp = compare_sets(survey5k, np.arange(len(cat)), a, b, label_a="CEMP", label_b="normal")
    top = comp.features(8)
    # the CH G band and the three C2 Swan bands lead: the largest significant changes in
    # absorbed flux, all deeper in the carbon stars
    assert top["feature"].iloc[0] == "CH G band 4315"
    lead = set(top["feature"].iloc[:5])
    assert {"C2 Swan band 5166", "C2 Swan band 4738", "C2 Swan band 5636"} <= lead
    assert lead <= {"CH G band 4315", "CH band 4367", "C2 Swan band 5166", "C2 Swan band 4738",
                    "C2 Swan band 5636"}
    assert (top["d_ew"].iloc[:5] > 0).all() and top["d_ew"].iloc[0] > 2.0  # A of extra absorption
    assert (top["q"] < 0.05).all()
    assert all("c" in g.split(" / ") for g in top["group"].iloc[:5])
    # by significance alone the G band still leads, then carbon features
    sig = comp.features(5, rank_by="significance")
    assert sig["feature"].iloc[0] == "CH G band 4315" and (sig["group"] == "c").all()
    table = comp.table()
    assert list(table.columns[:8]) == ["wavelength", "mean_a", "mean_b", "diff", "t", "dof", "p", "q"]
    assert len(table) == survey5k.grid.npix
    assert np.all(np.diff(table["p"].dropna().to_numpy()) >= 0)  # most significant first
    swan = table[table["feature"].str.contains("C2 Swan")].head(3)
    assert (swan["q"] < 0.05).all() and (swan["diff"] < 0).all()


def test_deblended_depths_recover_a_band_under_lines():
    """A band added to spectra full of lines is measured as that band, not as the lines."""
    from chemlatent.explore.linedepths import feature_basis
    from chemlatent.spectra.grid import DEFAULT_GRID
    from chemlatent.spectra.linelist import BANDS, band_templates

    basis = feature_basis(DEFAULT_GRID)
    rng = np.random.default_rng(0)
    lines = rng.uniform(0, 0.3, (20, len(basis)))
    lines[:, len(basis) - len(BANDS):] = 0.0  # lines only
    absorb = lines @ basis.profiles.T
    k = int(np.flatnonzero(basis.names == "C2 Swan band 5166")[0])
    band = 0.05 * band_templates(DEFAULT_GRID, 2000.0)[[b.head for b in BANDS].index(5166.0)]
    with_band = basis.depths(1.0 - absorb - band, np.ones_like(absorb))
    without = basis.depths(1.0 - absorb, np.ones_like(absorb))
    change = with_band - without
    assert np.allclose(change[:, k], change[0, k]) and 0.03 < change[0, k] < 0.06
    assert np.argmax(np.abs(change[0])) == k


def test_compare_rest_and_control(tiny_survey):
    cat = tiny_survey.catalog
    a = (cat["c_fe"] > 0.7).to_numpy()
    comp = compare_sets(tiny_survey, np.arange(len(cat)), a, "rest", max_stars=300)
    assert comp.n_stars_a == a.sum() and comp.n_stars_b == 300 and comp.notes
    with pytest.raises(ChemlatentError, match="rank features"):
        comp.features(rank_by="x")
    comp = compare_sets(tiny_survey, np.arange(len(cat)), a, "control", teff=cat["teff"].to_numpy(),
                        logg=cat["logg"].to_numpy())
    assert comp.label_b == "matched Teff/logg control" and comp.n_stars_b >= 2
    with pytest.raises(ChemlatentError):
        compare_sets(tiny_survey, np.arange(len(cat)), a, "control")
    with pytest.raises(ChemlatentError, match="at least 2"):
        compare_sets(tiny_survey, np.arange(len(cat)), np.zeros(len(cat), bool), "rest")


def test_compare_command_line(tiny_survey, tmp_path, capsys):
    from astropy.table import Table

    cat = tiny_survey.catalog
    a, b = _cemp_sets(cat)
    ids = cat["star_id"].to_numpy()
    (tmp_path / "a.txt").write_text("# CEMP\n" + "\n".join(map(str, ids[a])) + "\n")
    pd.DataFrame({"star_id": ids[b]}).to_csv(tmp_path / "b.csv", index=False)
    db = tmp_path / "ann.sqlite"
    with open_annotations(db, who="ana") as store:
        store.save_selection("normal", ids[b], who="ana")
    out = tmp_path / "cmp.fits"
    assert main(["compare", str(tiny_survey.path), str(tmp_path / "a.txt"), str(tmp_path / "b.csv"),
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert any("CH G band 4315" in line for line in printed.splitlines()[1:3])
    t = Table.read(out)
    assert {"wavelength", "mean_a", "mean_b", "diff", "t", "q"} <= set(t.colnames)
    assert len(t) == tiny_survey.grid.npix and "CH G band" in " ".join(map(str, t["feature"][:5]))
    assert t.meta["CREATOR"] == "chemlatent" and "file a.txt" in t.meta["SET_A"]
    vot = tmp_path / "cmp.vot"
    assert main(["compare", str(tiny_survey.path), str(tmp_path / "a.txt"), "normal", "--db", str(db),
                 "--user", "ana", "--out", str(vot)]) == 0
    v = Table.read(vot)
    assert "CH G band" in " ".join(map(str, v["feature"][:5]))
    csv = tmp_path / "cmp.csv"
    assert main(["compare", str(tiny_survey.path), str(tmp_path / "a.txt"), "rest", "--out", str(csv)]) == 0
    assert pd.read_csv(csv, comment="#").columns[0] == "wavelength"
    assert main(["compare", str(tiny_survey.path), "nosuch", "rest", "--out", str(csv)]) == 2
    assert "neither a file" in capsys.readouterr().err


def test_read_star_ids(tmp_path):
    (tmp_path / "ids.txt").write_text("star_id\n5\n3\n5\n")
    assert read_star_ids(tmp_path / "ids.txt").tolist() == [3, 5]
    (tmp_path / "bad.txt").write_text("5\nx7\n")
    with pytest.raises(ChemlatentError):
        read_star_ids(tmp_path / "bad.txt")
