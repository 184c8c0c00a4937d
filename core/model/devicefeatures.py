"""Encoder features and chi2 in torch, from the store's raw arrays, on any device.

The CPU encoder builds its features with numba (:mod:`chemlatent.model.features`); on a GPU that
would leave the device waiting for the host, so there the raw float16 flux and the compact
ivar are copied to the device (pinned host memory, a side CUDA stream, ``non_blocking``
copies) and the same features are computed there. The functions here run unchanged on CPU
tensors, which is how the tests check them against the numba code.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np
import torch

from chemlatent.model.features import COVERAGE_BIN, LOG_SN_OFFSET, n_coverage_bins


@dataclass
class DeviceBlock:
    """One raw block's arrays on the device (``ready``: CUDA event of their copy, or None)."""

    flux16: torch.Tensor
    mask: torch.Tensor | None
    scale: torch.Tensor | None
    ivar: torch.Tensor | None
    ready: torch.cuda.Event | None = None
    host: tuple = ()  # pinned sources, kept alive until the copies are done

    def wait(self) -> None:
        """Make the current stream wait for the copy, and keep the memory alive for it."""
        if self.ready is None:
            return
        stream = torch.cuda.current_stream(self.flux16.device)
        stream.wait_event(self.ready)
        for t in (self.flux16, self.mask, self.scale, self.ivar):
            if t is not None:
                t.record_stream(stream)
        self.ready = None


def upload(blk, device: torch.device, stream: torch.cuda.Stream | None = None) -> DeviceBlock:
    """Copy a :class:`~chemlatent.encode.streaming.RawBlock` to ``device``.

    With CUDA the host arrays go through pinned memory and the copies are issued on
    ``stream`` (returning at once); on CPU the tensors share the numpy memory.
    """
    arrays = (blk.flux16, blk.mask, blk.scale, blk.ivar)
    if device.type != "cuda":
        flux, mask, scale, ivar = (None if a is None else torch.from_numpy(np.ascontiguousarray(a))
                                   for a in arrays)
        return DeviceBlock(flux, mask, scale, ivar)
    pinned = [None if a is None else torch.from_numpy(np.ascontiguousarray(a)).pin_memory()
              for a in arrays]
    with torch.cuda.stream(stream) if stream is not None else contextlib.nullcontext():
        flux, mask, scale, ivar = (None if t is None else t.to(device, non_blocking=True) for t in pinned)
        ready = torch.cuda.Event()
        ready.record(stream)
    return DeviceBlock(flux, mask, scale, ivar, ready, tuple(pinned))


def _good_and_scale(b: DeviceBlock) -> tuple[torch.Tensor, torch.Tensor | None]:
    if b.ivar is not None:
        return b.ivar > 0, None
    sk = b.scale.float().clamp_min(0).sqrt()
    return (b.mask == 0) & (sk > 0).unsqueeze(1), sk


def features_torch(b: DeviceBlock, sqrt_profile: torch.Tensor | None) -> torch.Tensor:
    """Encoder input (n, P + n_cov + 1), as :func:`chemlatent.model.features.features_from_raw`."""
    n, npix = b.flux16.shape
    n_cov = n_coverage_bins(npix)
    good, sk = _good_and_scale(b)
    g = good.float()
    nvalid = g.sum(1).clamp_min(1)
    if sk is None:
        sn = (b.ivar.float().clamp_min(0).sqrt() * g).sum(1) / nvalid
    else:
        sn = sk * (g @ sqrt_profile) / nvalid
    out = torch.empty((n, npix + n_cov + 1), dtype=torch.float32, device=b.flux16.device)
    depth = (1.0 - b.flux16.float()).clamp_(-1.0, 1.5)
    out[:, :npix] = torch.where(good, depth, torch.zeros((), device=depth.device))
    pad = n_cov * COVERAGE_BIN - npix
    cov = torch.nn.functional.pad(g, (0, pad)) if pad else g
    out[:, npix:npix + n_cov] = cov.view(n, n_cov, COVERAGE_BIN).sum(-1) / COVERAGE_BIN
    out[:, -1] = torch.log(sn.clamp_min(1.0)) - LOG_SN_OFFSET
    return out


def pixel_sigma(b: DeviceBlock, sqrt_profile: torch.Tensor | None) -> torch.Tensor:
    """Per-pixel noise sigma (n, P) of the flux, 0 on bad pixels (for noise realisations)."""
    good, sk = _good_and_scale(b)
    if sk is None:
        iv = b.ivar.float()
        sig = torch.rsqrt(torch.where(good, iv, torch.ones((), device=iv.device)))
    else:
        sig = 1.0 / (sk.clamp_min(1e-30).unsqueeze(1) * sqrt_profile.clamp_min(1e-30).unsqueeze(0))
    return torch.where(good, sig, torch.zeros((), device=sig.device))


def chi2_torch(b: DeviceBlock, idx: torch.Tensor, rec: torch.Tensor,
               profile: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Reduced chi2 of ``rec`` (n, len(idx)) at pixels ``idx`` and the good-pixel count,
    as :func:`chemlatent.model.features.chi2_from_raw`."""
    r = b.flux16[:, idx].float() - rec.float()
    if b.ivar is not None:
        iv = b.ivar[:, idx].float().clamp_min(0)
        good = iv > 0
    else:
        s = b.scale.float()
        good = (b.mask[:, idx] == 0) & (s > 0).unsqueeze(1)
        iv = s.unsqueeze(1) * profile[idx].unsqueeze(0)
    cnt = good.sum(1)
    chi2 = torch.where(good, iv * r * r, torch.zeros((), device=r.device)).sum(1) / cnt.clamp_min(1)
    return chi2, cnt.to(torch.int32)
