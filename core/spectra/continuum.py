"""Continuum normalisation shared by the synthetic generator and real-file ingestion.

An iterative, asymmetrically clipped fit in wide pixel bins, linearly interpolated between
bin centres. Used identically for synthetic spectra (which are rendered on a random smooth
pseudo-continuum and then normalised) and for real spectra, so both carry the same kind of
normalisation error (depressed continuum in line-rich regions, noise at low S/N).
"""

from __future__ import annotations

import numba as nb
import numpy as np

N_BINS = 40
N_ITER = 2


@nb.njit(cache=True, fastmath=True)
def _continuum_one(flux, ivar, nbins, niter, out):
    """Continuum of one spectrum into ``out``; O(niter * P), no sorting."""
    P = flux.shape[0]
    sig = np.empty(P, dtype=np.float32)
    for p in range(P):
        v = ivar[p]
        f = flux[p]
        sig[p] = 1.0 / np.sqrt(v) if (v > 0 and np.isfinite(f)) else -1.0
    xs = np.empty(nbins)
    ys = np.empty(nbins)
    ng = 0
    for b in range(nbins):
        lo = (b * P) // nbins
        hi = ((b + 1) * P) // nbins
        s = 0.0
        w = 0
        for p in range(lo, hi):
            if sig[p] > 0:
                s += flux[p]
                w += 1
        if w < 5:
            continue
        c = s / w
        for _ in range(niter):
            s = 0.0
            w = 0
            tol_lo = 0.01 * abs(c)
            tol_hi = 0.05 * abs(c)
            for p in range(lo, hi):
                sp = sig[p]
                if sp > 0:
                    d = flux[p] - c
                    if d > -sp - tol_lo and d < 3.0 * sp + tol_hi:
                        s += flux[p]
                        w += 1
            if w < 3:
                break
            c = s / w
        if c > 0:
            xs[ng] = 0.5 * (lo + hi - 1)
            ys[ng] = c
            ng += 1
    if ng == 0:
        for p in range(P):
            out[p] = np.nan
        return
    j = 0
    for p in range(P):
        if p <= xs[0]:
            out[p] = ys[0]
        elif p >= xs[ng - 1]:
            out[p] = ys[ng - 1]
        else:
            while xs[j + 1] < p:
                j += 1
            t = (p - xs[j]) / (xs[j + 1] - xs[j])
            out[p] = ys[j] + t * (ys[j + 1] - ys[j])


@nb.njit(parallel=True, cache=True)
def _continuum_many(flux, ivar, nbins, niter, out):
    for i in nb.prange(flux.shape[0]):
        _continuum_one(flux[i], ivar[i], nbins, niter, out[i])


def fit_continuum(flux: np.ndarray, ivar: np.ndarray, nbins: int = N_BINS,
                  niter: int = N_ITER) -> np.ndarray:
    """Continuum estimate for one spectrum (P,) or many (N, P); NaN where nothing is valid."""
    flux2 = np.ascontiguousarray(np.atleast_2d(flux), dtype=np.float32)
    ivar2 = np.ascontiguousarray(np.atleast_2d(ivar), dtype=np.float32)
    out = np.empty_like(flux2)
    _continuum_many(flux2, ivar2, nbins, niter, out)
    return out[0] if np.ndim(flux) == 1 else out


def normalise(flux: np.ndarray, ivar: np.ndarray, nbins: int = N_BINS,
              niter: int = N_ITER) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Divide by the fitted continuum: returns (normalised flux, normalised ivar, continuum).

    Pixels where the continuum is not positive and finite get flux 1 and ivar 0.
    """
    cont = fit_continuum(flux, ivar, nbins, niter)
    ok = np.isfinite(cont) & (cont > 0)
    safe = np.where(ok, cont, 1.0)
    nflux = np.where(ok, np.asarray(flux) / safe, 1.0)
    nivar = np.where(ok, np.asarray(ivar) * safe**2, 0.0)
    bad = ~np.isfinite(nflux) | ~np.isfinite(nivar)
    nflux[bad] = 1.0
    nivar[bad] = 0.0
    return nflux.astype(np.float32), nivar.astype(np.float32), cont
