"""Compiled inference path of the line decoders (core/model/lines.py): renders each star's
optical depth on the grid, divides by the continuum the survey's normaliser would fit and
returns the normalised flux at the window pixels, one star per loop iteration (numba,
parallel over stars). Encoding needs only this total flux (for chi2 and the reconstruction);
the torch path, which training differentiates, computes the same numbers
(tests/model/test_lines.py) but as many small array operations per star, ~5x slower on a CPU.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

from chemlatent.model.line_continuum import INV_SQRT_2PI, SQRT2


@nb.njit(parallel=True, fastmath=True, cache=True, nogil=True)
def render_window_flux(core_w, core_target, kern, wing_w, wing_g, wing_target, wing_dx, wing_centre,
                       wing_k, wing_cut, sig, band_tau, band_tmpl, band_lo, band_hi, sigma, niter,
                       bin_pix, bin_count, win_idx, win_bin, win_bin_t, extra, noisy, bin_noise, out):
    """out[k, i] = exp(-tau_k[win_idx[i]] - extra[k, i]) / continuum_k(win_idx[i]) for every
    star k: tau from the lines' core equivalent widths ``core_w`` (B, L) spread by ``kern``
    (L, T) on ``core_target`` (pixel npix: off the grid), the damped lines' wing widths
    ``wing_w`` and half widths ``wing_g`` (B, Lw) as Lorentzian wings (``wing_cut`` > 0: out
    to ``wing_cut`` half widths plus 5 sigma, taps at offsets ``wing_k``), and the bands
    ``band_tau`` (B, nb) times their templates; the continuum as in
    chemlatent.spectra.continuum (clipped bin means with noise ``sigma`` (B,), linear between
    bin centres; ``noisy``: clipped as the survey clips noisy pixels, in expectation, each
    bin's noise ``bin_noise`` times the star's, chemlatent.model.line_continuum)."""
    n = core_w.shape[0]
    npix = band_tmpl.shape[1]
    n_lines, n_taps = kern.shape
    n_wing, n_wtaps = wing_dx.shape
    n_bins = bin_pix.shape[0]
    sig2 = sig * sig
    for k in nb.prange(n):
        tau = np.zeros(npix + 1, dtype=np.float32)
        for ln in range(n_lines):
            wk = core_w[k, ln]
            for t in range(n_taps):
                tau[core_target[ln, t]] += wk * kern[ln, t]
        prof = np.empty(n_wtaps, dtype=np.float32)
        for ln in range(n_wing):
            g2 = wing_g[k, ln] * wing_g[k, ln]
            reach = math.floor(wing_cut * wing_g[k, ln] + 5.0 * sig) + 1.0 if wing_cut > 0 else 1e9
            area = 0.0
            for t in range(n_wtaps):
                u = g2 / (wing_dx[ln, t] * wing_dx[ln, t] + sig2)
                prof[t] = u / (1.0 + u) if abs(wing_k[t]) <= reach else 0.0
                area += prof[t]
            scale = wing_w[k, ln] / max(area, 1e-12) * wing_centre[ln]
            for t in range(n_wtaps):
                d = min(scale * prof[t], 0.95)
                tau[wing_target[ln, t]] += -math.log1p(-d)
        for b in range(band_tau.shape[1]):
            tb = band_tau[k, b]
            for j in range(band_lo[b], band_hi[b]):
                tau[j] += tb * band_tmpl[b, j]
        flux = np.empty(npix + 1, dtype=np.float32)
        for j in range(npix):
            flux[j] = math.exp(-tau[j])
        flux[npix] = 0.0  # bin padding: always clipped
        cont = np.empty(n_bins, dtype=np.float32)
        s_k = sigma[k]
        for b in range(n_bins):
            lo = bin_pix[b, 0]  # a bin is a contiguous pixel range
            hi = lo + int(bin_count[b])
            c = 0.0
            for j in range(lo, hi):
                c += flux[j]
            c /= hi - lo
            s_b = s_k * bin_noise[b] if noisy else s_k
            for _ in range(niter):
                mid = 1.02 * c + s_b
                half = 2.0 * s_b + 0.03 * c
                s = 0.0
                cnt = 0.0
                if noisy and s_b > 0:
                    sd = max(s_b, 1e-6)
                    for j in range(lo, hi):
                        f = flux[j]
                        if f > 0:
                            za = (mid - half - f) / sd
                            zb = (mid + half - f) / sd
                            p = 0.5 * (math.erf(zb / SQRT2) - math.erf(za / SQRT2))
                            kept = math.exp(-0.5 * za * za) - math.exp(-0.5 * zb * zb)
                            s += f * p + sd * INV_SQRT_2PI * kept
                            cnt += p
                else:
                    for j in range(lo, hi):
                        f = flux[j]
                        if abs(f - mid) < half:
                            s += f
                            cnt += 1.0
                if cnt >= 3:
                    c = s / cnt
            cont[b] = max(c, 1e-3)
        for i in range(win_idx.shape[0]):
            j = win_bin[i]
            t = win_bin_t[i]
            c = cont[j] * (1.0 - t) + cont[j + 1] * t
            out[k, i] = math.exp(-tau[win_idx[i]] - extra[k, i]) / c


def band_ranges(tmpl: np.ndarray, floor: float = 1e-4) -> tuple[np.ndarray, np.ndarray]:
    """First and one-past-last pixel where each band template exceeds ``floor`` (of its peak
    1; the synthetic generator cuts its bands there too)."""
    lo = np.zeros(tmpl.shape[0], np.int64)
    hi = np.zeros(tmpl.shape[0], np.int64)
    for b, row in enumerate(tmpl):
        nz = np.nonzero(row > floor)[0]
        if nz.size:
            lo[b], hi[b] = nz[0], nz[-1] + 1
    return lo, hi
