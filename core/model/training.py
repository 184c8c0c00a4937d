"""Training the disentangled VAE: self-supervised, with Teff and logg as the only labels."""

from __future__ import annotations

import json
import sys
import time
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from chemlatent.errors import ChemlatentError
from chemlatent.io.store import Survey, write_json_atomic
from chemlatent.model.device import pick_device
from chemlatent.model.latent_range import bound_to_training_range
from chemlatent.model.modelio import flatten_state, save_model, unflatten_state, write_json
from chemlatent.model.schedule import one_cycle_schedule, stretch_schedule
from chemlatent.model.star_noise import star_noise
from chemlatent.model.step_guard import StepGuard
from chemlatent.model.train_options import DECODER_OPTIONS, TrainOptions  # noqa: F401 (re-exported)
from chemlatent.model.vae import (
    DisentangledVAE,
    ModelConfig,
    pixel_groups_from_linelist,
    standardised_labels,
)
from chemlatent.spectra.grid import ELEMENT_GROUPS, default_windows, load_windows

CHECKPOINT = "checkpoint"
REFINED = "refined.safetensors"  # the refinement's targets as they come (chemlatent.model.refine_cache)
IVAR_MAX_F16 = 65504.0  # the largest finite float16


class InMemoryData:
    """Training spectra held as float16 flux plus compact ivar, batches built on the fly."""

    def __init__(self, survey: Survey, rows: np.ndarray) -> None:
        from chemlatent.encode.streaming import iter_raw

        rows = np.sort(rows)
        self.rows = rows
        blocks = list(iter_raw(survey, survey.chunk_stars * 16, rows=rows))
        self.flux = torch.from_numpy(np.concatenate([b.flux16 for b in blocks]))
        self.layout = survey.ivar_layout
        if self.layout == "full":
            # float16 holds ivar up to 65504 (per-pixel S/N 256): higher S/N is capped there,
            # not turned into inf (real high-S/N spectra, e.g. MILES, reach S/N 1000)
            self.ivar = torch.from_numpy(np.concatenate(
                [np.minimum(b.ivar, IVAR_MAX_F16).astype(np.float16) for b in blocks]))
        else:
            self.mask = torch.from_numpy(np.concatenate([b.mask for b in blocks]))
            self.scale = torch.from_numpy(np.concatenate([b.scale for b in blocks]))
            self.profile = torch.from_numpy(survey._ivar_profile)
        del blocks
        cat = survey.catalog
        lab = np.full((rows.size, 2), np.nan, np.float32)
        for j, col in enumerate(("teff", "logg")):
            if col in cat.columns:
                lab[:, j] = cat[col].to_numpy(np.float32)[rows]
        self.labels = torch.from_numpy(lab)
        self.anchors: torch.Tensor | None = None

    def attach_anchors(self, survey: Survey, limit: int, rng: np.random.Generator,
                       columns: tuple = ()) -> int:
        """Reference abundances (fe_h, c_fe, alpha_fe; NaN where unknown, and for the columns
        not in ``columns`` when given) of at most ``limit`` random stars (-1: all); returns
        how many stars have one."""
        cat = survey.catalog
        ref = np.full((self.rows.size, 3), np.nan, np.float32)
        for j, col in enumerate(ANCHOR_COLUMNS):
            if col in cat.columns and (not columns or col in columns):
                ref[:, j] = cat[col].to_numpy(np.float32)[self.rows]
        have = np.nonzero(np.isfinite(ref).any(1))[0]
        if limit >= 0 and have.size > limit:
            drop = np.setdiff1d(have, rng.choice(have, limit, replace=False))
            ref[drop] = np.nan
            have = np.setdiff1d(have, drop)
        self.anchors = torch.from_numpy(ref)
        return int(have.size)

    def anchored_axes(self) -> list[int]:
        """The axes that have at least one reference value (after attach_anchors)."""
        if self.anchors is None:
            return []
        return [j for j in range(3) if bool(torch.isfinite(self.anchors[:, j]).any())]

    def __len__(self) -> int:
        return self.rows.size

    def anchor_batch(self, idx: torch.Tensor) -> torch.Tensor | None:
        return None if self.anchors is None else self.anchors[idx]

    def batch(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        flux = self.flux[idx].float()
        if self.layout == "full":
            ivar = self.ivar[idx].float()
        else:
            ivar = self.scale[idx, None] * self.profile[None, :]
            ivar = ivar.masked_fill(self.mask[idx] != 0, 0.0)
        return flux, ivar, self.labels[idx]


def random_stretch_mask(b: int, p: int, prob: float, gen: torch.Generator) -> torch.Tensor:
    """Boolean (b, p) mask of random missing stretches: blue/red ends cut (partial coverage
    like LAMOST or another spectrograph) and gaps inside."""
    out = torch.zeros(b, p, dtype=torch.bool)
    pick = torch.rand(b, generator=gen) < prob
    n = int(pick.sum())
    if n == 0:
        return out
    rows = torch.nonzero(pick)[:, 0]
    kind = torch.randint(0, 3, (n,), generator=gen)
    length = (torch.rand(n, generator=gen) * 0.25 * p + 20).long()
    start = (torch.rand(n, generator=gen) * (p - length)).long()
    pos = torch.arange(p)[None, :]
    blue = pos < length[:, None]
    red = pos >= (p - length[:, None])
    mid = (pos >= start[:, None]) & (pos < (start + length)[:, None])
    m = torch.where((kind == 0)[:, None], blue, torch.where((kind == 1)[:, None], red, mid))
    out[rows] = m
    return out


ANCHOR_COLUMNS = ("fe_h", "c_fe", "alpha_fe")


def anchor_targets(config: ModelConfig, anchors: torch.Tensor) -> torch.Tensor:
    """The latents reference abundances pin (B, 3): (value - mean) / scale, one scale (the
    spread of [Fe/H]) for all three, so z_fe + z_x stays [X/H] in z_fe's units."""
    mean = torch.tensor(config.anchor_mean, dtype=anchors.dtype, device=anchors.device)
    return (anchors - mean) / float(config.anchor_scale)


PHYS_STARS = 128  # stars per batch on which the physical-gradient term is evaluated


def loss_terms(model: DisentangledVAE, flux, ivar, labels, opts: TrainOptions, adv_scale: float,
               in_ivar=None, sample: bool = True, phys=None, anchors=None) -> dict:
    """All loss terms for one batch (means per star); ``phys``: GradientTemplates for the
    physical-gradient term; ``anchors``: (B, 3) reference abundances (NaN where unknown)."""
    mu, logvar, w = model.encode(flux, ivar if in_ivar is None else in_ivar)
    std = torch.exp(0.5 * logvar)
    z = mu + std * torch.randn_like(std) if sample else mu
    have = torch.isfinite(labels).all(-1)
    y = standardised_labels(model, torch.nan_to_num(labels))
    # conditional decoding: the decoders see the known Teff/logg (teacher forcing), the
    # encoder's own prediction only where a star has no labels
    w_dec = torch.where(have[:, None], y, w) if opts.teacher_forcing else w
    fe_for_ratios = mu[:, 0:1] if opts.ratio_fe_mean and sample else None
    out = {}
    fit_nll = None
    if model.mode in ("additive", "hybrid", "masked"):
        idx = model.win_all
        npix = idx.numel()
        # line decoders emulate the continuum normalisation, which clips by the star's noise
        sigma = star_noise(ivar) if getattr(model, "form", None) == "lines" else None
        r = flux[:, idx] - model.decode(z, w_dec, True, sigma=sigma, fe_for_ratios=fe_for_ratios)
        total_nll = 0.5 * (ivar[:, idx] * r * r).sum(-1)
        if getattr(model, "pixel_scatter", None) is not None:
            fit_nll = model.pixel_scatter.nll(r, ivar[:, idx])
    else:  # each decoder's own loss on its own windows
        parts = model.absorption(z, w_dec, selective=True, fe_for_ratios=fe_for_ratios)
        npix = 0
        total_nll = 0.0
        for g in ELEMENT_GROUPS:
            idx = model.window(g)
            r = flux[:, idx] - (1.0 - parts[g])
            total_nll = total_nll + 0.5 * (ivar[:, idx] * r * r).sum(-1)
            npix += idx.numel()
    vw = torch.as_tensor(opts.kl_var_weight, dtype=std.dtype, device=std.device)
    var_part = vw * (std * std - 1.0 - logvar)
    if opts.prior == "star":
        kl = 0.5 * (mu * mu + var_part).sum(-1)
    elif opts.prior == "conditional":
        d = mu.float() - model.conditional_prior(y, have)
        kl = 0.5 * (d * d + var_part).sum(-1)
    elif opts.prior in ("population", "centred"):
        d = mu.float() - model.prior_centre(mu)
        kl = 0.5 * (d * d + var_part).sum(-1)
    elif opts.prior == "aggregate":
        agg = torch.zeros(3, dtype=torch.bool, device=mu.device)
        agg[list(opts.aggregate_axes)] = True
        mu2 = torch.where(agg, torch.zeros((), device=mu.device), mu.float() ** 2)
        kl = 0.5 * (mu2 + var_part).sum(-1) + aggregate_kl(mu.float(), agg)
    else:
        raise ValueError(f"unknown prior {opts.prior!r}: use 'star', 'aggregate', 'conditional', "
                         "'population' or 'centred'")
    if have.any():
        w_mse = ((w - y) ** 2).mean(-1)[have].mean()
        aw = torch.as_tensor(opts.adv_axis_weight, dtype=mu.dtype, device=mu.device)
        # same values, the reversed gradient scaled per axis
        mu_adv = mu if bool((aw == 1).all()) else mu * aw + mu.detach() * (1 - aw)
        if opts.adv_mode == "reverse":
            adv = model.adversary_predict(mu_adv, adv_scale)
            adv_conf = torch.zeros((), device=flux.device)
        elif opts.adv_mode == "confuse":
            adv = model.adversary(mu.detach())
            frozen = {k: v.detach() for k, v in model.adversary.named_parameters()}
            pred = torch.func.functional_call(model.adversary, frozen, (mu_adv[have],))
            adv_conf = adv_scale * ((pred - pred.mean(0)) ** 2).mean(-1).mean()
        else:
            raise ValueError(f"unknown adv_mode {opts.adv_mode!r}: use 'reverse' or 'confuse'")
        adv_mse = ((adv - y) ** 2).mean(-1)[have].mean()
    else:
        w_mse = adv_mse = adv_conf = torch.zeros((), device=flux.device)
    out["kl"] = kl.mean()
    out["w_mse"] = w_mse
    out["adv_mse"] = adv_mse
    # extra pull of the posterior means toward the prior's centre: among latents that explain
    # the spectra equally well it prefers the most compact one, e.g. z_alpha = [alpha/Fe]
    # rather than [alpha/Fe] - z_fe (see docs/model.md)
    mw = torch.as_tensor(opts.mean_weight, dtype=mu.dtype, device=mu.device).expand(3)
    mean_pull = 0.5 * (mw * mu * mu).sum(-1)
    nll = total_nll if fit_nll is None else fit_nll
    out["loss"] = ((nll + opts.kl_weight * kl + mean_pull).mean() / npix
                   + opts.w_weight * w_mse + adv_mse + adv_conf)
    if anchors is not None and model.config.anchor_scale:
        target = anchor_targets(model.config, anchors)
        known = torch.isfinite(target)
        if known.any():
            err = torch.where(known, mu.float() - torch.nan_to_num(target), torch.zeros((), device=mu.device))
            out["anchor_mse"] = (err * err).sum() / known.sum()
            out["loss"] = out["loss"] + opts.anchor_weight * out["anchor_mse"]
    if phys is not None and opts.phys_weight > 0 and have.any():
        from chemlatent.model.physgrad import gradient_alignment

        sub = torch.nonzero(have)[:, 0][:PHYS_STARS]  # the batch is shuffled: its first labelled stars
        node = phys.node_index(labels[sub, 0], labels[sub, 1])
        align = gradient_alignment(model, z[sub], w_dec[sub], node, phys,
                                   units_weight=opts.phys_units).mean()
        out["phys"] = align.detach()
        out["loss"] = out["loss"] + opts.phys_weight * align
    if getattr(model, "form", None) == "lines" and model.lines.anchored:
        out["loss"] = out["loss"] + model.config.line_strength_weight * model.lines.strength_penalty()
    out["chi2"] = (2 * total_nll.mean() / npix).detach()
    return out


def one_cycle(opt: torch.optim.Optimizer, opts: TrainOptions, steps_per_epoch: int):
    """One-cycle learning rate over the whole run: up to ``opts.lr`` in the first
    ``opts.warmup_fraction`` of the optimiser steps, then annealed (docs/model.md: the
    curve-of-growth decoders need a warm-up short in steps)."""
    return one_cycle_schedule(opt, opts.lr, opts.epochs * steps_per_epoch, opts.warmup_fraction)


def aggregate_kl(mu: torch.Tensor, axes: torch.Tensor) -> torch.Tensor:
    """Per-star share of the batch-moment prior on the posterior means: on each axis in
    ``axes`` (boolean, per axis) 0.5 (m^2 + v - 1 - log v), the KL of N(m, v) (the batch mean
    and variance of mu) to N(0, 1). Summed over the batch it replaces the per-star KL's mean
    part sum 0.5 mu^2 = B/2 (m^2 + v): the location and scale of each axis stay pinned, but no
    star is pulled toward 0, so a latent may keep the part of an abundance that Teff/logg
    predict. Returned as a scalar (added to every star's KL)."""
    if mu.shape[0] < 2 or not bool(axes.any()):
        return torch.zeros((), device=mu.device)
    m = mu.mean(0)
    v = mu.var(0, unbiased=False).clamp_min(1e-6)
    return (0.5 * (m * m + v - 1.0 - torch.log(v)) * axes).sum()


def _split(n: int, max_stars: int, val_fraction: float,
           rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Training and validation rows: at most ``max_stars`` at random, ``val_fraction`` held out."""
    rows = np.arange(n)
    if n > max_stars:
        rows = np.sort(rng.choice(n, max_stars, replace=False))
    rng.shuffle(rows)
    n_val = max(1, int(round(rows.size * val_fraction)))
    return np.sort(rows[n_val:]), np.sort(rows[:n_val])


def load_training_data(survey_dir: str | Path, *, seed: int, device: str, max_stars: int,
                       val_fraction: float, log=print):
    """What every trainer starts with: the survey (at least 16 stars), the seeded torch and
    numpy generators, the device, and the training and validation stars in memory; returns
    (survey, rng, device, data, val)."""
    survey = Survey(survey_dir)
    if survey.n_stars < 16:
        raise ChemlatentError(f"{survey.path} has {survey.n_stars} stars: too few to train on")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    dev = pick_device(device)
    train_rows, val_rows = _split(survey.n_stars, max_stars, val_fraction, rng)
    log(f"loading {train_rows.size} training and {val_rows.size} validation spectra from {survey.path}")
    return survey, rng, dev, InMemoryData(survey, train_rows), InMemoryData(survey, val_rows)


def train(survey_dir: str | Path, out_dir: str | Path, opts: TrainOptions, resume: bool = False,
          progress: bool = True, log=print) -> Path:
    """Train a model on a survey; checkpoints every epoch; returns the model directory."""
    from tqdm.auto import tqdm

    out = Path(out_dir)
    unknown = set(opts.anchor_columns) - set(ANCHOR_COLUMNS)
    if unknown:
        raise ChemlatentError(f"--anchor-columns: unknown column(s) {', '.join(sorted(unknown))}; "
                              f"choose from {', '.join(ANCHOR_COLUMNS)}")
    if opts.anchor_columns and not opts.anchor_stars:
        raise ChemlatentError("--anchor-columns needs --anchors (anchored training)")
    survey, rng, device, data, val = load_training_data(
        survey_dir, seed=opts.seed, device=opts.device, max_stars=opts.max_stars,
        val_fraction=opts.val_fraction, log=log)
    n_lab = int(torch.isfinite(data.labels).all(-1).sum())
    if n_lab == 0:
        warnings.warn("no star has both teff and logg: the nuisance head and the adversary are "
                      "off (attach labels with `chemlatent labels`)", stacklevel=2)
    elif n_lab < len(data):
        warnings.warn(f"teff/logg known for {n_lab} of {len(data)} training stars: the nuisance "
                      "head and the adversary use those only", stacklevel=2)
    lab = data.labels.numpy()
    ok = np.isfinite(lab).all(1)
    mean = lab[ok].mean(0).tolist() if ok.any() else [5000.0, 3.0]
    std = (lab[ok].std(0) + 1e-6).tolist() if ok.any() else [800.0, 1.2]
    if resume:  # the weights were trained on the checkpoint's Teff/logg scaling: keep it
        mean, std = _checkpoint_label_scale(out / CHECKPOINT, mean, std)
    windows = load_windows(opts.windows_dir) if opts.windows_dir else default_windows()
    cfg = ModelConfig(grid=survey.grid.to_dict(),
                      windows={g: [list(w) for w in windows[g]] for g in ELEMENT_GROUPS},
                      hidden=list(opts.hidden), label_mean=mean, label_std=std, name=opts.name or out.name,
                      **{k: getattr(opts, k) for k in DECODER_OPTIONS})
    if opts.line_noisy_continuum and opts.decoder_form == "lines":  # the survey's noise per bin
        from chemlatent.model.line_continuum import bin_noise_shape

        cfg.line_bin_noise = bin_noise_shape(data.batch(torch.arange(min(len(data), 4096)))[1])
    if opts.decoder_form == "cog":  # the trunk maps only (Teff, logg): a narrow one suffices
        cfg.decoder_hidden = [64, 64]
    if opts.decoder_mode == "masked":
        cfg.pixel_groups = pixel_groups_from_linelist(survey.grid, windows)
    if opts.anchor_stars:
        n_anchor = data.attach_anchors(survey, opts.anchor_stars, rng, tuple(opts.anchor_columns))
        if n_anchor == 0:
            raise ChemlatentError("--anchors: no training star has a reference abundance (attach "
                                  "fe_h, c_fe or alpha_fe columns with `chemlatent labels`)")
        ref = data.anchors.numpy()
        cfg.anchor_mean = [float(np.nanmean(ref[:, j])) if np.isfinite(ref[:, j]).any() else 0.0
                           for j in range(3)]
        fe = ref[np.isfinite(ref[:, 0]), 0]
        cfg.anchor_scale = float(fe.std()) if fe.size > 1 and fe.std() > 0 else 1.0
        log(f"anchored training: {n_anchor} stars with reference abundances pin the axes")
    model = DisentangledVAE(cfg)
    if opts.learned_scatter:
        if model.mode not in ("additive", "hybrid", "masked"):
            raise ChemlatentError("learned scatter needs a decoder mode that combines the groups "
                                  "(additive, hybrid or masked)")
        from chemlatent.model.scatter import PixelScatter

        model.pixel_scatter = PixelScatter(int(model.win_all.numel()))
    if opts.prior == "conditional":
        from chemlatent.model.conditional_prior import ConditionalPrior

        model.conditional_prior = ConditionalPrior(cfg.n_w)
    if opts.prior in ("population", "centred"):  # both centre each star's prior on mu
        from chemlatent.model.conditional_prior import CentredPrior, PopulationPrior

        model.prior_centre = PopulationPrior() if opts.prior == "population" else CentredPrior()
    model = model.to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=opts.lr, weight_decay=opts.weight_decay)
    steps_per_epoch = max(1, len(data) // opts.batch_size)
    if opts.target_steps > 0:  # as many epochs as make about target_steps optimiser steps
        opts = replace(opts, epochs=max(1, round(opts.target_steps / steps_per_epoch)))
        log(f"{opts.epochs} epochs of {steps_per_epoch} optimiser steps (about {opts.target_steps} steps)")
    sched = one_cycle(opt, opts, steps_per_epoch)
    history: list[dict] = []
    start_epoch = 0
    ck = out / CHECKPOINT
    gen = torch.Generator().manual_seed(opts.seed)
    if resume:
        if not (ck / "state.json").exists():
            raise ChemlatentError(f"--resume: no checkpoint in {out}")
        start_epoch, history = _load_checkpoint(ck, model, opt, sched, gen)
        stretch_schedule(sched, opts.epochs * steps_per_epoch, opts.warmup_fraction)  # --epochs may grow
        log(f"resuming from epoch {start_epoch}")
        _same_threads_as_checkpoint(ck, log)
    amp = device.type == "cuda"
    phys = None
    if opts.phys_weight > 0:
        from chemlatent.model.physgrad import GradientTemplates

        phys = GradientTemplates.build(survey.grid, model.win_all.cpu().numpy()).to(device)
        log(f"physical-gradient templates: {phys.templates['fe'].shape[0]} Teff-logg nodes")
    guard = StepGuard(log=log)
    for epoch in range(start_epoch, opts.epochs):
        model.train()
        perm = torch.randperm(len(data), generator=gen)
        ramp = min(1.0, epoch / max(1, opts.epochs // 3))
        adv_scale = opts.adv_weight * ramp
        sums: dict[str, float] = {}
        bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{opts.epochs}", disable=not progress,
                   file=sys.stderr, leave=False)
        t0 = time.perf_counter()
        for step in bar:
            idx = perm[step * opts.batch_size:(step + 1) * opts.batch_size]
            flux, ivar, labels = data.batch(idx)
            anchor_batch = data.anchor_batch(idx)
            if anchor_batch is not None:
                anchor_batch = anchor_batch.to(device)
            hide = random_stretch_mask(flux.shape[0], flux.shape[1], opts.mask_prob, gen)
            in_ivar = ivar.masked_fill(hide, 0.0)
            flux, ivar, in_ivar, labels = (t.to(device, non_blocking=True)
                                           for t in (flux, ivar, in_ivar, labels))
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                terms = loss_terms(model, flux, ivar, labels, opts, adv_scale, in_ivar=in_ivar, phys=phys,
                                   anchors=anchor_batch)
            stepped = guard.step(model, opt, terms["loss"])
            sched.step()
            for k, v in terms.items() if stepped else ():
                sums[k] = sums.get(k, 0.0) + float(v.detach())
            if step % 10 == 0 and "loss" in sums:
                n = step + 1
                bar.set_postfix(loss=f"{sums['loss'] / n:.4f}", chi2=f"{sums['chi2'] / n:.3f}",
                                w=f"{sums['w_mse'] / n:.4f}")
        bar.close()
        skipped = guard.end_epoch(model, epoch + 1)
        rec = {k: v / max(1, steps_per_epoch - skipped) for k, v in sums.items()}
        rec.update(epoch=epoch + 1, seconds=round(time.perf_counter() - t0, 1), adv_scale=adv_scale,
                   lr=sched.get_last_lr()[0])
        rec.update({f"val_{k}": v for k, v in evaluate_loss(model, val, opts, device).items()})
        history.append(rec)
        log(f"epoch {epoch + 1}/{opts.epochs}: loss {rec['loss']:.4f} chi2 {rec['chi2']:.3f} "
            f"val chi2 {rec['val_chi2']:.3f} w_mse {rec['w_mse']:.4f} adv_mse {rec['adv_mse']:.3f} "
            f"({rec['seconds']} s)")
        _save_checkpoint(ck, model, opt, sched, epoch + 1, history, gen)
    model.eval()
    scatter_summary = None
    if getattr(model, "pixel_scatter", None) is not None:  # a training device, not part of the model
        scatter_summary = model.pixel_scatter.summary()
        del model.pixel_scatter
        log(f"learned scatter: median {scatter_summary['median']:.4f}, 90th percentile "
            f"{scatter_summary['p90']:.4f} (continuum-normalised flux)")
    for device_only in ("conditional_prior", "prior_centre"):  # training devices too
        if getattr(model, device_only, None) is not None:
            delattr(model, device_only)
    finish_training(model, survey, data, val, opts, out, device, history, log,
                    extra={"learned_scatter": scatter_summary} if scatter_summary else None)
    return out


def finish_training(model: DisentangledVAE, survey: Survey, data: InMemoryData, val: InMemoryData,
                    opts: TrainOptions, out: Path, device: torch.device, history: list[dict],
                    log=print, extra: dict | None = None) -> None:
    """What follows the epochs: refine and refit the encoder (``opts.refine_epochs``), orient
    the axes, bound the latents, fit the encoding surrogate, and save the model to ``out`` with
    its training record (``extra``: more of it)."""
    refit = None
    if opts.refine_epochs > 0:
        from chemlatent.model.refine import refine_and_refit

        refit = refine_and_refit(model, data.batch, len(data), stars=opts.refine_stars,
                                 steps=opts.refine_steps, epochs=opts.refine_epochs, seed=opts.seed,
                                 centred=opts.refine_centred, nuisance_sigma=opts.refine_nuisance_sigma,
                                 at_labels=opts.refine_at_labels, axes=tuple(opts.refine_axes),
                                 kept_share=opts.refine_kept_share,
                                 device=device, log=log, cache=out / CHECKPOINT / REFINED,
                                 refit_loss=opts.refit_loss, refit_schedule=opts.refit_schedule)
    # anchored axes already have the references' sign; the others are oriented label-free
    pinned = set(data.anchored_axes()) if opts.anchor_stars else set()
    orient_axes(model, axes=tuple(a for a in range(3) if a not in pinned))
    if opts.latent_range:
        bound_to_training_range(model, data.batch, len(data), val.batch, len(val), device, log)
    surrogate = None
    if opts.surrogate and getattr(model, "form", None) == "lines":
        from chemlatent.model.surrogate import fit_surrogate

        surrogate = fit_surrogate(model.cpu(), data.batch, len(data), star_noise, seed=opts.seed, log=log)
        model.to(device)
    diagnostics = validation_diagnostics(model, val, device)
    if "labels_from_axes_r2" in diagnostics:
        r2 = diagnostics["labels_from_axes_r2"]
        log(f"the axes predict Teff / logg at held-out R^2 {r2['teff']:.2f} / {r2['logg']:.2f} "
            "(lower is less leak, unless the survey's chemistry runs with them)")
    for msg in diagnostics["warnings"]:
        log(f"warning: {msg}")
    save_model(model, out, extra_config={
        "training": {"survey": str(survey.path), "n_train": int(len(data)), "n_val": int(len(val)),
                     "epochs": opts.epochs, "options": {k: (list(v) if isinstance(v, tuple) else v)
                                                        for k, v in vars(opts).items()},
                     "history": history, "diagnostics": diagnostics,
                     **(extra or {}),
                     **({"encoder_refit": refit} if refit else {}),
                     **({"surrogate": surrogate} if surrogate else {})}})
    plot_history(history, out / "loss.png")


@torch.no_grad()
def validation_diagnostics(model, data: InMemoryData, device) -> dict:
    """Label-free identifiability checks of the trained axes on the validation stars
    (chemlatent.model.identifiability)."""
    from chemlatent.model.identifiability import axis_diagnostics

    mus, stds = [], []
    for s in range(0, len(data), 2048):
        flux, ivar, _ = (t.to(device) for t in data.batch(torch.arange(s, min(s + 2048, len(data)))))
        mu, logvar, _ = model.encode(flux, ivar)
        mus.append(mu.float().cpu())
        stds.append(torch.exp(0.5 * logvar.float()).cpu())
    lab = data.labels.numpy().astype(np.float64)
    return axis_diagnostics(torch.cat(mus).numpy(), torch.cat(stds).numpy(), lab[:, 0], lab[:, 1])


@torch.no_grad()
def evaluate_loss(model, data: InMemoryData, opts: TrainOptions, device) -> dict:
    model.eval()
    sums: dict[str, float] = {}
    nb = 0
    for s in range(0, len(data), 2048):
        idx = torch.arange(s, min(s + 2048, len(data)))
        flux, ivar, labels = (t.to(device) for t in data.batch(idx))
        terms = loss_terms(model, flux, ivar, labels, opts, 0.0, sample=False)
        for k in ("loss", "chi2", "w_mse", "adv_mse"):
            sums[k] = sums.get(k, 0.0) + float(terms[k])
        nb += 1
    model.train()
    return {k: v / nb for k, v in sums.items()}


@torch.no_grad()
def orient_axes(model: DisentangledVAE, n: int = 512, axes: tuple = (0, 1, 2)) -> None:
    """Orient each latent axis so that absorption deepens as it grows (label-free: more of an
    element means deeper lines of that element).

    z_fe is judged by the whole model (more metals at fixed ratios deepen the lines), z_c and
    z_alpha each by its own decoder at fixed other axes, averaged over random latents and
    Teff/logg: with additive decoders (which see z_fe + z_x) a decoder may learn to read
    its input falling, and then only that axis is reported flipped. A flip only changes the
    model's ``orient`` buffer (reported z = orient * internal z), so the model is otherwise
    unchanged and decodes the reported z exactly as before. Only ``axes`` are judged (anchored
    axes already have their references' sign).
    """
    device = next(model.parameters()).device
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(n, model.config.n_w, generator=gen).to(device)
    z0 = torch.randn(n, 3, generator=gen).to(device)

    def deepening(axis: int, group: str) -> float:
        zp, zm = z0.clone(), z0.clone()
        zp[:, axis] += 0.25
        zm[:, axis] -= 0.25
        if axis == 0:  # more metals at fixed ratios: the whole model's lines deepen
            return float((model.decode(zm, w) - model.decode(zp, w)).mean())
        return float((model.absorption(zp, w)[group] - model.absorption(zm, w)[group]).mean())

    signs = [1.0 if a not in axes or deepening(a, g) >= 0 else -1.0 for a, g in enumerate(ELEMENT_GROUPS)]
    model.orient.mul_(torch.tensor(signs, device=device))
    model.config.orientation = [o * s for o, s in zip(model.config.orientation, signs)]


def _save_checkpoint(ck: Path, model, opt, sched, epoch: int, history: list,
                     gen: torch.Generator | None = None) -> None:
    """Model, optimiser, scheduler and random-number states after ``epoch``.

    The tensors go to a new ``state-EPOCH.safetensors``; ``state.json``, replaced atomically
    afterwards, names it, so a kill at any moment leaves a consistent checkpoint. The RNG
    states make a resumed run continue exactly as an uninterrupted one would.
    """
    from safetensors.torch import save_file

    ck.mkdir(parents=True, exist_ok=True)
    tensors, skel = flatten_state({"opt": opt.state_dict(), "sched": sched.state_dict()})
    tensors.update({f"model/{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()})
    tensors["rng/torch"] = torch.get_rng_state()
    if gen is not None:
        tensors["rng/batches"] = gen.get_state()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, st in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng/cuda{i}"] = st
    name = f"state-{epoch:05d}.safetensors"
    tmp = ck / f".{name}.tmp"
    save_file(tensors, str(tmp), metadata={"epoch": str(epoch)})
    tmp.replace(ck / name)
    write_json_atomic({"epoch": epoch, "tensors": name, "history": history, "skeleton": skel,
                       "config": model.config.to_dict(), "threads": torch.get_num_threads()},
                      ck / "state.json")
    for old in ck.glob("state*.safetensors"):  # earlier epochs (and the old single file)
        if old.name != name:
            old.unlink(missing_ok=True)


def _checkpoint_state(ck: Path) -> dict:
    """The checkpoint's ``state.json`` ({} where it is missing or unreadable)."""
    try:
        state = json.loads((ck / "state.json").read_text())
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


def _checkpoint_label_scale(ck: Path, mean: list, std: list) -> tuple[list, list]:
    """The Teff/logg mean and scale a checkpoint's weights were trained with (a run resumed
    on a survey with more or other stars keeps them); ``mean``/``std`` where it has none."""
    cfg = _checkpoint_state(ck).get("config", {})
    return list(cfg.get("label_mean", mean)), list(cfg.get("label_std", std))


def _same_threads_as_checkpoint(ck: Path, log=print) -> None:
    """Use the thread count of the run that wrote the checkpoint: on a CPU the matrix
    library may split sums differently for another count, and a resumed run must continue
    exactly as the uninterrupted one would (docs/model.md, "Reproducible training")."""
    saved = _checkpoint_state(ck).get("threads")
    if isinstance(saved, int) and saved > 0 and saved != torch.get_num_threads():
        log(f"using {saved} threads, as the run that wrote the checkpoint did")
        torch.set_num_threads(saved)


def _load_checkpoint(ck: Path, model, opt, sched, gen: torch.Generator | None = None) -> tuple[int, list]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        meta = json.loads((ck / "state.json").read_text())
        tensors = load_file(str(ck / meta.get("tensors", "state.safetensors")))
        model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model/")})
        state = unflatten_state(meta["skeleton"], tensors)
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        epoch = int(meta["epoch"])
    except (OSError, ValueError, KeyError, TypeError, RuntimeError, SafetensorError) as exc:
        msg = " ".join(str(exc).split())[:160]
        raise ChemlatentError(f"--resume: the checkpoint in {ck} is damaged or was made with other "
                              f"options ({type(exc).__name__}: {msg}); rerun with the options of "
                              "the first run, or pass --overwrite to start again") from None
    if "rng/torch" in tensors:
        torch.set_rng_state(tensors["rng/torch"])
        if gen is not None and "rng/batches" in tensors:
            gen.set_state(tensors["rng/batches"])
        cuda = [tensors[f"rng/cuda{i}"] for i in range(torch.cuda.device_count())
                if f"rng/cuda{i}" in tensors]
        if cuda and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(cuda)
    elif gen is not None:  # a checkpoint from before the RNG states were kept
        gen.manual_seed(torch.initial_seed() + epoch)
    return epoch, list(meta["history"])


def plot_history(history: list[dict], path: Path) -> None:
    """Loss curves (training and validation chi2, nuisance and adversary losses)."""
    if not history:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = [h["epoch"] for h in history]
    fig, ax = plt.subplots(1, 3, figsize=(13, 3.6))
    ax[0].plot(ep, [h["chi2"] for h in history], label="train")
    ax[0].plot(ep, [h["val_chi2"] for h in history], label="validation")
    ax[0].set_ylabel("reduced chi2 in windows")
    ax[0].legend()
    ax[1].plot(ep, [h["w_mse"] for h in history], label="train")
    ax[1].plot(ep, [h["val_w_mse"] for h in history], label="validation")
    ax[1].set_ylabel("Teff/logg head MSE (std units)")
    ax[1].set_yscale("log")
    ax[2].plot(ep, [h["adv_mse"] for h in history])
    ax[2].set_ylabel("adversary MSE (higher = less leakage)")
    for a in ax:
        a.set_xlabel("epoch")
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    tmp.replace(path)
    write_json({"history": history}, path.with_name("history.json"))

