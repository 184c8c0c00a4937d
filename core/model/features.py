"""Encoder input features computed straight from the store's raw arrays (fast CPU path).

The model's ``features()`` (torch) defines the features; this module computes exactly the
same thing from float16 flux bits and the compact ivar layout with numba, so that encoding
on CPU is not limited by data preparation. A test checks both agree.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numba as nb
import numpy as np

COVERAGE_BIN = 30
LOG_SN_OFFSET = 3.5  # the encoder's last input is log(S/N) - LOG_SN_OFFSET


@lru_cache(maxsize=1)
def half_lut() -> np.ndarray:
    """float32 value of every float16 bit pattern (65536 entries)."""
    return np.arange(65536, dtype=np.uint16).view(np.float16).astype(np.float32)


@nb.njit(fastmath=True, cache=True, nogil=True)
def _features_scaled_row(k, bits, mask, scale, sqrt_prof, lut, n_cov, out):
    P = bits.shape[1]
    sk = math.sqrt(max(scale[k], 0.0))
    sn_sum = 0.0
    nvalid = 0
    for b in range(n_cov):
        j0 = b * COVERAGE_BIN
        j1 = min(j0 + COVERAGE_BIN, P)
        cnt = 0
        for j in range(j0, j1):
            good = mask[k, j] == 0 and sk > 0
            d = min(max(1.0 - lut[bits[k, j]], -1.0), 1.5)
            out[k, j] = d if good else 0.0
            if good:
                cnt += 1
                sn_sum += sqrt_prof[j]
        out[k, P + b] = cnt / COVERAGE_BIN
        nvalid += cnt
    sn = sk * sn_sum / max(nvalid, 1)
    out[k, P + n_cov] = math.log(max(sn, 1.0)) - LOG_SN_OFFSET


@nb.njit(fastmath=True, cache=True, nogil=True)
def _features_full_row(k, bits, ivar, lut, n_cov, out):
    P = bits.shape[1]
    sn_sum = 0.0
    nvalid = 0
    for b in range(n_cov):
        out[k, P + b] = 0.0
    for j in range(P):
        v = ivar[k, j]
        if v > 0:
            d = 1.0 - lut[bits[k, j]]
            d = min(max(d, -1.0), 1.5)
            out[k, j] = d
            out[k, P + j // COVERAGE_BIN] += 1.0
            sn_sum += math.sqrt(v)
            nvalid += 1
        else:
            out[k, j] = 0.0
    for b in range(n_cov):
        out[k, P + b] /= COVERAGE_BIN
    sn = sn_sum / max(nvalid, 1)
    out[k, P + n_cov] = math.log(max(sn, 1.0)) - LOG_SN_OFFSET


@nb.njit(parallel=True, fastmath=True, cache=True, nogil=True)
def _features_scaled(bits, mask, scale, sqrt_prof, lut, n_cov, out):
    for k in nb.prange(bits.shape[0]):
        _features_scaled_row(k, bits, mask, scale, sqrt_prof, lut, n_cov, out)


@nb.njit(fastmath=True, cache=True, nogil=True)
def _features_scaled_serial(bits, mask, scale, sqrt_prof, lut, n_cov, out):
    for k in range(bits.shape[0]):
        _features_scaled_row(k, bits, mask, scale, sqrt_prof, lut, n_cov, out)


@nb.njit(parallel=True, fastmath=True, cache=True, nogil=True)
def _features_full(bits, ivar, lut, n_cov, out):
    for k in nb.prange(bits.shape[0]):
        _features_full_row(k, bits, ivar, lut, n_cov, out)


@nb.njit(fastmath=True, cache=True, nogil=True)
def _features_full_serial(bits, ivar, lut, n_cov, out):
    for k in range(bits.shape[0]):
        _features_full_row(k, bits, ivar, lut, n_cov, out)


def n_coverage_bins(npix: int) -> int:
    return -(-npix // COVERAGE_BIN)


def features_from_raw(flux16: np.ndarray, *, mask: np.ndarray | None = None,
                      scale: np.ndarray | None = None, profile: np.ndarray | None = None,
                      ivar: np.ndarray | None = None, out: np.ndarray | None = None,
                      threads: bool = True) -> np.ndarray:
    """Encoder features (n, P + n_cov + 1) float32 from float16 flux and either
    (mask, scale, profile) or a full ivar array. ``threads=False`` runs in the calling
    thread (for callers that already split the work over threads, e.g. per tile)."""
    flux16 = np.ascontiguousarray(flux16, dtype=np.float16)
    n, P = flux16.shape
    n_cov = n_coverage_bins(P)
    if out is None:
        out = np.empty((n, P + n_cov + 1), np.float32)
    bits = flux16.view(np.uint16)
    if ivar is None:
        kernel = _features_scaled if threads else _features_scaled_serial
        kernel(bits, np.ascontiguousarray(mask, dtype=np.uint8),
               np.ascontiguousarray(scale, dtype=np.float32),
               np.sqrt(np.asarray(profile, dtype=np.float32)), half_lut(), n_cov, out)
    else:
        kernel = _features_full if threads else _features_full_serial
        kernel(bits, np.ascontiguousarray(ivar, dtype=np.float32), half_lut(), n_cov, out)
    return out


@nb.njit(fastmath=True, cache=True, nogil=True)
def _chi2_scaled_row(k, bits, mask, scale, prof, lut, idx, rec, chi2, ngood):
    s = 0.0
    c = 0
    sk = scale[k]
    for q in range(idx.size):
        j = idx[q]
        if mask[k, j] == 0 and sk > 0:
            r = lut[bits[k, j]] - rec[k, q]
            s += sk * prof[j] * r * r
            c += 1
    chi2[k] = s / max(c, 1)
    ngood[k] = c


@nb.njit(fastmath=True, cache=True, nogil=True)
def _chi2_full_row(k, bits, ivar, lut, idx, rec, chi2, ngood):
    s = 0.0
    c = 0
    for q in range(idx.size):
        j = idx[q]
        v = ivar[k, j]
        if v > 0:
            r = lut[bits[k, j]] - rec[k, q]
            s += v * r * r
            c += 1
    chi2[k] = s / max(c, 1)
    ngood[k] = c


@nb.njit(parallel=True, fastmath=True, cache=True, nogil=True)
def _chi2_scaled(bits, mask, scale, prof, lut, idx, rec, chi2, ngood):
    for k in nb.prange(bits.shape[0]):
        _chi2_scaled_row(k, bits, mask, scale, prof, lut, idx, rec, chi2, ngood)


@nb.njit(fastmath=True, cache=True, nogil=True)
def _chi2_scaled_serial(bits, mask, scale, prof, lut, idx, rec, chi2, ngood):
    for k in range(bits.shape[0]):
        _chi2_scaled_row(k, bits, mask, scale, prof, lut, idx, rec, chi2, ngood)


@nb.njit(parallel=True, fastmath=True, cache=True, nogil=True)
def _chi2_full(bits, ivar, lut, idx, rec, chi2, ngood):
    for k in nb.prange(bits.shape[0]):
        _chi2_full_row(k, bits, ivar, lut, idx, rec, chi2, ngood)


@nb.njit(fastmath=True, cache=True, nogil=True)
def _chi2_full_serial(bits, ivar, lut, idx, rec, chi2, ngood):
    for k in range(bits.shape[0]):
        _chi2_full_row(k, bits, ivar, lut, idx, rec, chi2, ngood)


def chi2_from_raw(flux16: np.ndarray, idx: np.ndarray, rec: np.ndarray, *,
                  mask: np.ndarray | None = None, scale: np.ndarray | None = None,
                  profile: np.ndarray | None = None, ivar: np.ndarray | None = None,
                  threads: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Reduced chi2 of reconstructions ``rec`` (n, len(idx)) at pixels ``idx``, and the
    number of good pixels used (``threads`` as in :func:`features_from_raw`)."""
    n = flux16.shape[0]
    bits = np.ascontiguousarray(flux16).view(np.uint16)
    chi2 = np.empty(n, np.float32)
    ngood = np.empty(n, np.int32)
    rec = np.ascontiguousarray(rec, dtype=np.float32)
    idx = np.asarray(idx, np.int64)
    if ivar is None:
        kernel = _chi2_scaled if threads else _chi2_scaled_serial
        kernel(bits, np.ascontiguousarray(mask, dtype=np.uint8), np.asarray(scale, np.float32),
               np.asarray(profile, np.float32), half_lut(), idx, rec, chi2, ngood)
    else:
        kernel = _chi2_full if threads else _chi2_full_serial
        kernel(bits, np.ascontiguousarray(ivar, np.float32), half_lut(), idx, rec, chi2, ngood)
    return chi2, ngood
