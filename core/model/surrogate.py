"""A fast stand-in for the line decoders where encoding needs only a reconstruction.

Encoding a survey computes each star's reduced chi2 against its reconstruction (the anomaly
scores read it). The line decoders render every line of the line list and emulate the survey's
continuum normalisation: exact, but about 25,000 stars/s on 2 CPU cores, as slow as the whole
rest of encoding. The surrogate is a small network fitted after training to reproduce the line
decoders' window flux from (z, w, log noise) over the training stars' latents (and a jittered
copy of them, so the latent range the encoding clamps into is covered): it makes a line model
encode as fast as an MLP-decoder model. Only the chi2 of encoding uses it; the latents never
do, and everything that draws or refines a spectrum (the spectrum view, refinement, training)
uses the line decoders themselves. Its rms difference from them on held-out stars is recorded
in config.json (``training.surrogate``) and is well below the survey noise
(tests/model/test_surrogate.py; docs/model.md, "Encoding a line model fast").
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
from torch import nn

N_IN = 6  # z (3), w (2), log noise (1)


def _mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(nn.SiLU())
    return nn.Sequential(*layers)


class ReconstructionSurrogate(nn.Module):
    """(z, w, sigma) -> normalised window flux (B, n_out), inputs standardised by stored
    means and scales."""

    def __init__(self, n_out: int, hidden: list[int]) -> None:
        super().__init__()
        self.net = _mlp([N_IN, *hidden, n_out])
        self.register_buffer("in_mean", torch.zeros(N_IN))
        self.register_buffer("in_scale", torch.ones(N_IN))

    def inputs(self, z: torch.Tensor, w: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        return torch.cat([z.float(), w.float(), torch.log(sigma.float().clamp_min(1e-4))], 1)

    def forward(self, z: torch.Tensor, w: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        x = (self.inputs(z, w, sigma) - self.in_mean) / self.in_scale
        return 1.0 + self.net(x.to(self.net[0].weight.dtype)).float()


@torch.no_grad()
def _examples(model, batch: Callable, rows: torch.Tensor, noise: Callable, jitter: float,
              gen: torch.Generator, chunk: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """Surrogate inputs and the line decoders' flux: each star's encoded (z, w, noise), and
    a copy with z moved by ``jitter`` times the training stars' spread (clamped into the
    model's latent range)."""
    xs = []
    for part in rows.split(chunk):
        flux, ivar, _ = batch(part)
        mu, _, w = model.encode(flux.float(), ivar.float())
        sigma = noise(ivar.float())
        xs.append((mu, w, sigma))
    z = torch.cat([x[0] for x in xs])
    w = torch.cat([x[1] for x in xs])
    sigma = torch.cat([x[2] for x in xs])
    spread = z.std(0, keepdim=True)
    moved = model.bound(z + jitter * spread * torch.randn(z.shape, generator=gen))
    z, w, sigma = torch.cat([z, moved]), torch.cat([w, w]), torch.cat([sigma, sigma])
    flux = torch.cat([model.decode(z[i:i + chunk], w[i:i + chunk], selective=False,
                                   sigma=sigma[i:i + chunk])[:, model.chi2_pos]
                      for i in range(0, len(z), chunk)])
    return torch.cat([z, w, sigma], 1), flux.float()


def fit_surrogate(model, batch: Callable, n: int, noise: Callable, *, stars: int = 30_000, epochs: int = 30,
                  hidden: tuple = (128, 256), jitter: float = 0.3, seed: int = 0,
                  log: Callable[[str], None] = print) -> dict:
    """Fit a ReconstructionSurrogate to ``model``'s line decoders on up to ``stars`` rows of
    ``batch`` (plus their jittered copies), ``noise(ivar)`` each star's typical noise (B, 1)
    (chemlatent.model.star_noise.star_noise), attach it (``model.set_surrogate``) and return a
    summary: the held-out rms difference (flux units) and the seconds it took."""
    t0 = time.perf_counter()
    gen = torch.Generator().manual_seed(seed)
    rows = torch.randperm(n, generator=gen)[:stars]
    x, y = _examples(model, batch, rows, noise, jitter, gen)
    n_test = max(len(x) // 20, 1)
    perm = torch.randperm(len(x), generator=gen)
    test, train = perm[:n_test], perm[n_test:]
    sur = ReconstructionSurrogate(y.shape[1], list(hidden))
    inp = sur.inputs(x[:, :3], x[:, 3:5], x[:, 5:])
    sur.in_mean.copy_(inp[train].mean(0))
    sur.in_scale.copy_(inp[train].std(0).clamp_min(1e-3))
    opt = torch.optim.Adam(sur.parameters(), lr=2e-3)
    steps = epochs * ((len(train) + 511) // 512)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps)
    with torch.enable_grad():
        for _ in range(epochs):
            for idx in train[torch.randperm(len(train), generator=gen)].split(512):
                loss = ((sur(x[idx, :3], x[idx, 3:5], x[idx, 5:]) - y[idx]) ** 2).mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
    sur.eval()
    with torch.no_grad():
        err = sur(x[test, :3], x[test, 3:5], x[test, 5:]) - y[test]
        rms = float(err.pow(2).mean().sqrt())
        noise = float(x[test, 5].median())
    model.set_surrogate(sur, list(hidden))
    summary = {"stars": int(len(rows)), "hidden": list(hidden), "epochs": epochs, "rms": round(rms, 5),
               "p99_abs": round(float(err.abs().quantile(0.99)), 5) if err.numel() < 2**24 else None,
               "median_noise": round(noise, 5), "seconds": round(time.perf_counter() - t0, 1)}
    log(f"reconstruction surrogate: rms {rms:.4f} against the line decoders on held-out stars "
        f"(median noise {noise:.4f}), {summary['seconds']} s")
    return summary
