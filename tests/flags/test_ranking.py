"""Verdicts re-rank the candidates: the learned ranking, its command line (annotate, rank)
and the page state's "best next" source all run the same core functions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from chemlatent.app.cli import main
from chemlatent.errors import ChemlatentError
from chemlatent.explore.state import ExplorerState
from chemlatent.explore.survey import SurveyData
from chemlatent.flags.presets import preset as preset_rule
from chemlatent.flags.ranking import labels_from_verdicts, rank_stars, static_score
from chemlatent.flags.statistics import truth_mask


@pytest.fixture(scope="module")
def data(encoded_tiny, tmp_path_factory):
    return SurveyData(encoded_tiny, db=str(tmp_path_factory.mktemp("rank") / "a.sqlite"), who="ana",
                      load_model=False)


def test_static_until_both_kinds_of_verdict(data):
    frame = data.frame
    prior = static_score(frame, "cemp", None)
    labels = np.full(len(frame), np.nan)
    r = rank_stars(frame, labels, prior)
    assert r.method == "static" and r.order.size == len(frame)
    assert np.all(np.diff(prior[r.order]) <= 0)
    labels[r.order[:5]] = 1.0
    r = rank_stars(frame, labels, prior)
    assert r.method == "static" and "5 verdicts" in r.describe()
    with pytest.raises(ChemlatentError):
        rank_stars(frame, labels, prior, strategy="nosuch")


def test_simulated_user_learns(data):
    """Vet the top 20 by the truth definition, re-rank, repeat: the learned ranking keeps
    finding true CEMP stars and never shows a vetted star again."""
    frame = data.frame
    truth, _ = truth_mask(preset_rule("cemp"), frame)
    state = ExplorerState(data, preset="cemp")
    prior = static_score(frame, "cemp", state.flagged)
    labels = np.full(len(frame), np.nan)
    found = 0
    for _ in range(5):
        r = rank_stars(frame, labels, prior)
        shown = r.order[:20]
        assert not np.isfinite(labels[shown]).any()
        labels[shown] = truth[shown]
        found += int(truth[shown].sum())
    r = rank_stars(frame, labels, prior)
    assert r.method == "learned" and r.n_verdicts == 100 and "learned from 100 verdicts" in r.describe()
    assert found >= 0.5 * min(100, truth.sum())  # most true stars are in the first 100 shown
    assert np.isfinite(r.score[r.order]).all() and np.all(np.diff(r.score[r.order[:50]]) <= 1e-12)
    u = rank_stars(frame, labels, prior, strategy="uncertain")
    assert abs(u.score[u.order[0]] - 0.5) <= abs(r.score[r.order[0]] - 0.5)


def test_labels_from_verdicts():
    v = pd.DataFrame({"star_id": [3, 5, 9, 11], "verdict": ["accepted", "rejected", "candidate", "accepted"]})
    y = labels_from_verdicts(np.array([1, 3, 5, 9]), v)
    assert np.isnan(y[0]) and y[1] == 1 and y[2] == 0 and np.isnan(y[3])


def test_annotate_and_rank_command_line(encoded_tiny, tmp_path, capsys):
    from astropy.table import Table

    from chemlatent.io.annotations import open_annotations

    cat = pd.read_parquet(encoded_tiny / "catalog.parquet")
    cemp = (cat["fe_h"] < -1) & (cat["c_fe"] > 0.7)
    good, bad = cat["star_id"][cemp].to_numpy()[:6], cat["star_id"][~cemp].to_numpy()[:20]
    (tmp_path / "good.txt").write_text("\n".join(map(str, good)) + "\n")
    pd.DataFrame({"star_id": np.r_[bad, 10**12]}).to_csv(tmp_path / "bad.csv", index=False)
    db = tmp_path / "ann.sqlite"
    assert main(["annotate", str(encoded_tiny), "--ids", str(tmp_path / "good.txt"), "--verdict", "accept",
                 "--note", "from a paper", "--db", str(db), "--user", "bo"]) == 0
    assert main(["annotate", str(encoded_tiny), "--ids", str(tmp_path / "bad.csv"), "--verdict", "reject",
                 "--db", str(db), "--user", "bo"]) == 0
    out = capsys.readouterr().out
    assert "accepted: 6 stars recorded by bo" in out and "1 star_ids not in the survey" in out
    with open_annotations(db) as store:
        v = store.verdicts()
    assert len(v) == 26 and set(v["who"]) == {"bo"} and "from a paper" in set(v["note"])
    path = tmp_path / "ranked.fits"
    assert main(["rank", str(encoded_tiny), "--preset", "cemp", "--db", str(db), "--out", str(path)]) == 0
    assert "learned from 26 verdicts (6 accepted, 20 rejected)" in capsys.readouterr().out
    t = Table.read(path)
    assert len(t) == len(cat) - 26 and list(t.colnames[:4]) == ["star_id", "rank", "score", "flagged"]
    assert not set(np.asarray(t["star_id"])) & set(np.r_[good, bad])
    assert np.all(np.diff(np.asarray(t["score"])) <= 1e-12)
    assert "learned from 26" in t.meta["RANKING"]
    csv = tmp_path / "top.csv"
    assert main(["rank", str(encoded_tiny), "--db", str(db), "--top", "10", "--out", str(csv)]) == 0
    assert len(pd.read_csv(csv, comment="#")) == 10
    assert main(["annotate", str(encoded_tiny), "--ids", str(tmp_path / "nosuch.txt"), "--verdict",
                 "accept", "--db", str(db)]) == 2


def test_best_next_table_source(data):
    state = ExplorerState(data, preset="cemp", user="ana")
    state.table_source = "best next"
    first = state.candidates()
    assert len(first) == state.best_next_size or len(first) == data.n
    assert "static rule order" in state.ranking_text()
    ids = first["star_id"].to_numpy()
    state.annotate(ids[:3], "accept")
    state.annotate(ids[3:6], "reject")
    text = state.ranking_text()
    assert "learned from" in text and "3 accepted, 3 rejected" in text
    again = state.candidates()
    assert not set(again["star_id"]) & set(ids[:6])  # vetted stars leave the best-next table


def test_strength_is_cross_validated_on_the_verdicts():
    """A clean boundary earns the freest model, labels without signal the stiffest; too few
    verdicts of one kind keep the default."""
    from chemlatent.flags.ranking import C_GRID, choose_strength

    rng = np.random.default_rng(0)
    n = 3000
    x = rng.normal(size=(n, 4)).astype(np.float32)
    px = rng.choice(n, 200, replace=False)
    pseudo = (px, rng.integers(0, 2, 200).astype(float), np.full(200, 0.01))
    for _ in range(2):
        labels = np.full(n, np.nan)
        v = rng.choice(n, 80, replace=False)
        labels[v] = (x[v, 0] > 0).astype(float)
        assert choose_strength(x, labels, pseudo) == max(C_GRID)
        labels[v] = rng.integers(0, 2, v.size)
        assert choose_strength(x, labels, pseudo) == min(C_GRID)
    labels = np.full(n, np.nan)
    labels[:6] = [1, 1, 1, 0, 0, 0]
    assert choose_strength(x, labels, pseudo, default=0.7) == 0.7
