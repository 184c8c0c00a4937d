"""Training with the published recipe of Signor et al. 2025 (``chemlatent train --recipe signor2025``).

Loss per batch (as in the paper's code): the Gaussian NLL with each pixel's own sigma, averaged
over the window pixels of each star, + 1e-3 x the KL to the correlated prior + the MSE of w to
the standardised (Teff, logg) - lambda x the cross-entropy of the adversary, which a second Adam
optimiser trains on the detached posterior means to classify 8 x 8 (Teff, logg) bins. lambda
steps 0 -> adv_weight / 10 -> adv_weight at 4% and 40% of the optimiser steps (the paper: epochs
200 and 2000 of 5000). Adam at a one-cycle learning rate peaking at 1e-3, for both optimisers.
"""

from __future__ import annotations

import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from chemlatent.model.modelio import save_model, write_json
from chemlatent.model.recipe_signor2025 import Signor2025Config, Signor2025VAE, orient_axes
from chemlatent.spectra.grid import ELEMENT_GROUPS, default_windows, load_windows

KL_WEIGHT = 1e-3
ADV_STEPS = (0.04, 0.40)  # fractions of the run where the adversary weight steps up


@dataclass
class Signor2025Options:
    epochs: int = 24
    batch_size: int = 512
    lr: float = 1e-3
    adv_weight: float = 0.1  # the last step; the middle step is a tenth of it
    kl_weight: float = KL_WEIGHT
    max_stars: int = 400_000
    val_fraction: float = 0.05
    seed: int = 0
    device: str = "auto"
    channels: tuple = (128, 256, 512)
    windows_dir: str | None = None
    name: str | None = None


def adversary_weight(step: int, total: int, final: float) -> float:
    """0 for the first 4% of the steps, final / 10 until 40%, then ``final``."""
    frac = step / max(1, total)
    if frac < ADV_STEPS[0]:
        return 0.0
    return final / 10.0 if frac < ADV_STEPS[1] else final


def label_bins(y: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, n_bins: int) -> torch.Tensor:
    """Class index of each star's standardised (Teff, logg): n_bins equal bins per label
    between the training set's extremes, joined as teff_bin * n_bins + logg_bin."""
    k = ((y - lo) / (hi - lo).clamp_min(1e-6) * n_bins).floor().clamp(0, n_bins - 1).long()
    return k[:, 0] * n_bins + k[:, 1]


def loss_terms(model: Signor2025VAE, flux: torch.Tensor, ivar: torch.Tensor, y: torch.Tensor,
               classes: torch.Tensor, adv_lambda: float, kl_weight: float = KL_WEIGHT,
               sample: bool = True) -> dict:
    """The encoder/decoder loss and its parts; ``y`` standardised labels (NaN rows unlabelled),
    ``classes`` their (Teff, logg) bins. The adversary's own loss is ``adv_ce`` on detached means."""
    mu, chol, w = model.posterior(model.features(flux, ivar))
    z = mu
    if sample:
        z = mu + (chol @ torch.randn_like(mu).unsqueeze(-1)).squeeze(-1)
    pred = model.decode(z * model.orient, w)
    idx = model.win_all
    iv = ivar[:, idx]
    r = flux[:, idx] - pred
    n_good = (iv > 0).sum(-1).clamp_min(1)
    nll = (0.5 * iv * r * r).sum(-1) / n_good
    kl = model.kl(mu, chol)
    have = torch.isfinite(y).all(-1)
    out = {"nll": nll.mean(), "kl": kl.mean(), "chi2": (2 * nll.mean()).detach()}
    if have.any():
        out["w_mse"] = ((w[have] - y[have]) ** 2).mean()
        out["adv_ce"] = nn.functional.cross_entropy(model.adversary(mu[have].detach()), classes[have])
        enc_ce = nn.functional.cross_entropy(model.adversary(mu[have]), classes[have])
    else:
        out["w_mse"] = out["adv_ce"] = enc_ce = torch.zeros((), device=flux.device)
    out["loss"] = out["nll"] + kl_weight * out["kl"] + out["w_mse"] - adv_lambda * enc_ce
    return out


