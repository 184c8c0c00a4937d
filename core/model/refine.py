"""Per-star refinement of the chemical latents against the model's own decoders.

The encoder is amortised: one network guesses every star's z in a single pass. Where a
group's lines are weak (alpha lines in metal-poor stars) that guess is attenuated: the
encoder's z_alpha moves 0.3 units per dex of [alpha/Fe] below [Fe/H] = -2 while the
decoders' best-fitting z_alpha moves about one unit per dex in every metallicity bin
(docs/model.md, "Refined encoder"). Refinement closes that gap: starting from the encoder's
mean, a few Adam steps on each star's z minimise the maximum-a-posteriori objective

    0.5 * chi2(flux, decode(z, w)) + 0.5 * prior_weight * |z - prior_mean|^2

over the decoders' pixels, with the nuisance w held at the encoder's value (or at the star's
Teff/logg labels, as the decoders saw them in training: ``labels``), or free within
``nuisance_sigma`` of it. The decoders see every group at once with every gradient
(``selective=False``), so each latent's steps follow the whole chi2 (docs/model.md,
"Refinement follows the whole chi2").
The prior's centre defaults to the origin; ``prior_mean`` moves it to the population's mean
(docs/model.md, "The prior's centre"). ``refit_encoder`` then trains the
encoder to predict the refined z, so that encoding keeps its speed and gets the refined
axes (``TrainOptions.refine_epochs``), and ``refit_nuisance_head`` fits the Teff/logg head
to the refitted trunk.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from chemlatent.errors import ChemlatentError
from chemlatent.model import lines as line_decoders
from chemlatent.model.latent_range import encoded_means
from chemlatent.model.refine_cache import RefineCache, refine_key
from chemlatent.model.star_noise import star_noise
from chemlatent.model.vae import DisentangledVAE, standardised_labels

REFIT_LOSSES = ("equal", "standardised")
REFIT_SCHEDULES = ("constant", "cosine")


@dataclass
class RefineOptions:
    """How far each star's z is refined (steps of Adam at ``lr``) and how strongly the unit
    Gaussian prior holds it (``prior_weight`` 1 = the ELBO's own prior; one number for every
    axis or three, for z_fe, z_c, z_alpha)."""

    steps: int = 60
    lr: float = 0.05
    prior_weight: float | tuple[float, float, float] = 1.0
    batch: int = 2000
    # > 0: refine the nuisance w (Teff/logg) too, held to the encoder's by a Gaussian of this
    # width (w units); 0: w stays the encoder's
    nuisance_sigma: float = 0.0
    # the prior's centre (z_fe, z_c, z_alpha); None: the origin. A population whose encoder
    # means sit away from the origin is pulled toward it star by star, the weakly measured
    # stars the most: centring on the population's mean avoids that (see encoder_mean)
    prior_mean: tuple[float, float, float] | None = None

    def prior_weights(self) -> torch.Tensor:
        """The prior's weight per axis (3,; as given when it is neither one number nor three)."""
        w = torch.as_tensor(self.prior_weight, dtype=torch.float32).flatten()
        return w.expand(3).clone() if w.numel() == 1 else w

    def check(self) -> None:
        w = self.prior_weights()
        ok_w = w.numel() == 3 and bool((w >= 0).all())
        if (self.steps < 1 or not (self.lr > 0) or not ok_w or self.batch < 1
                or not (self.nuisance_sigma >= 0)):
            raise ChemlatentError(
                f"refinement needs steps >= 1, lr > 0, prior_weight >= 0, batch >= 1 and "
                f"nuisance_sigma >= 0, got steps={self.steps}, lr={self.lr}, "
                f"prior_weight={self.prior_weight}, batch={self.batch}, nuisance_sigma={self.nuisance_sigma}")


@contextmanager
def _frozen(model: DisentangledVAE, keep: tuple = ()) -> Iterator[None]:
    """Every trainable parameter of ``model`` but those in ``keep`` frozen inside the block
    (their gradients off), unfrozen after it whatever happens."""
    kept = {id(p) for p in keep}
    frozen = [p for p in model.parameters() if p.requires_grad and id(p) not in kept]
    for p in frozen:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in frozen:
            p.requires_grad_(True)


