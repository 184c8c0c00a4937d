"""Posterior means of the chemical latents under the survey's own population
(``chemlatent encode DIR --posterior-mean``).

The encoder gives each star a best fit: unbiased, but as noisy as its spectrum, so in a
survey where most stars are faint (a magnitude-limited survey such as LAMOST, S/N 8-100 with
as many stars per factor of S/N) the faint stars' scatter swamps the population's chemistry.
The posterior mean weighs each star's fit against the stars like it, as much as its noise
asks (empirical Bayes, label-free):

1. each star's noise on each axis: the encoder's Jacobian with respect to the flux and the
   spectrum's ivar (sigma^2 = sum_p J_p^2 / ivar_p), on a sample of stars and regressed to
   the rest (:func:`predicted_noise`);
2. the population: the distribution of each axis deconvolved from that noise, a
   nonparametric maximum-likelihood prior on a grid (EM over a random sample of up to
   ``SAMPLE_STARS`` stars); z_c and z_alpha per bin of z_fe, because [C/Fe] and [alpha/Fe]
   change with metallicity (the CEMP fraction rises toward low [Fe/H]); a nonparametric
   prior keeps the carbon-rich and alpha-poor tails a Gaussian one would pull in;
3. each star's posterior mean of every axis on that prior, with its own noise; ``z_*_std``
   becomes the posterior's standard deviation.

The noise is the Jacobian's as it is: choosing its scale per axis by the sample's marginal
likelihood was tried and read alpha worse on both surveys it was measured on (docs/model.md).

It assumes that, at a given z_fe, a star's chemistry does not depend on its S/N (true of a
survey's faint and bright stars of one population; a survey whose faint stars are another
population, e.g. the distant halo, breaks it). docs/model.md, "A survey of faint stars".
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from chemlatent.encode.jacobian import noise_jacobian
from chemlatent.errors import ChemlatentError
from chemlatent.io.store import Survey

AXES = ("z_fe", "z_c", "z_alpha")
FE_BINS = 10
GRID_POINTS = 150
EM_STEPS = 300
SAMPLE_STARS = 50_000
MIN_STARS = 200
SIGMA_FLOOR = 1e-3
FAINT_SNR = 20.0
FAINT_SHARE = 0.10
NOISE_SAMPLE = 4000
NOISE_FEATURES = ("teff_pred", "logg_pred", "n_good", *AXES)


@dataclass
class PosteriorPrior:
    """The deconvolved population: grid and weights of z_fe, and of z_c and z_alpha per z_fe
    bin (``fe_edges`` inner edges)."""

    fe_edges: list[float]
    grids: dict[str, list[list[float]]]
    weights: dict[str, list[list[float]]]
    n_stars: int

    def to_dict(self) -> dict:
        """The whole prior (a latents file's ``posterior_mean`` metadata): a re-encoding of
        some of the survey's stars (``encode --ids``) reads it to put them on the same footing."""
        def r(v):
            return [float(f"{x:.6g}") for x in v]

        return {"n_stars": self.n_stars, "fe_bins": len(self.fe_edges) + 1, "fe_edges": r(self.fe_edges),
                "grids": {a: [r(g) for g in gs] for a, gs in self.grids.items()},
                "weights": {a: [r(w) for w in ws] for a, ws in self.weights.items()}}

    @classmethod
    def from_dict(cls, d: dict) -> PosteriorPrior | None:
        """The prior :meth:`to_dict` wrote, or None where ``d`` does not hold a whole one."""
        if not all(k in d for k in ("fe_edges", "grids", "weights", "n_stars")):
            return None
        return cls(list(d["fe_edges"]), d["grids"], d["weights"], int(d["n_stars"]))

    def bin_of(self, z_fe: np.ndarray) -> np.ndarray:
        return np.searchsorted(np.asarray(self.fe_edges), z_fe)


def faint_share(survey: Survey, snr: float = FAINT_SNR) -> float:
    """The share of the survey's stars with S/N below ``snr`` (0 when the catalog has no S/N)."""
    if "snr" not in survey.catalog.columns or survey.n_stars == 0:
        return 0.0
    values = survey.catalog["snr"].to_numpy(np.float64)
    return float(np.mean(values[np.isfinite(values)] < snr)) if np.isfinite(values).any() else 0.0


MODES = ("auto", "on", "off")


def posterior_mean_choice(mode: str, survey: Survey, model) -> tuple[bool, str]:
    """Whether ``encode --posterior-mean MODE`` applies posterior means to ``survey``, and why
    in words. ``auto`` (the default) applies them when at least ``FAINT_SHARE`` of the stars
    have S/N below ``FAINT_SNR`` and the survey has ``MIN_STARS`` stars to learn its
    population from, with chemlatent's own models (docs/model.md, "A survey of faint stars")."""
    from chemlatent.model.vae import DisentangledVAE

    if mode not in MODES:
        raise ChemlatentError(f"--posterior-mean takes one of {', '.join(MODES)}, not {mode!r}")
    if mode != "auto":
        return mode == "on", f"--posterior-mean {mode}"
    share = faint_share(survey)
    if share < FAINT_SHARE:
        return False, ""
    faint = f"{share:.0%} of the stars have S/N < {FAINT_SNR:.0f}"
    if survey.n_stars < MIN_STARS:
        return False, (f"{faint}, but {survey.n_stars} stars are too few to learn the survey's population "
                       f"from ({MIN_STARS} needed): each star's own fit")
    if not isinstance(model, DisentangledVAE):
        return False, f"{faint}, but posterior means need a chemlatent model: each star's own fit"
    return True, f"{faint}; --posterior-mean off keeps each star's own fit"


def latent_noise(model, flux: torch.Tensor, ivar: torch.Tensor) -> np.ndarray:
    """(B, 3) noise sd of (z_fe, z_c, z_alpha) that pixel noise of variance 1/ivar gives
    through the encoder (its Jacobian with respect to the flux)."""
    jac, var = noise_jacobian(model, flux, ivar, lambda mu, w: (mu[:, 0], mu[:, 1], mu[:, 2]))
    return torch.einsum("bip,bp->bi", jac.square(), var).sqrt().detach().cpu().numpy()


def survey_noise(model, survey: Survey, star_ids: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """:func:`latent_noise` for the stars ``star_ids`` of ``survey`` (rows in that order)."""
    from chemlatent.model.training import InMemoryData

    ids = survey.catalog["star_id"].to_numpy()
    pos = pd.Series(np.arange(ids.size), index=ids)
    rows = pos.reindex(star_ids).to_numpy()
    if np.isnan(rows.astype(np.float64)).any():
        raise ChemlatentError("the latents name stars the survey's catalog does not have")
    rows = rows.astype(np.int64)
    order = np.argsort(rows, kind="stable")
    out = np.empty((rows.size, 3))
    was_training = model.training
    model.eval()
    try:
        for b in range(0, rows.size, chunk):
            sel = order[b:b + chunk]
            data = InMemoryData(survey, rows[sel])  # rows sorted, so in ``sel``'s order
            for s in range(0, sel.size, 512):
                flux, ivar = data.batch(torch.arange(s, min(s + 512, sel.size)))[:2]
                out[sel[s:s + 512]] = latent_noise(model, flux, ivar)
    finally:
        model.train(was_training)
    return out


def predicted_noise(model, survey: Survey, latents: pd.DataFrame, seed: int = 0) -> np.ndarray:
    """(n, 3) noise sd of every row of ``latents``: the encoder's Jacobian on a random sample
    of ``NOISE_SAMPLE`` stars, carried to the rest by a regression of its log on log S/N, the
    predicted Teff/logg, the good pixels and the latents (every star's Jacobian when the
    survey is small). The noise is a smooth function of these (a median error of 2-3 % on the
    faint stand-in, docs/model.md), and the Jacobian costs three backward passes a star."""
    from sklearn.ensemble import HistGradientBoostingRegressor

    ids = latents["star_id"].to_numpy()
    if ids.size <= 2 * NOISE_SAMPLE:
        return survey_noise(model, survey, ids)
    snr = survey.catalog.set_index("star_id")["snr"].reindex(ids).to_numpy(np.float64) \
        if "snr" in survey.catalog.columns else np.full(ids.size, np.nan)
    cols = [c for c in NOISE_FEATURES if c in latents.columns]
    x = np.column_stack([np.log(np.clip(snr, 1e-3, None)), latents[cols].to_numpy(np.float64)])
    sample = np.sort(np.random.default_rng(seed).choice(ids.size, NOISE_SAMPLE, replace=False))
    exact = survey_noise(model, survey, ids[sample])
    out = np.empty((ids.size, 3))
    for j in range(3):
        ok = np.isfinite(exact[:, j]) & (exact[:, j] > 0)
        reg = HistGradientBoostingRegressor(max_iter=200, random_state=seed)
        reg.fit(x[sample[ok]], np.log(exact[ok, j]))
        out[:, j] = np.exp(reg.predict(x))
    out[sample] = exact
    return out


def _likelihoods(z: np.ndarray, sigma: np.ndarray, grid: np.ndarray) -> np.ndarray:
    s = np.maximum(sigma, SIGMA_FLOOR)[:, None]
    return np.exp(-0.5 * ((z[:, None] - grid[None, :]) / s) ** 2) / s


def deconvolve(z: np.ndarray, sigma: np.ndarray, steps: int = EM_STEPS
               ) -> tuple[np.ndarray, np.ndarray]:
    """Grid and weights of the population of ``z`` whose stars carry Gaussian noise
    ``sigma`` (nonparametric maximum likelihood, EM)."""
    lo, hi = np.percentile(z, [0.05, 99.95])
    pad = 0.05 * (hi - lo) + 1e-6
    grid = np.linspace(lo - pad, hi + pad, GRID_POINTS)
    lik = _likelihoods(z, sigma, grid)
    w = np.full(grid.size, 1.0 / grid.size)
    for _ in range(steps):  # EM: w_k <- w_k * mean_i(lik_ik / sum_l lik_il w_l), two products
        w = w * (lik.T @ (1.0 / (lik @ w + 1e-300))) / z.size
    return grid, w


def shrink(z: np.ndarray, sigma: np.ndarray, grid: np.ndarray, weights: np.ndarray,
           chunk: int = 65536) -> tuple[np.ndarray, np.ndarray]:
    """Each star's posterior mean and standard deviation on the prior (``grid``, ``weights``)."""
    mean = np.empty(z.size)
    sd = np.empty(z.size)
    for b in range(0, z.size, chunk):
        p = _likelihoods(z[b:b + chunk], sigma[b:b + chunk], grid) * weights
        p /= p.sum(1, keepdims=True) + 1e-300
        m = p @ grid
        mean[b:b + chunk] = m
        sd[b:b + chunk] = np.sqrt(np.maximum(p @ grid**2 - m**2, 0.0))
    return mean, sd


def _groups(z_fe: np.ndarray, edges: np.ndarray, axis: str) -> list[np.ndarray]:
    if axis == "z_fe":
        return [np.arange(z_fe.size)]
    b = np.searchsorted(edges, z_fe)
    return [np.nonzero(b == i)[0] for i in range(edges.size + 1)]


def fit_prior(z: np.ndarray, sigma: np.ndarray, seed: int = 0) -> PosteriorPrior:
    """The population prior of ``z`` (n, 3) with noise ``sigma`` (n, 3) (module docstring)."""
    ok = np.isfinite(z).all(1) & np.isfinite(sigma).all(1)
    rows = np.nonzero(ok)[0]
    if rows.size < MIN_STARS:
        raise ChemlatentError(f"--posterior-mean needs at least {MIN_STARS} encoded stars to learn "
                              f"the survey's population, got {rows.size}")
    if rows.size > SAMPLE_STARS:
        rows = np.sort(np.random.default_rng(seed).choice(rows, SAMPLE_STARS, replace=False))
    zs, ss = z[rows], sigma[rows]
    edges = np.quantile(zs[:, 0], np.linspace(0, 1, FE_BINS + 1)[1:-1])
    grids: dict = {}
    weights: dict = {}
    for j, axis in enumerate(AXES):
        fits = [deconvolve(zs[g, j], ss[g, j]) for g in _groups(zs[:, 0], edges, axis)]
        grids[axis] = [f[0].tolist() for f in fits]
        weights[axis] = [f[1].tolist() for f in fits]
    return PosteriorPrior(edges.tolist(), grids, weights, int(rows.size))


def posterior_means(z: np.ndarray, sigma: np.ndarray, prior: PosteriorPrior
                    ) -> tuple[np.ndarray, np.ndarray]:
    """(n, 3) posterior means and standard deviations of ``z`` (n, 3) with noise ``sigma``;
    rows with a missing value keep ``z`` and ``sigma``."""
    mean = z.astype(np.float64).copy()
    sd = sigma.astype(np.float64).copy()
    ok = np.isfinite(z).all(1) & np.isfinite(sigma).all(1)
    b = prior.bin_of(z[:, 0])
    for j, axis in enumerate(AXES):
        for i, (grid, w) in enumerate(zip(prior.grids[axis], prior.weights[axis])):
            m = ok if axis == "z_fe" else ok & (b == i)
            mean[m, j], sd[m, j] = shrink(z[m, j], sigma[m, j], np.asarray(grid), np.asarray(w))
    return mean, sd


def apply_posterior_mean(path: str | Path, survey: Survey, model) -> PosteriorPrior:
    """Replace the latents file ``path`` (written by ``encode``) with its posterior means; the
    prior's summary goes into its metadata under ``posterior_mean``."""
    from chemlatent.encode.streaming import LatentsWriter
    from chemlatent.io.latents import latents_metadata
    from chemlatent.model.vae import DisentangledVAE

    if not isinstance(model, DisentangledVAE):
        raise ChemlatentError("--posterior-mean works with chemlatent's own models, not this recipe's")
    meta = latents_metadata(path)
    df = pd.read_parquet(path)
    z = df[list(AXES)].to_numpy(np.float64)
    sigma = predicted_noise(model, survey, df)
    prior = fit_prior(z, sigma)
    _write_columns(df, *posterior_means(z, sigma, prior))
    with LatentsWriter(path, {**meta, "posterior_mean": prior.to_dict()}) as writer:
        writer.write(df)
        writer.commit()
    return prior


def base_prior(survey: Survey, base: str | None, model_name: str) -> PosteriorPrior | None:
    """The prior of the survey's latents file ``base`` when it holds posterior means of the
    same model (``latents/<model_name>.parquet``), else None."""
    from chemlatent.io.latents import latents_metadata
    from chemlatent.io.store import LATENTS_DIR

    if base != f"{model_name}.parquet":
        return None
    path = survey.path / LATENTS_DIR / base
    if not path.exists():
        return None
    return PosteriorPrior.from_dict(latents_metadata(path).get("posterior_mean") or {})


def apply_prior(df: pd.DataFrame, survey: Survey, model, prior: PosteriorPrior) -> None:
    """Replace ``df``'s latents (and ``z_*_std``) in place with their posterior means on
    ``prior``, each star's noise from its own Jacobian."""
    z = df[list(AXES)].to_numpy(np.float64)
    mean, sd = posterior_means(z, survey_noise(model, survey, df["star_id"].to_numpy()), prior)
    _write_columns(df, mean, sd)


def _write_columns(df: pd.DataFrame, mean: np.ndarray, sd: np.ndarray) -> None:
    for j, axis in enumerate(AXES):
        df[axis] = mean[:, j].astype(df[axis].dtype)
        if f"{axis}_std" in df.columns:
            df[f"{axis}_std"] = sd[:, j].astype(df[f"{axis}_std"].dtype)