def train_signor2025(survey_dir: str | Path, out_dir: str | Path, opts: Signor2025Options,
                     progress: bool = True, log=print) -> Path:
    """Train a signor2025 model on a survey and write its model directory."""
    from tqdm.auto import tqdm

    from chemlatent.model.training import load_training_data

    out = Path(out_dir)
    survey, _, device, data, val = load_training_data(
        survey_dir, seed=opts.seed, device=opts.device, max_stars=opts.max_stars,
        val_fraction=opts.val_fraction, log=log)
    lab = data.labels.numpy()
    ok = np.isfinite(lab).all(1)
    if not ok.any():
        warnings.warn("no star has both teff and logg: the nuisance head and the adversary are off",
                      stacklevel=2)
    mean = lab[ok].mean(0) if ok.any() else np.array([5000.0, 3.0])
    std = lab[ok].std(0) + 1e-6 if ok.any() else np.array([800.0, 1.2])
    ys = (lab - mean) / std
    lo = torch.tensor(np.nanmin(ys, 0) if ok.any() else [-2.0, -2.0], dtype=torch.float32)
    hi = torch.tensor(np.nanmax(ys, 0) if ok.any() else [2.0, 2.0], dtype=torch.float32)
    windows = load_windows(opts.windows_dir) if opts.windows_dir else default_windows()
    cfg = Signor2025Config(grid=survey.grid.to_dict(),
                           windows={g: [list(w) for w in windows[g]] for g in ELEMENT_GROUPS},
                           channels=list(opts.channels), label_mean=mean.tolist(),
                           label_std=std.tolist(), name=opts.name or out.name)
    model = Signor2025VAE(cfg).to(device)
    adv_params = list(model.adversary.parameters())
    adv_ids = {id(p) for p in adv_params}
    main_params = [p for p in model.parameters() if id(p) not in adv_ids]
    opt = torch.optim.Adam(main_params, lr=opts.lr, eps=1e-8)
    opt_adv = torch.optim.Adam(adv_params, lr=opts.lr, eps=1e-8)
    steps_per_epoch = max(1, len(data) // opts.batch_size)
    total = opts.epochs * steps_per_epoch
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, opts.lr, total_steps=total)
    sched_adv = torch.optim.lr_scheduler.OneCycleLR(opt_adv, opts.lr, total_steps=total)
    lo, hi = lo.to(device), hi.to(device)
    gen = torch.Generator().manual_seed(opts.seed)
    mean_t = torch.tensor(mean, dtype=torch.float32)
    std_t = torch.tensor(std, dtype=torch.float32)
    history: list[dict] = []
    step = 0
    for epoch in range(opts.epochs):
        model.train()
        perm = torch.randperm(len(data), generator=gen)
        sums: dict[str, float] = {}
        t0 = time.perf_counter()
        bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{opts.epochs}",
                   disable=not progress, file=sys.stderr, leave=False)
        for b in bar:
            idx = perm[b * opts.batch_size:(b + 1) * opts.batch_size]
            flux, ivar, labels = data.batch(idx)
            y = ((labels - mean_t) / std_t).to(device)
            flux, ivar = flux.to(device), ivar.to(device)
            classes = label_bins(torch.nan_to_num(y), lo, hi, cfg.n_bins)
            lam = adversary_weight(step, total, opts.adv_weight)
            terms = loss_terms(model, flux, ivar, y, classes, lam, opts.kl_weight)
            opt.zero_grad(set_to_none=True)
            terms["loss"].backward(inputs=main_params)
            opt_adv.zero_grad(set_to_none=True)
            if terms["adv_ce"].requires_grad:  # the adversary's own step, on detached means
                terms["adv_ce"].backward(inputs=adv_params)
                opt_adv.step()
            opt.step()
            sched.step()
            sched_adv.step()
            step += 1
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach())
            if b % 10 == 0:
                bar.set_postfix(chi2=f"{sums['chi2'] / (b + 1):.3f}", w=f"{sums['w_mse'] / (b + 1):.4f}")
        bar.close()
        rec = {k: v / steps_per_epoch for k, v in sums.items()}
        rec.update(epoch=epoch + 1, seconds=round(time.perf_counter() - t0, 1), adv_lambda=lam,
                   lr=sched.get_last_lr()[0])
        rec.update({f"val_{k}": v for k, v in _validate(model, val, mean_t, std_t, lo, hi, device).items()})
        history.append(rec)
        log(f"epoch {epoch + 1}/{opts.epochs}: loss {rec['loss']:.4f} chi2 {rec['chi2']:.3f} "
            f"val chi2 {rec['val_chi2']:.3f} kl {rec['kl']:.2f} w_mse {rec['w_mse']:.4f} "
            f"adv_ce {rec['adv_ce']:.3f} ({rec['seconds']} s)")
    model.eval()
    orient_axes(model)
    save_model(model, out, extra_config={
        "training": {"recipe": "signor2025", "survey": str(survey.path), "n_train": int(len(data)),
                     "n_val": int(len(val)), "epochs": opts.epochs,
                     "options": {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(opts).items()},
                     "history": history}})
    write_json({"history": history}, out / "history.json")
    return out


@torch.no_grad()
def _validate(model: Signor2025VAE, data, mean: torch.Tensor, std: torch.Tensor, lo: torch.Tensor,
              hi: torch.Tensor, device) -> dict:
    """Mean loss parts over a held-out set, at the posterior means."""
    model.eval()
    sums: dict[str, float] = {}
    nb = 0
    for s in range(0, len(data), 2048):
        flux, ivar, labels = data.batch(torch.arange(s, min(s + 2048, len(data))))
        y = ((labels - mean) / std).to(device)
        classes = label_bins(torch.nan_to_num(y), lo, hi, model.config.n_bins)
        terms = loss_terms(model, flux.to(device), ivar.to(device), y, classes, 0.0, sample=False)
        for k in ("chi2", "kl", "w_mse", "adv_ce"):
            sums[k] = sums.get(k, 0.0) + float(terms[k])
        nb += 1
    model.train()
    return {k: v / nb for k, v in sums.items()}
