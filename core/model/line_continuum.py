"""The survey's continuum normalisation as the line decoders see it (core/model/lines.py).

chemlatent.spectra.continuum divides every spectrum by a continuum fitted per pixel bin
(N_BINS equal pixel ranges: the mean, then N_ITER asymmetrically clipped means, linear
between bin centres). A model spectrum must go through the same division, or every line's
depth would be measured against a different continuum than the survey's. This module holds
the bins and does that division differentiably (the compiled renderer,
chemlatent.model.line_render, does the same numbers star by star).

The survey clips noisy pixels, the model's are noiseless. The clipping window is asymmetric
(1 sigma below the continuum, 3 above), so a noisy spectrum keeps more of its upward noise
and its continuum sits higher, by ~0.3 sigma: 4 % at S/N 10, 0.7 % at S/N 40 (docs/model.md,
"The continuum of a noisy spectrum"). ``noisy=True`` emulates that: each pixel of model flux f
is kept with the probability that f plus Gaussian noise of the star's sigma falls inside the
window, and contributes the mean of what is kept (a truncated Gaussian), so the emulated
continuum is the survey's expected one; ``noisy=False`` (models trained before) clips the
noiseless flux.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from chemlatent.model.star_noise import signal_to_noise
from chemlatent.spectra.continuum import N_BINS, N_ITER

SQRT2 = 1.4142135623730951
INV_SQRT_2PI = 0.3989422804014327


class ContinuumEmulator(nn.Module):
    """The continuum the survey's normaliser would fit to a model flux, at the pixels
    ``win_idx`` of a grid of ``npix`` pixels (buffers rebuilt on load, never saved)."""

    def __init__(self, npix: int, win_idx: np.ndarray, noisy: bool = False,
                 bin_noise: list | None = None) -> None:
        super().__init__()
        self.noisy = noisy
        lo = (np.arange(N_BINS) * npix) // N_BINS
        hi = ((np.arange(N_BINS) + 1) * npix) // N_BINS
        width = int((hi - lo).max())
        pix = lo[:, None] + np.arange(width)[None, :]
        valid = pix < hi[:, None]
        centre = 0.5 * (lo + hi - 1)
        p = np.asarray(win_idx, np.float64)
        j = np.clip(np.searchsorted(centre, p, side="right") - 1, 0, N_BINS - 2)
        t = np.clip((p - centre[j]) / (centre[j + 1] - centre[j]), 0.0, 1.0)
        buffers = {"bin_pix": np.where(valid, pix, npix).astype(np.int64),  # row npix: padding
                   "bin_count": valid.sum(1).astype(np.float32), "win_bin": j.astype(np.int64),
                   "win_bin_t": t.astype(np.float32),
                   # each bin's noise over the star's typical noise (noisy only; None: 1 everywhere)
                   "bin_noise": np.ones(N_BINS) if bin_noise is None else np.asarray(bin_noise)}
        for name, v in buffers.items():
            v = v.astype(np.float32) if v.dtype.kind == "f" else v
            self.register_buffer(name, torch.from_numpy(v), persistent=False)

    def forward(self, flux: torch.Tensor, sigma: torch.Tensor | None) -> torch.Tensor:
        """log continuum (n_win, B) of a pixel-major flux (npix + 1, B; row npix is padding),
        ``sigma`` (B, 1) each star's typical noise (None: noiseless). The clipping is decided
        from the values, not their gradients."""
        flux = torch.cat([flux[:-1], torch.zeros_like(flux[-1:])])  # padding 0: always clipped
        f = flux[self.bin_pix]  # (N_BINS, width, B)
        c = f.sum(1) / self.bin_count[:, None]
        sig = 0.0 if sigma is None else sigma.to(flux.dtype).T  # (1, B)
        noisy = self.noisy and sigma is not None
        for _ in range(N_ITER):
            with torch.no_grad():  # keep -sig - 0.01 c < f - c < 3 sig + 0.05 c
                cp = c.detach()
                if noisy:  # f + noise inside the window: its probability and the noise kept
                    sb = self.bin_noise[:, None] * sig  # (N_BINS, B)
                    s = sb.clamp_min(1e-6)[:, None]
                    a = ((0.99 * cp - sb)[:, None] - f.detach()) / s
                    b = ((1.05 * cp + 3.0 * sb)[:, None] - f.detach()) / s
                    keep = 0.5 * (torch.erf(b / SQRT2) - torch.erf(a / SQRT2)) * (f.detach() > 0)
                    kept_noise = (s * INV_SQRT_2PI * (torch.exp(-0.5 * a * a) - torch.exp(-0.5 * b * b))
                                  * (f.detach() > 0)).sum(1)
                else:
                    off = (f.detach() - (1.02 * cp + sig)[:, None]).abs_()
                    keep = (off < (2.0 * sig + 0.03 * cp)[:, None]).to(f.dtype)
                    kept_noise = 0.0
                count = keep.sum(1)
            new = ((f * keep).sum(1) + kept_noise) / count.clamp_min(1e-6)
            c = torch.where(count >= 3, new, c)
        c = c.clamp_min(1e-3)
        t = self.win_bin_t[:, None]
        return torch.log(c[self.win_bin] * (1.0 - t) + c[self.win_bin + 1] * t)


def bin_noise_shape(ivar: torch.Tensor) -> list[float]:
    """Each continuum bin's typical noise over the star's (star_noise.star_noise), the median over
    the stars of ``ivar`` (B, npix): what ``ContinuumEmulator(noisy=True)`` scales each star's
    noise by in that bin (a survey's noise is rarely flat: our generator's is about twice as
    large at the grid's ends)."""
    npix = ivar.shape[1]
    valid = ivar > 0
    root = ivar.clamp_min(0).sqrt() * valid
    star = signal_to_noise(ivar)
    shape = []
    for b in range(N_BINS):
        lo, hi = (b * npix) // N_BINS, ((b + 1) * npix) // N_BINS
        n = valid[:, lo:hi].sum(1)
        snr = root[:, lo:hi].sum(1) / n.clamp_min(1)
        ok = (n >= 5) & (snr > 0)
        ratio = star[ok] / snr[ok]  # bin noise over the star's noise
        shape.append(round(float(ratio.median()), 4) if ok.any() else 1.0)
    return shape
