"""Verdicts re-rank the candidates (active learning, GUI-free).

The static rule orders stars by how far they sit inside it (flagged first, then the
preset's element score: the metallicity-conditional carbon sigma for CEMP, minus the alpha
sigma for APMP; the anomaly score without a preset). Once the user has accepted and rejected
some stars, :func:`rank_stars` fits a classifier to those verdicts over the latents and what
else helps (chemical axes, their posterior widths, the nuisance axes w, predicted Teff/logg,
reconstruction chi2, the survey-frame and metallicity-conditional scores, and the static
score itself) and orders the unvetted stars by its probability of being accepted ("best
next"), or by its uncertainty ("most informative": the probability nearest one half).

The classifier is a logistic regression on standardised features plus their squares
(a smooth, quadratic boundary), with the static score as one of the features so that
far from any verdict it falls back on the static order instead of on chance; with tens of
verdicts one fit swings with every verdict, so the probability is the mean of
:data:`N_BAGS` fits to bootstrap resamples of the verdicts (bagging), with the regularisation
strength cross-validated on the verdicts (:func:`choose_strength`). It is refitted on every
call (about a second for a million stars on 2 cores). With no verdicts of one kind, the
static order is used as it is.

``chemlatent rank`` and the page's candidate table ("best next") call :func:`rank_survey`
/ :func:`rank_stars`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from chemlatent.errors import ChemlatentError

FEATURES: tuple[str, ...] = ("z_fe", "z_c", "z_alpha", "z_fe_std", "z_c_std", "z_alpha_std", "w_0", "w_1",
                             "teff_pred", "logg_pred", "chi2", "s_fe", "s_c", "s_alpha", "s_c_cond",
                             "s_alpha_cond")
STRATEGIES: tuple[str, ...] = ("best", "uncertain")
POSITIVE = "accepted"
NEGATIVE = "rejected"
MIN_PER_CLASS = 2
PRIOR_WEIGHT = 20.0  # the static rule counts as this many verdicts
STATS_ROWS = 200_000  # rows the standardisation's median and MAD are taken from
C_GRID = (0.1, 0.3, 1.0, 3.0, 10.0)  # inverse regularisation strengths cross-validated
CV_MIN_PER_CLASS = 5  # verdicts of each kind before the strength is cross-validated
N_BAGS = 8  # bootstrap regressions averaged (few verdicts: bagging steadies the order)


def static_score(frame: pd.DataFrame, preset: str | None, flagged: np.ndarray | None = None) -> np.ndarray:
    """The static rule's order as a score (higher first): flagged stars first, then the
    preset's element score (``s_c_cond`` for cemp, ``-s_alpha_cond`` for apmp, the anomaly
    ``score`` otherwise)."""
    key = (preset or "").lower()
    if key == "cemp" and "s_c_cond" in frame:
        s = frame["s_c_cond"].to_numpy(np.float64)
    elif key == "apmp" and "s_alpha_cond" in frame:
        s = -frame["s_alpha_cond"].to_numpy(np.float64)
    elif "score" in frame:
        s = frame["score"].to_numpy(np.float64)
    else:
        s = np.zeros(len(frame))
    s = np.nan_to_num(s, nan=-1e6)
    if flagged is not None:
        s = s + 1e6 * np.asarray(flagged, bool)
    return s


def feature_matrix(frame: pd.DataFrame, prior: np.ndarray) -> np.ndarray:
    """Standardised features (median/MAD, clipped at 8) and their squares, float32. The
    median and MAD come from every star of surveys up to :data:`STATS_ROWS` stars, else from
    an evenly strided subset of that size (a million-star survey in about a second)."""
    cols = []
    for c in FEATURES:
        if c not in frame:
            continue
        v = frame[c].to_numpy(np.float64)
        if c == "chi2" or c.endswith("_std"):
            v = np.log(np.clip(v, 1e-6, None))
        cols.append(v.astype(np.float32))
    p = np.asarray(prior, np.float64).copy()
    flagged = p > 1e5
    p[flagged] -= 1e6  # the flagged bonus is a rank device: the flag is a feature of its own
    cols.append(p.astype(np.float32))
    x = np.column_stack(cols)
    sub = x[:: max(1, x.shape[0] // STATS_ROWS)]
    med = np.nanmedian(sub, axis=0)
    mad = np.nanmedian(np.abs(sub - med), axis=0) * 1.4826
    mad[~(mad > 0)] = 1.0
    x -= med
    x /= mad
    np.nan_to_num(x, copy=False)
    np.clip(x, -8, 8, out=x)
    return np.hstack([x, x * x / 4.0, flagged[:, None].astype(np.float32)])


def labels_from_verdicts(star_ids: np.ndarray, verdicts: pd.DataFrame | None) -> np.ndarray:
    """Per star: 1 accepted, 0 rejected, NaN without a verdict (or "candidate")."""
    y = np.full(len(star_ids), np.nan)
    if verdicts is None or not len(verdicts):
        return y
    idx = pd.Index(np.asarray(star_ids, np.int64)).get_indexer(verdicts["star_id"].to_numpy(np.int64))
    v = verdicts["verdict"].to_numpy()
    ok = idx >= 0
    y[idx[ok & (v == POSITIVE)]] = 1.0
    y[idx[ok & (v == NEGATIVE)]] = 0.0
    return y


@dataclass
class Ranking:
    """Unvetted stars, best first."""

    order: np.ndarray  # row positions (into the frame given), best first
    score: np.ndarray  # per row of the frame: probability of acceptance (or the static score)
    n_accepted: int
    n_rejected: int
    method: str  # "learned" or "static"
    strategy: str = "best"

    @property
    def n_verdicts(self) -> int:
        return self.n_accepted + self.n_rejected

    def describe(self) -> str:
        if self.method == "static":
            need = "accepted and rejected stars" if self.n_verdicts else "verdicts"
            return (f"static rule order ({self.n_verdicts} verdicts so far; the ranking learns once "
                    f"there are at least {MIN_PER_CLASS} {need})")
        return (f"learned from {self.n_verdicts} verdicts ({self.n_accepted} accepted, "
                f"{self.n_rejected} rejected)")


def _prior_pseudo_data(prior: np.ndarray, vetted: np.ndarray, n_verdicts: int, *,
                       n_each: int = 500, weight: float | None = None, seed: int = 0
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The static rule as weak pseudo-verdicts (rows, labels, weights): unvetted stars at the
    top of its order as accepted, a random sample of the rest as rejected, together worth
    ``weight`` verdicts, so the first real verdicts refine the rule instead of replacing it."""
    weight = PRIOR_WEIGHT if weight is None else weight
    rng = np.random.default_rng(seed)
    rows = np.flatnonzero(~vetted)
    order = rows[np.argsort(-prior[rows], kind="stable")]
    flagged = int(np.count_nonzero(prior[rows] > 1e5))
    k = min(n_each, max(flagged, MIN_PER_CLASS), order.size // 2)
    top, rest = order[:k], order[k:]
    neg = rng.choice(rest, min(n_each, rest.size), replace=False)
    px = np.r_[top, neg]
    py = np.r_[np.ones(top.size), np.zeros(neg.size)]
    pw = np.r_[np.full(top.size, 0.5 * weight / max(top.size, 1)),
               np.full(neg.size, 0.5 * weight / max(neg.size, 1))]
    return px, py, pw


def _fit(x: np.ndarray, labels: np.ndarray, rows: np.ndarray, pseudo: tuple, c: float):
    """The regression on the verdicts at ``rows`` (balanced) plus the pseudo-verdicts."""
    from sklearn.linear_model import LogisticRegression

    px, py, pw = pseudo
    n_acc, n_rej = int((labels[rows] == 1).sum()), int((labels[rows] == 0).sum())
    w_real = np.where(labels[rows] == 1, 0.5 / n_acc, 0.5 / n_rej) * rows.size
    model = LogisticRegression(C=c, max_iter=2000)
    return model.fit(np.vstack([x[rows], x[px]]), np.r_[labels[rows], py].astype(int),
                     sample_weight=np.r_[w_real, pw])


def choose_strength(x: np.ndarray, labels: np.ndarray, pseudo: tuple, default: float = 1.0) -> float:
    """The regularisation strength C (from :data:`C_GRID`) with the best 5-fold cross-validated
    balanced log-loss on the verdicts; ``default`` with fewer than :data:`CV_MIN_PER_CLASS`
    verdicts of either kind. Few accepted stars want a stiffer model, many a freer one."""
    from sklearn.model_selection import StratifiedKFold

    vet = np.r_[np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)]
    y = labels[vet].astype(int)
    n_pos, n_neg = int((y == 1).sum()), int((y == 0).sum())
    if min(n_pos, n_neg) < CV_MIN_PER_CLASS:
        return default
    folds = list(StratifiedKFold(5, shuffle=True, random_state=0).split(vet, y))
    best, best_c = np.inf, default
    for c in C_GRID:
        loss = 0.0
        for train, test in folds:
            model = _fit(x, labels, vet[train], pseudo, c)
            p = np.clip(model.predict_proba(x[vet[test]])[:, 1], 1e-6, 1 - 1e-6)
            yt = y[test]
            w = np.where(yt == 1, 0.5 / n_pos, 0.5 / n_neg)
            loss -= float((w * (yt * np.log(p) + (1 - yt) * np.log(1 - p))).sum())
        if loss < best:
            best, best_c = loss, c
    return best_c