@contextmanager
def _evaluating(model: DisentangledVAE) -> Iterator[None]:
    """``model`` in eval mode inside the block, back in the mode it had after it."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def refine_latents(model: DisentangledVAE, flux: torch.Tensor, ivar: torch.Tensor,
                   opts: RefineOptions | None = None, labels: torch.Tensor | None = None) -> torch.Tensor:
    """Refined z (B, 3) for one batch of spectra (flux, ivar on the model's full grid).
    ``labels`` (B, 2): each star's Teff/logg (NaN where unknown); where known, the nuisance
    starts there instead of at the encoder's w (as the decoders saw it in training)."""
    opts = opts or RefineOptions()
    opts.check()
    with _evaluating(model), _frozen(model):
        with torch.no_grad():
            mu, _, w = model.encode(flux, ivar)
            if labels is not None:
                known = torch.isfinite(labels).all(-1, keepdim=True)
                w = torch.where(known, standardised_labels(model, labels), w)
        sigma = star_noise(ivar)
        idx = model.win_all
        f, iv = flux[:, idx].float(), ivar[:, idx].float()
        z = mu.detach().clone().requires_grad_(True)
        prior = opts.prior_weights().to(z.device)
        centre = torch.as_tensor(opts.prior_mean or (0.0, 0.0, 0.0), dtype=torch.float32).to(z.device)
        # the nuisance as w0 + nuisance_sigma * e, e ~ N(0, 1): Adam's steps in e
        w0, ns = w.detach(), opts.nuisance_sigma
        e = torch.zeros_like(w0, requires_grad=ns > 0)
        opt = torch.optim.Adam([z, e] if ns > 0 else [z], lr=opts.lr)
        for _ in range(opts.steps):
            opt.zero_grad(set_to_none=True)
            model_flux = model.decode(z, w0 + ns * e, selective=False, sigma=sigma)
            chi2 = (iv * (f - model_flux) ** 2).sum(-1)
            loss = (0.5 * chi2 + 0.5 * (prior * (z - centre) ** 2).sum(-1) + 0.5 * (e * e).sum(-1)).sum()
            loss.backward()
            opt.step()
    return z.detach()


def encoder_mean(model: DisentangledVAE, batch: Callable[[torch.Tensor], tuple], rows: torch.Tensor,
                 device: torch.device | str = "cpu", chunk: int = 4000) -> tuple[float, float, float]:
    """The mean of the encoder's z over ``rows``: the centre of RefineOptions.prior_mean for
    a population (computed once over every row, so no star's refinement depends on its batch)."""
    with _evaluating(model):
        z = encoded_means(model, batch, rows, device, chunk=chunk, bounded=True).astype(np.float64)
    m = z.sum(0) / max(len(rows), 1)
    return float(m[0]), float(m[1]), float(m[2])


def refine_rows(model: DisentangledVAE, batch: Callable[[torch.Tensor], tuple], rows: torch.Tensor,
                opts: RefineOptions | None = None, device: torch.device | str = "cpu",
                log: Callable[[str], None] | None = None, at_labels: bool = False,
                cache: RefineCache | None = None) -> np.ndarray:
    """Refined z (len(rows), 3) for ``rows`` of a data source whose ``batch(rows)`` returns
    (flux, ivar, labels) as InMemoryData does; ``at_labels``: the nuisance from the stars'
    Teff/logg labels where known (refine_latents); ``cache``: the rows it holds are taken
    from it, each new batch is written to it."""
    opts = opts or RefineOptions()
    n = len(rows)
    out = np.empty((n, 3), np.float32)
    start = 0
    if cache is not None and cache.done:
        start = cache.done
        out[:start] = cache.targets[:start]
        if log is not None:
            log(f"{start} of {n} stars already refined ({cache.path})")
    for b0 in range(start, n, opts.batch):
        flux, ivar, labels = (t.to(device) for t in batch(rows[b0:b0 + opts.batch])[:3])
        out[b0:b0 + opts.batch] = refine_latents(model, flux, ivar, opts,
                                                 labels if at_labels else None).cpu().numpy()
        if cache is not None:
            cache.store(b0, out[b0:b0 + opts.batch])
        if log is not None and ((b0 - start) // opts.batch) % 10 == 9:
            log(f"refined {min(n, b0 + opts.batch)} of {n} stars")
    return out


def refit_encoder(model: DisentangledVAE, batch: Callable[[torch.Tensor], tuple],
                  rows: torch.Tensor, targets: np.ndarray, *, epochs: int, lr: float = 3e-4,
                  batch_size: int = 256, holdout: float = 0.1, seed: int = 0,
                  device: torch.device | str = "cpu", loss: str = "equal", schedule: str = "constant",
                  log: Callable[[str], None] | None = None) -> list[float]:
    """Train the encoder trunk and its mean head to predict ``targets`` (len(rows), 3) for
    ``rows`` (mean squared error); decoders, nuisance head and log-variance head unchanged.
    A random ``holdout`` share of the rows is not trained on: the encoder kept is the one of
    the epoch with the lowest error on them. Returns that error per epoch. ``loss``: "equal"
    (every axis's squared error counts alike, so the widest axis, z_fe, leads) or
    "standardised" (each axis's divided by its targets' variance); ``schedule``: the learning
    rate "constant" or falling along a half cosine to 0 over the epochs ("cosine")."""
    if epochs < 1:
        raise ChemlatentError(f"refit epochs must be >= 1, got {epochs}")
    if loss not in REFIT_LOSSES or schedule not in REFIT_SCHEDULES:
        raise ChemlatentError(f"refit loss must be one of {REFIT_LOSSES} and schedule one of "
                              f"{REFIT_SCHEDULES}, got {loss!r} and {schedule!r}")
    params = list(model.encoder.parameters()) + list(model.mu.parameters())
    target = torch.from_numpy(np.ascontiguousarray(targets, np.float32))
    weights = torch.ones(3)
    if loss == "standardised":
        weights = 1.0 / target.var(0).clamp_min(1e-6)
        weights = weights * 3.0 / weights.sum()
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(target), generator=gen)
    n_hold = int(round(holdout * len(target))) if len(target) >= 10 else 0
    held, fit = order[:n_hold], order[n_hold:]
    opt = torch.optim.Adam(params, lr=lr)
    steps = epochs * max(1, -(-len(fit) // batch_size))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, (lambda k: 0.5 * (1.0 + math.cos(math.pi * min(k, steps) / steps))) if schedule == "cosine"
        else (lambda k: 1.0))
    losses: list[float] = []
    best: tuple[float, dict] | None = None
    with _frozen(model, keep=tuple(params)):
        try:
            for epoch in range(epochs):
                model.train()
                for pos in fit[torch.randperm(len(fit), generator=gen)].split(batch_size):
                    err = _mean_sq_error(model, batch, rows[pos], target[pos], device, weights)
                    opt.zero_grad(set_to_none=True)
                    err.backward()
                    opt.step()
                    sched.step()
                model.eval()
                with torch.no_grad():
                    check = held if n_hold else fit
                    err = sum(float(_mean_sq_error(model, batch, rows[pos], target[pos], device, weights))
                              * len(pos) for pos in check.split(4096)) / len(check)
                losses.append(err)
                if best is None or err < best[0]:
                    best = (err, {k: v.detach().clone() for k, v in model.state_dict().items()})
                if log is not None:
                    log(f"encoder refit {epoch + 1}/{epochs}: held-out mse {err:.4f}")
        finally:
            if best is not None:
                model.load_state_dict(best[1])
            model.eval()
    return losses


@torch.no_grad()
def refit_nuisance_head(model: DisentangledVAE, batch: Callable[[torch.Tensor], tuple], rows: torch.Tensor,
                        device: torch.device | str = "cpu", chunk: int = 4096, ridge: float = 1e-3) -> dict:
    """Least-squares fit of the linear nuisance head (Teff/logg) to the labels of ``rows`` on
    the encoder trunk's features: refit_encoder changes the trunk under a head it does not
    train, so without this the predicted Teff/logg (and the chi2 encoding computes at them)
    grow worse. The latents do not change. Returns the rms error (standardised units) of
    Teff and logg on those rows before and after."""
    feats, targets, before = [], [], []
    with _evaluating(model):
        for b0 in range(0, len(rows), chunk):
            flux, ivar, labels = (t.to(device) for t in batch(rows[b0:b0 + chunk])[:3])
            known = torch.isfinite(labels).all(-1)
            hid = model.encoder(model.features(flux, ivar))[known].double()
            feats.append(hid)
            targets.append(standardised_labels(model, labels[known]).double())
            before.append(model.w_head(hid.float()).double() - targets[-1])
    x, y = torch.cat(feats), torch.cat(targets)
    if len(x) < 2 * x.shape[1]:
        return {}
    xb = torch.cat([x, torch.ones_like(x[:, :1])], 1)
    gram = xb.T @ xb + ridge * len(x) * torch.eye(xb.shape[1], dtype=xb.dtype, device=xb.device)
    coef = torch.linalg.solve(gram, xb.T @ y)  # (hidden + 1, n_w)
    model.w_head.weight.copy_(coef[:-1].T.to(model.w_head.weight.dtype))
    model.w_head.bias.copy_(coef[-1].to(model.w_head.bias.dtype))
    after = model.w_head(x.float()).double() - y
    rms = lambda e: [round(float(v), 4) for v in e.pow(2).mean(0).sqrt()]  # noqa: E731
    return {"nuisance_rms_before": rms(torch.cat(before)), "nuisance_rms_after": rms(after)}


def _mean_sq_error(model: DisentangledVAE, batch: Callable[[torch.Tensor], tuple], rows: torch.Tensor,
                   target: torch.Tensor, device: torch.device | str, weights: torch.Tensor) -> torch.Tensor:
    """The mean over stars and axes of the squared error, each axis times its weight."""
    flux, ivar = (t.to(device) for t in batch(rows)[:2])
    mu, _, _ = model.encode(flux, ivar)
    return (((mu - target.to(device)) ** 2) * weights.to(device)).mean()


def cache_settings(opts: RefineOptions, at_labels: bool) -> dict:
    """What a refinement's kept targets depend on besides the model and the rows (their
    RefineCache key): the options, the start at the labels, and whether the hydrogen lines
    steered the fit (refinements made while they did are not reused)."""
    steers = line_decoders.HYDROGEN_STEERS
    return {**asdict(opts), "at_labels": at_labels, "hydrogen": "steers" if steers else "detached"}


def check_kept_share(kept_share: float) -> None:
    """Refuse a share of the encoder's own z (refine_and_refit's ``kept_share``) outside [0, 1]."""
    if not 0.0 <= kept_share <= 1.0:
        raise ChemlatentError(f"the kept axes' share of the encoder's z (--refine-kept-share) must be "
                              f"between 0 and 1, got {kept_share}")


def refine_and_refit(model: DisentangledVAE, batch: Callable[[torch.Tensor], tuple], n_data: int, *,
                     stars: int, steps: int, epochs: int, seed: int = 0, centred: bool = False,
                     nuisance_sigma: float = 0.0, at_labels: bool = False,
                     axes: tuple[int, ...] = (0, 1, 2), kept_share: float = 1.0,
                     device: torch.device | str = "cpu",
                     log: Callable[[str], None] = print, cache: str | Path | None = None,
                     refit_loss: str = "equal", refit_schedule: str = "constant") -> dict:
    """Refine the latents of ``stars`` random rows of a data source of ``n_data`` rows (all
    when ``stars`` <= 0) against the model's decoders and refit the encoder's mean to them
    (``TrainOptions.refine_epochs``); returns what was done (stars, steps, seconds, held-out
    error per epoch) for the model's config. ``centred``: the prior centred on the encoder's
    mean z over those rows (RefineOptions.prior_mean); ``nuisance_sigma``: see RefineOptions;
    ``at_labels``: refine at the stars' Teff/logg labels (refine_rows); ``axes``: the axes
    whose targets are the refined z, the others keep the encoder's own z as their target
    (``kept_share`` of it, the rest the refined z);
    ``cache``: a file that keeps the refined z as they come (refine_cache: a stopped run, or
    another refit of the same model and settings, refines only what the file lacks);
    ``refit_loss``, ``refit_schedule``: refit_encoder's ``loss`` and ``schedule``."""
    check_kept_share(kept_share)
    n = min(n_data, stars) if stars > 0 else n_data
    rows = torch.randperm(n_data, generator=torch.Generator().manual_seed(seed + 1))[:n]
    t0 = time.perf_counter()
    centre = encoder_mean(model, batch, rows, device) if centred else None
    opts = RefineOptions(steps=steps, prior_mean=centre, nuisance_sigma=nuisance_sigma)
    store = None
    if cache is not None:
        store = RefineCache(cache, refine_key(model, rows, cache_settings(opts, at_labels)), n)
    targets = refine_rows(model, batch, rows, opts, device, log, at_labels=at_labels, cache=store)
    kept = [a for a in range(3) if a not in axes]
    if kept:
        with _evaluating(model):
            own = encoded_means(model, batch, rows, device)[:, kept]
        targets[:, kept] = kept_share * own + (1.0 - kept_share) * targets[:, kept]
    seconds = round(time.perf_counter() - t0, 1)
    log(f"refined the latents of {n} training stars ({steps} steps) in {seconds:.0f} s")
    losses = refit_encoder(model, batch, rows, targets, epochs=epochs, seed=seed, device=device, log=log,
                           loss=refit_loss, schedule=refit_schedule)
    head = refit_nuisance_head(model, batch, rows, device)
    if head:
        log(f"nuisance head refitted: Teff/logg rms {head['nuisance_rms_before']} -> "
            f"{head['nuisance_rms_after']} (standardised)")
    return {**head, "stars": int(n), "steps": steps, "refine_seconds": seconds,
            **({"prior_mean": [round(v, 4) for v in centre]} if centre else {}),
            **({"nuisance_sigma": nuisance_sigma} if nuisance_sigma > 0 else {}),
            **({"at_labels": True} if at_labels else {}),
            **({"axes": list(axes)} if kept else {}),
            **({"kept_share": kept_share} if kept and kept_share != 1.0 else {}),
            **({"refit_loss": refit_loss} if refit_loss != "equal" else {}),
            **({"refit_schedule": refit_schedule} if refit_schedule != "constant" else {}),
            "heldout_mse": [round(v, 6) for v in losses]}
