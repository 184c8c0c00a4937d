"""Stellar populations of the synthetic survey: labels drawn per star from (seed, index).

Every random number is a counter-based hash of (seed, star index, draw number), so any star
can be regenerated alone, and chunking or threading never changes a star.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pandas as pd
from scipy.special import ndtri

POPULATIONS = ("thin_disc", "thick_disc", "halo", "halo_accreted", "halo_alpha_poor")
EVOL_STATES = ("dwarf", "subgiant", "rgb", "red_clump")
N_DRAWS = 48

_M1 = np.uint64(0x9E3779B97F4A7C15)
_M2 = np.uint64(0xBF58476D1CE4E5B9)
_M3 = np.uint64(0x94D049BB133111EB)
_SEED_MUL = np.uint64(0xD1B54A32D192ED03)


def _mix(z: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser (vectorised, wrapping uint64 arithmetic)."""
    z = z ^ (z >> np.uint64(30))
    z = z * _M2
    z = z ^ (z >> np.uint64(27))
    z = z * _M3
    return z ^ (z >> np.uint64(31))


def star_key(seed: int, idx: np.ndarray) -> np.ndarray:
    """64-bit key of each star, shared with the pixel-noise generator."""
    with np.errstate(over="ignore"):
        s = np.uint64(seed & 0xFFFFFFFFFFFFFFFF) * _SEED_MUL
        return _mix(s ^ (np.asarray(idx, dtype=np.uint64) * _M1))


def star_uniforms(seed: int, idx: np.ndarray, k: int = N_DRAWS) -> np.ndarray:
    """(n, k) uniforms in (0, 1), a pure function of (seed, star index, column)."""
    key = star_key(seed, idx)
    cols = (np.arange(1, k + 1, dtype=np.uint64) * _M1)[None, :]
    with np.errstate(over="ignore"):
        z = _mix((key[:, None] + cols) ^ np.uint64(0x5851F42D4C957F2D))
    return ((z >> np.uint64(11)).astype(np.float64) + 0.5) / float(1 << 53)


def _truncnorm(u: np.ndarray, mu, sd, lo, hi) -> np.ndarray:
    """Truncated normal by inverse CDF from a uniform."""
    from scipy.special import ndtr

    a = ndtr((lo - mu) / sd)
    b = ndtr((hi - mu) / sd)
    return mu + sd * ndtri(a + u * (b - a))