def _bagged_probability(x: np.ndarray, labels: np.ndarray, prior: np.ndarray, rows: np.ndarray, *,
                        c: float | None, n_bags: int, seed: int) -> np.ndarray:
    """Probability of acceptance at ``rows``: the mean of ``n_bags`` regressions, each fitted
    to a bootstrap resample of the verdicts (balanced: accepted and rejected weigh equally)
    plus the static rule's pseudo-verdicts; ``c=None``: the strength is cross-validated."""
    vetted = np.isfinite(labels)
    both = np.r_[np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)]
    pseudo = _prior_pseudo_data(prior, vetted, both.size)
    if c is None:
        c = choose_strength(x, labels, pseudo)
    rng = np.random.default_rng(seed)
    total = np.zeros(rows.size)
    for _ in range(max(int(n_bags), 1)):
        bag = rng.choice(both, both.size) if n_bags > 1 else both
        if min(int((labels[bag] == 1).sum()), int((labels[bag] == 0).sum())) == 0:
            bag = both  # a resample without one kind: use the verdicts as they are
        model = _fit(x, labels, bag, pseudo, c)
        logit = x @ model.coef_[0].astype(np.float32) + np.float32(model.intercept_[0])
        total += 1.0 / (1.0 + np.exp(-logit[rows].astype(np.float64)))
    return total / max(int(n_bags), 1)


