"""The latent range a model was trained on, and the bound that keeps encodings inside it.

A trained encoder is a guess fitted to the training stars; for a handful of stars unlike any
it was fitted to (the strongest carbon stars, mostly) it can extrapolate far outside the
population (measured: 0.16 % of a survey at z_fe = -26 and z_c = +35 where the population
spans -6..-1 and 0..6; docs/model.md "Bounded latents"). Those few points then decide a
Pearson r and a least-squares calibration. Training therefore records, per axis, the range of
the training stars' latents (the 0.1 and 99.9 percentiles, widened by half their span on each
side) and encoding clamps every posterior mean into it: a star at the bound reads "beyond
what this model was trained on, in this direction", which is all the encoder knows about it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

RANGE_QUANTILE = 0.001  # the range runs from this quantile to 1 - it ...
RANGE_WIDEN = 0.5  # ... widened by this share of its span on each side


def fit_latent_range(z: np.ndarray, quantile: float = RANGE_QUANTILE,
                     widen: float = RANGE_WIDEN) -> list[list[float]]:
    """Per axis [lo, hi] of latents ``z`` (N, 3): the quantiles widened by ``widen`` x span."""
    z = np.asarray(z, np.float64)
    if z.ndim != 2 or z.shape[0] < 2:
        raise ValueError(f"need at least two latent rows to fit a range, got shape {z.shape}")
    finite = z[np.isfinite(z).all(axis=1)]
    if len(finite) < 2:
        raise ValueError("fewer than two finite latent rows to fit a range")
    lo, hi = np.quantile(finite, [quantile, 1.0 - quantile], axis=0)
    span = np.maximum(hi - lo, 1e-6)
    return [[round(float(a), 4), round(float(b), 4)] for a, b in zip(lo - widen * span, hi + widen * span)]


def range_tensors(latent_range: list | None, n_axes: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """(lo, hi) tensors of a stored range; -inf/+inf (no bound) when there is none."""
    if latent_range is None:
        return torch.full((n_axes,), -float("inf")), torch.full((n_axes,), float("inf"))
    arr = torch.tensor(latent_range, dtype=torch.float32)
    if arr.shape != (n_axes, 2) or not bool((arr[:, 0] < arr[:, 1]).all()):
        raise ValueError(f"latent_range must be {n_axes} pairs [lo, hi] with lo < hi, got {latent_range}")
    return arr[:, 0].clone(), arr[:, 1].clone()


def outside_share(z: np.ndarray, latent_range: list) -> float:
    """The share of rows of ``z`` with at least one axis outside ``latent_range``."""
    lo, hi = (np.asarray(v, np.float64) for v in zip(*latent_range))
    z = np.asarray(z, np.float64)
    return float(((z < lo) | (z > hi)).any(axis=1).mean()) if len(z) else 0.0


@torch.no_grad()
def encoded_means(model, batch: Callable[[torch.Tensor], tuple], rows: torch.Tensor,
                  device: torch.device | str = "cpu", chunk: int = 2048, bounded: bool = False) -> np.ndarray:
    """The model's posterior means (reported axes) of ``rows`` of a data source (unbounded
    unless ``bounded``)."""
    out = []
    for part in rows.split(chunk):
        flux, ivar = (t.to(device) for t in batch(part)[:2])
        out.append(model.encode(flux, ivar, bounded=bounded)[0].float().cpu())
    return torch.cat(out).numpy() if out else np.zeros((0, 3), np.float32)


def bound_to_training_range(model, train_batch: Callable[[torch.Tensor], tuple], n_train: int,
                            val_batch: Callable[[torch.Tensor], tuple], n_val: int,
                            device: torch.device | str = "cpu", log: Callable[[str], None] = print,
                            stars: int = 20_000) -> list[list[float]]:
    """Fit the range on up to ``stars`` random training rows, record it in the model
    (``set_latent_range``) and log how many validation rows it clamps."""
    rows = torch.randperm(n_train, generator=torch.Generator().manual_seed(7))[:stars]
    rng = fit_latent_range(encoded_means(model, train_batch, rows, device))
    share = outside_share(encoded_means(model, val_batch, torch.arange(n_val), device), rng) if n_val else 0.0
    model.set_latent_range(rng)
    axes = ", ".join(f"{a} [{lo:+.2f}, {hi:+.2f}]" for a, (lo, hi) in zip(("z_fe", "z_c", "z_alpha"), rng))
    log(f"latent range {axes}: clamps {100 * share:.2f} % of the validation stars")
    return rng