def sample_labels(seed: int, idx: np.ndarray,
                  mix: tuple[float, float, float] = (0.42, 0.25, 0.33),
                  snr: tuple[float, float, str] = (10.0, 90.0, "beta")) -> pd.DataFrame:
    """True labels and population tags for stars ``idx`` of survey ``seed``; ``mix``: the
    fractions of thin disc, thick disc and halo (summing to 1); ``snr``: the S/N range and
    its shape (:func:`snr_from_uniform`)."""
    idx = np.asarray(idx, dtype=np.int64)
    u = star_uniforms(seed, idx)
    n = idx.size
    g = ndtri(u)  # standard normals, column by column

    # Galactic component (a metal-poor-targeted survey: generous halo)
    uc = u[:, 0]
    thin, thick = float(mix[0]), float(mix[0]) + float(mix[1])
    comp = np.where(uc < thin, 0, np.where(uc < thick, 1, 2))
    halo_sub = u[:, 1]
    pop = comp.copy()
    pop[(comp == 2) & (halo_sub < 0.28)] = 3  # accreted, low-alpha halo
    pop[(comp == 2) & (halo_sub >= 0.28) & (halo_sub < 0.38)] = 4  # alpha-poor metal-poor tail

    feh = np.empty(n)
    m = pop == 0
    feh[m] = _truncnorm(u[m, 2], -0.10, 0.22, -1.0, 0.5)
    m = pop == 1
    feh[m] = _truncnorm(u[m, 2], -0.55, 0.30, -1.6, 0.3)
    m = pop >= 2
    deep = u[m, 3] < 0.35
    feh[m] = np.where(deep, _truncnorm(u[m, 2], -2.5, 0.5, -3.5, -0.7),
                      _truncnorm(u[m, 2], -1.45, 0.45, -3.5, -0.6))
    m = pop == 3
    feh[m] = _truncnorm(u[m, 2], -1.3, 0.35, -2.5, -0.6)

    alpha = np.empty(n)
    m = pop == 0
    alpha[m] = -0.12 * feh[m] + 0.04 * g[m, 4]
    m = pop == 1
    alpha[m] = 0.30 - 0.225 * np.maximum(feh[m] + 0.6, 0.0) + 0.04 * g[m, 4]
    m = pop == 2
    alpha[m] = 0.34 + 0.06 * g[m, 4]
    m = pop == 3
    alpha[m] = 0.12 - 0.22 * (feh[m] + 1.0) + 0.06 * g[m, 4]
    m = pop == 4
    alpha[m] = -0.15 + 0.09 * g[m, 4]
    alpha = np.clip(alpha, -0.4, 0.65)

    # Evolutionary state, Teff, logg
    ue = u[:, 5]
    evol = np.where(ue < 0.45, 0, np.where(ue < 0.57, 1, np.where(ue < 0.90, 2, 3)))
    teff = np.empty(n)
    logg = np.empty(n)
    m = evol == 0
    mp = feh[m] < -1.0
    teff[m] = np.where(mp, _truncnorm(u[m, 6], 5950, 380, 4300, 6900),
                       _truncnorm(u[m, 6], 5700, 600, 3850, 6900))
    x = (teff[m] - 4000.0) / 2500.0
    logg[m] = 4.72 - 0.45 * x**2 + 0.07 * g[m, 7]
    m = evol == 1
    teff[m] = 5000 + 1300 * u[m, 6]
    logg[m] = np.clip(3.6 + 0.25 * (teff[m] - 5000) / 1300 + 0.12 * g[m, 7], 3.3, 4.1)
    m = evol == 2
    logg[m] = 0.5 + 3.0 * _beta_like(u[m, 6])
    teff[m] = 4650 + 320 * (logg[m] - 2.5) - 110 * feh[m] + 50 * g[m, 7]
    m = evol == 3
    hb = m & (feh < -1.0)
    rc = m & ~hb
    logg[rc] = 2.45 + 0.10 * g[rc, 7]
    teff[rc] = 4700 - 150 * feh[rc] + 70 * g[rc, 8]
    logg[hb] = 2.6 + 0.2 * g[hb, 7]
    teff[hb] = 5200 + 1600 * u[hb, 6]
    teff = np.clip(teff, 3800, 7000)
    logg = np.clip(logg, 0.5, 5.0)

    # Carbon: CEMP fraction rises toward low metallicity; giants deplete C by mixing
    p_cemp = 0.002 + 0.40 / (1.0 + np.exp(-(-feh - 2.3) / 0.35))
    cemp = u[:, 9] < p_cemp
    cfe = 0.05 + 0.12 * g[:, 10]
    cfe += np.where(feh < -2.0, 0.15, 0.0)
    cfe -= np.where(logg < 2.0, 0.35 * (2.0 - logg) / 1.5, 0.0)
    cfe[cemp] = _truncnorm(u[cemp, 11], 1.4, 0.6, 0.5, 3.0)
    nfe = 0.0 + 0.1 * g[:, 12] + np.where(logg < 2.0, 0.3 * (2.0 - logg) / 1.5, 0.0)

    vmicro = np.clip(1.0 + 0.25 * (4.5 - logg) + 0.3 * (teff - 5500) / 1000 + 0.1 * g[:, 13], 0.6, 2.8)
    snr = snr_from_uniform(u[:, 14], *snr)
    rv = 4.0 * g[:, 15]
    ra = 360.0 * u[:, 16]
    dec = np.degrees(np.arcsin(2.0 * u[:, 17] - 1.0))

    return pd.DataFrame({
        "star_id": idx,
        "ra": ra, "dec": dec,
        "snr": snr.astype(np.float32),
        "teff": teff.astype(np.float32), "logg": logg.astype(np.float32),
        "fe_h": feh.astype(np.float32), "c_fe": cfe.astype(np.float32),
        "alpha_fe": alpha.astype(np.float32), "n_fe": nfe.astype(np.float32),
        "vmicro": vmicro.astype(np.float32), "rv_residual": rv.astype(np.float32),
        "population": pd.Categorical.from_codes(pop, POPULATIONS),
        "evol": pd.Categorical.from_codes(evol, EVOL_STATES),
        "cemp_population": cemp,
    })


def _beta_like(u: np.ndarray) -> np.ndarray:
    """Skewed toward 1 (lower RGB more common than the tip): inverse CDF of x^1.6."""
    return u ** (1.0 / 1.6)


@lru_cache(maxsize=1)
def _beta_quantiles() -> np.ndarray:
    from scipy.special import betaincinv

    return betaincinv(2.2, 2.4, np.linspace(0.0, 1.0, 8193))


SNR_SHAPES = ("beta", "uniform", "log")


def snr_from_uniform(u: np.ndarray, lo: float = 10.0, hi: float = 90.0, shape: str = "beta"
                     ) -> np.ndarray:
    """S/N from uniforms ``u`` within ``lo``-``hi``: "beta" peaks near the middle of the range
    (the generator's own, 45-50 within 10-90); "uniform" is flat; "log" is uniform in log S/N,
    as many stars per factor of S/N (a magnitude-limited survey such as LAMOST: most stars
    faint)."""
    if shape == "log":
        return lo * (hi / lo) ** u
    if shape == "uniform":
        return lo + (hi - lo) * u
    return lo + (hi - lo) * _beta_snr(u)


def _beta_snr(u: np.ndarray) -> np.ndarray:
    """S/N shape peaking near 45-50 within 10-90 (Beta(2.2, 2.4) by a tabulated inverse CDF)."""
    return np.interp(u, np.linspace(0.0, 1.0, 8193), _beta_quantiles())


def element_offsets(seed: int, idx: np.ndarray, elements: list[str]) -> np.ndarray:
    """Small star-to-star scatter of individual elements around their group (dex)."""
    u = star_uniforms(seed ^ 0x5EED, idx, len(elements))
    scale = np.array([0.08 if e in ("Na", "Al", "K", "Mn", "Ba", "Sr", "Y", "Zr") else
                      0.0 if e in ("H", "C", "Fe") else 0.03 for e in elements])
    return ndtri(u) * scale[None, :]