def rank_stars(frame: pd.DataFrame, labels: np.ndarray, prior: np.ndarray, *, strategy: str = "best",
               candidates: np.ndarray | None = None, c: float | None = None, n_bags: int = N_BAGS,
               seed: int = 0) -> Ranking:
    """Order the unvetted stars (``labels`` NaN; within ``candidates`` when given) by the
    bagged classifier fitted to the vetted ones (``labels`` 1/0), or by ``prior`` before there
    are :data:`MIN_PER_CLASS` of each kind."""
    if strategy not in STRATEGIES:
        raise ChemlatentError(f"strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
    labels = np.asarray(labels, np.float64)
    prior = np.asarray(prior, np.float64)
    vetted = np.isfinite(labels)
    n_acc = int(np.count_nonzero(labels == 1))
    n_rej = int(np.count_nonzero(labels == 0))
    pool = ~vetted if candidates is None else (~vetted & np.asarray(candidates, bool))
    rows = np.flatnonzero(pool)
    if min(n_acc, n_rej) < MIN_PER_CLASS:
        order = rows[np.argsort(-prior[rows], kind="stable")]
        return Ranking(order, prior, n_acc, n_rej, "static", strategy)
    x = feature_matrix(frame, prior)
    prob = np.full(len(frame), np.nan)
    prob[rows] = _bagged_probability(x, labels, prior, rows, c=c, n_bags=n_bags, seed=seed)
    key = -prob[rows] if strategy == "best" else np.abs(prob[rows] - 0.5)
    order = rows[np.lexsort((-prior[rows], key))]
    return Ranking(order, prob, n_acc, n_rej, "learned", strategy)


# --------------------------------------------------------------------------- surveys

DEFAULT_SIGMA = 3.0  # the page's default element cut for the built-in presets
TABLE_COLUMNS: tuple[str, ...] = ("star_id", "ra", "dec", "snr", "z_fe", "z_c", "z_alpha", "teff_pred",
                                  "logg_pred", "chi2")


def rank_frame(frame: pd.DataFrame, verdicts: pd.DataFrame | None, preset: str | None,
               flagged: np.ndarray | None, *, strategy: str = "best") -> Ranking:
    """The ranking of a survey's flat frame (``SurveyData.frame``) from its stored verdicts and
    the static rule (``preset`` and its ``flagged`` stars): what the page and ``chemlatent
    rank`` both run."""
    labels = labels_from_verdicts(frame["star_id"].to_numpy(np.int64), verdicts)
    return rank_stars(frame, labels, static_score(frame, preset, flagged), strategy=strategy)


def ranking_table(frame: pd.DataFrame, ranking: Ranking, flagged: np.ndarray | None,
                  top: int | None = None) -> pd.DataFrame:
    """star_id, rank, score, flagged and the main latent columns of the ranked stars."""
    order = ranking.order if top is None else ranking.order[:top]
    cols = [c for c in TABLE_COLUMNS if c in frame.columns]
    out = frame.iloc[order][cols].reset_index(drop=True)
    out.insert(1, "rank", np.arange(1, len(out) + 1))
    out.insert(2, "score", ranking.score[order])
    out.insert(3, "flagged", np.asarray(flagged, bool)[order] if flagged is not None else False)
    return out


@dataclass
class SurveyRanking:
    ranking: Ranking
    table: pd.DataFrame
    meta: dict


def rank_survey(survey_dir, *, preset: str = "cemp", model: str | None = None, db: str | None = None,
                strategy: str = "best", top: int | None = None) -> SurveyRanking:
    """``chemlatent rank``: the survey's unvetted stars, best first, with provenance. The
    static rule of a built-in preset is the page's default (element cut at 3 sigma at its
    z_fe); a saved preset is used as saved; ``none`` orders by the anomaly score."""
    from chemlatent.explore.survey import SurveyData
    from chemlatent.flags.pipeline import resolve_rule
    from chemlatent.flags.presets import PRESETS
    from chemlatent.io.export import provenance

    data = SurveyData(survey_dir, model, db=db, load_model=False)
    rule = None
    key = (preset or "none").lower()
    if key != "none":
        sigma = DEFAULT_SIGMA if key in PRESETS else None
        rule = resolve_rule(preset_name=preset, sigma=sigma, calibration=data.calibration, store=data.store)
    flagged = data.engine.mask(rule) if rule is not None else None
    ranking = rank_frame(data.frame, data.store.verdicts(), key if key in PRESETS else None, flagged,
                         strategy=strategy)
    table = ranking_table(data.frame, ranking, flagged, top)
    meta = provenance(survey_path=data.path, model_name=data.model_name, rule=rule,
                      latents_path=data.latents_path,
                      extra={"ranking": ranking.describe(), "strategy": strategy,
                             "n_verdicts": ranking.n_verdicts, "n_ranked": int(ranking.order.size)})
    return SurveyRanking(ranking, table, meta)


def import_verdicts(survey_dir, ids_file, verdict: str, *, note: str = "", db: str | None = None,
                    who: str | None = None) -> dict:
    """``chemlatent annotate``: one verdict for every star of a file of star_ids (those not in
    the survey's catalog are skipped and counted)."""
    from chemlatent.explore.starsets import read_star_ids
    from chemlatent.io.annotations import open_annotations
    from chemlatent.io.store import Survey

    verdict = {"accept": "accepted", "reject": "rejected"}.get(verdict, verdict)
    survey = Survey(survey_dir)
    ids = read_star_ids(ids_file)
    known = np.isin(ids, survey.catalog["star_id"].to_numpy(np.int64))
    with open_annotations(db or survey.path, who=who) as store:
        store.set_verdicts(ids[known], verdict, note, who=who)
        user = who or store.who
    return {"verdict": verdict, "n_recorded": int(known.sum()), "n_unknown": int((~known).sum()),
            "who": user}
