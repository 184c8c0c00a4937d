"""Synthetic survey generator: physically motivated low-resolution spectra with true labels.

Pipeline per star (all deterministic from (seed, star index)):
labels (populations.py) -> line-centre optical depths and equivalent widths from the curve of
growth (physics.py) -> pixels: unresolved line cores as LSF Gaussians, resolved pressure/Stark
wings, molecular bands -> a random smooth pseudo-continuum and instrument throughput ->
Gaussian noise at the star's S/N with a wavelength-dependent noise profile -> bad pixels ->
the same continuum normalisation used for real spectra (continuum.py).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path

import numba as nb
import numpy as np
import pandas as pd
from scipy.special import ndtri

from chemlatent import __version__
from chemlatent.io.store import Survey, SurveyWriter
from chemlatent.spectra.continuum import N_BINS, N_ITER, _continuum_one
from chemlatent.spectra.grid import DEFAULT_GRID, WavelengthGrid
from chemlatent.spectra.linelist import BANDS, MOLECULES, band_templates, load_linelist, lsf_sigma_pixels
from chemlatent.spectra.physics import (
    ELEMENT_GROUP,
    LOGG_SUN,
    TEFF_SUN,
    curve_of_growth_table,
    doppler_width_kms,
    log_kappa,
    log_pe,
    log_pg,
    log_stage_fraction,
    theta,
)
from chemlatent.synth.populations import element_offsets, sample_labels, star_key
from chemlatent.synth.standins import StandIn

GENERATOR_VERSION = 1
RESOLUTION = 2000.0
SOLAR_C, SOLAR_N, SOLAR_O = 8.43, 7.83, 8.69


@lru_cache(maxsize=1)
def normal_quantile_table() -> np.ndarray:
    """65537 standard-normal quantiles for fast, exact-in-distribution inverse-CDF sampling."""
    p = np.arange(65537, dtype=np.float64) / 65536.0
    p[0], p[-1] = 1.0 / (65536.0 * 64), 1.0 - 1.0 / (65536.0 * 64)
    return ndtri(p).astype(np.float32)


def noise_profile(grid: WavelengthGrid) -> np.ndarray:
    """Relative noise per pixel (median 1): worse at the blue and red ends and on sky lines."""
    wave = grid.wave
    x = np.log(wave / 6000.0)
    prof = 1.0 + 1.3 * np.exp(-(wave - 3900.0) / 250.0) + 0.9 * np.exp((wave - 10400.0) / 500.0)
    rng = np.random.default_rng(7)
    sky = rng.uniform(6800, 10300, 60)
    strength = rng.uniform(0.2, 1.5, 60)
    for s, a in zip(sky, strength):
        prof += a * np.exp(-0.5 * ((wave - s) / 1.5) ** 2)
    prof *= 1.0 + 0.05 * x
    return (prof / np.median(prof)).astype(np.float32)


def _abundances(labels: pd.DataFrame, elements: list[str], offsets: np.ndarray) -> np.ndarray:
    """[X/H] per star and element (n, E)."""
    feh = labels["fe_h"].to_numpy(np.float64)[:, None]
    alpha = labels["alpha_fe"].to_numpy(np.float64)[:, None]
    cfe = labels["c_fe"].to_numpy(np.float64)[:, None]
    out = np.empty((len(labels), len(elements)))
    for e, el in enumerate(elements):
        grp = ELEMENT_GROUP[el]
        if grp == "h":
            out[:, e] = 0.0
        elif grp == "alpha":
            out[:, e] = (feh + alpha)[:, 0]
        elif grp == "c":
            out[:, e] = (feh + cfe)[:, 0]
        else:
            out[:, e] = feh[:, 0]
    return out + offsets


def species_terms(labels: pd.DataFrame, seed: int):
    """Per-star, per-species terms of the line strengths (n, S) and band optical depths.

    Returns (species_index_of_line, base_log_tau, dtheta, log_a_shift, doppler_kms, band_tau).
    """
    ll = load_linelist()
    teff = labels["teff"].to_numpy(np.float64)[:, None]
    logg = labels["logg"].to_numpy(np.float64)[:, None]
    feh = labels["fe_h"].to_numpy(np.float64)[:, None]
    alpha = labels["alpha_fe"].to_numpy(np.float64)[:, None]
    vmic = labels["vmicro"].to_numpy(np.float64)[:, None]
    m_h = feh + 0.5 * np.clip(alpha, -0.2, 0.5)
    sun = dict(teff=np.array([[TEFF_SUN]]), logg=np.array([[LOGG_SUN]]), m_h=np.array([[0.0]]))

    elements = sorted(set(ll.element))
    el_index = {e: i for i, e in enumerate(elements)}
    offs = element_offsets(seed, labels["star_id"].to_numpy(), elements)
    x_h = _abundances(labels, elements, offs)  # (n, E)

    th, th_sun = theta(teff), theta(sun["teff"])
    lk = log_kappa(teff, logg, m_h) - log_kappa(sun["teff"], sun["logg"], sun["m_h"])
    lpg = log_pg(teff, logg, m_h) - log_pg(sun["teff"], sun["logg"], sun["m_h"])
    lpe = log_pe(teff, logg, m_h) - log_pe(sun["teff"], sun["logg"], sun["m_h"])

    groups = _species_groups(ll)
    n, S = len(labels), len(groups)
    base = np.empty((n, S), np.float32)
    ashift = np.empty((n, S), np.float32)
    vdop = np.empty((n, S), np.float32)
    line_species = np.empty(len(ll), np.int64)
    for s, ((el, ion), cols) in enumerate(groups.items()):
        line_species[cols] = s
        frac = log_stage_fraction(el, ion, teff, logg, m_h)
        frac_sun = log_stage_fraction(el, ion, sun["teff"], sun["logg"], sun["m_h"])
        vd = doppler_width_kms(el, teff, vmic)
        vd_sun = doppler_width_kms(el, sun["teff"], 1.0)
        ldv = np.log10(vd / vd_sun)
        base[:, s] = (x_h[:, [el_index[el]]] + (frac - frac_sun) - lk - ldv)[:, 0]
        ashift[:, s] = ((0.6 * lpe if el == "H" else 0.4 * lpg) - ldv)[:, 0]
        vdop[:, s] = vd[:, 0]
    band_tau = _band_optical_depths(labels, x_h, el_index, th - th_sun, lpg, lk)
    return (line_species, base, (th - th_sun)[:, 0].astype(np.float32), ashift, vdop,
            band_tau.astype(np.float32))


@lru_cache(maxsize=1)
def _species_groups_cached(key: tuple) -> dict:
    ll = load_linelist()
    groups: dict = {}
    for i, (el, ion) in enumerate(zip(ll.element, ll.ion)):
        groups.setdefault((el, int(ion)), []).append(i)
    return {k: np.array(v) for k, v in groups.items()}


def _species_groups(ll) -> dict:
    return _species_groups_cached(ll.species)


def _free_fraction_co(teff: np.ndarray) -> np.ndarray:
    """Fraction of min(C, O) locked in CO: nearly all in cool atmospheres."""
    t_lf = 0.85 * teff
    return 1.0 / (1.0 + np.exp((t_lf - 4300.0) / 400.0))


def _band_optical_depths(labels, x_h, el_index, dtheta, lpg, lk) -> np.ndarray:
    teff = labels["teff"].to_numpy(np.float64)[:, None]
    c_h = x_h[:, [el_index["C"]]]
    o_h = x_h[:, [el_index["O"]]]
    n_h = labels["fe_h"].to_numpy(np.float64)[:, None] + labels["n_fe"].to_numpy(np.float64)[:, None]
    nc, no = 10.0 ** (SOLAR_C + c_h), 10.0 ** (SOLAR_O + o_h)
    f_co = _free_fraction_co(teff)
    locked = f_co * np.minimum(nc, 0.98 * no)
    c_free = np.maximum(nc - locked, 0.02 * nc)
    o_free = np.maximum(no - locked, 0.02 * no)
    nc_s, no_s = 10.0**SOLAR_C, 10.0**SOLAR_O
    f_s = _free_fraction_co(np.array([[TEFF_SUN]]))
    c_free_s = nc_s - f_s * min(nc_s, 0.98 * no_s)
    o_free_s = no_s - f_s * min(nc_s, 0.98 * no_s)
    log_c = np.log10(c_free / c_free_s)
    log_o = np.log10(o_free / o_free_s)
    rel = {"C": log_c, "O": log_o, "H": np.zeros_like(log_c), "N": n_h,
           "Mg": x_h[:, [el_index["Mg"]]], "Ti": x_h[:, [el_index["Ti"]]]}
    out = np.empty((len(labels), len(BANDS)))
    for b, band in enumerate(BANDS):
        a, bb, d0 = MOLECULES[band.molecule]
        # n_mol ~ n_A n_B K(T) ~ Pg^2 A_A A_B 10^(theta D0); per unit continuum opacity
        lt = band.log_tau_sun + rel[a] + rel[bb] + d0 * dtheta + lpg - lk
        out[:, b] = 10.0 ** np.clip(lt, -8, 3)[:, 0]
    # a band is a forest of rotational lines that saturate one by one: its mean optical
    # depth grows like log(1 + tau) once the strongest lines are black
    return np.log1p(out)


@nb.njit(cache=True, inline="always")
def _hash(z):
    z = z ^ (z >> np.uint64(30))
    z = z * np.uint64(0xBF58476D1CE4E5B9)
    z = z ^ (z >> np.uint64(27))
    z = z * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@nb.njit(cache=True, inline="always")
def _half_bits(x):
    """IEEE float32 bits -> float16 bits, round to nearest even (values are finite)."""
    sign = np.uint16((x >> np.uint32(16)) & np.uint32(0x8000))
    e = np.int64((x >> np.uint32(23)) & np.uint32(0xFF)) - 112
    mant = x & np.uint32(0x7FFFFF)
    if e >= 31:
        return sign | np.uint16(0x7BFF)
    if e <= 0:
        if e < -10:
            return sign
        mant = mant | np.uint32(0x800000)
        shift = np.uint32(14 - e)
        half = mant >> shift
        rem = mant & ((np.uint32(1) << shift) - np.uint32(1))
        halfway = np.uint32(1) << (shift - np.uint32(1))
        if rem > halfway or (rem == halfway and (half & np.uint32(1))):
            half += np.uint32(1)
        return sign | np.uint16(half)
    half = np.uint32(e << 10) | (mant >> np.uint32(13))
    rem = mant & np.uint32(0x1FFF)
    if rem > np.uint32(0x1000) or (rem == np.uint32(0x1000) and (half & np.uint32(1))):
        half += np.uint32(1)
    return sign | np.uint16(half)


@nb.njit(cache=True, inline="always")
def _cog(log_tau, log_a, lt0, dlt, la0, dla, tab):
    """Bilinear lookup of W / dlambda_D in the curve-of-growth table."""
    nt, na = tab.shape
    if log_tau < lt0:
        return math.sqrt(math.pi) * 10.0 ** log_tau
    x = min((log_tau - lt0) / dlt, nt - 1.000001)
    y = min(max((log_a - la0) / dla, 0.0), na - 1.000001)
    i = int(x)
    j = int(y)
    fx = x - i
    fy = y - j
    return ((tab[i, j] * (1 - fx) + tab[i + 1, j] * fx) * (1 - fy)
            + (tab[i, j + 1] * (1 - fx) + tab[i + 1, j + 1] * fx) * fy)


@nb.njit(parallel=True, fastmath=True, cache=True, nogil=True)
def _render(line_species, line_lts, line_chi, line_las, line_wave, line_wings, line_j0, line_kern,
            line_pix, base, dtheta, ashift, vdop, cog_axes, cog, band_tau, band_tmpl, band_lo,
            band_hi, rv_pix, cont_coef, snr, noise_prof, pix_width, sig, keys, qtab,
            nbins, niter, out_flux, out_mask):
    n, P = out_flux.shape
    L = line_pix.size
    K = line_kern.shape[1]
    lt0, dlt, la0, dla = cog_axes[0], cog_axes[1], cog_axes[2], cog_axes[3]
    for k in nb.prange(n):
        tau0 = np.zeros(P, dtype=np.float32)
        for ln in range(L):
            s = line_species[ln]
            log_tau = line_lts[ln] + base[k, s] - line_chi[ln] * dtheta[k]
            log_a = line_las[ln] + ashift[k, s]
            dld = line_wave[ln] * vdop[k, s] / 299792.458
            w_tot = dld * _cog(log_tau, log_a, lt0, dlt, la0, dla, cog)
            w_core = w_tot
            if line_wings[ln]:
                w_core = min(dld * _cog(log_tau, la0, lt0, dlt, la0, dla, cog), w_tot)
                w_wing = w_tot - w_core
                g = math.sqrt(10.0 ** (log_tau + log_a) / math.sqrt(math.pi)) * dld
                g = g / (line_wave[ln] * 2.302585 * 1e-4)
                if w_wing > 1e-5:
                    g2 = g * g
                    c = line_pix[ln]
                    hw = min(int(12.0 * g + 5.0 * sig) + 1, 700)
                    j0 = max(int(c) - hw, 0)
                    j1 = min(int(c) + hw + 1, P)
                    area = 0.0
                    for j in range(j0, j1):
                        x = j - c
                        u = g2 / (x * x + sig * sig)
                        area += u / (1.0 + u)
                    if area > 0:
                        jc = min(max(int(c), 0), P - 1)
                        sc = w_wing / (area * pix_width[jc])
                        for j in range(j0, j1):
                            x = j - c
                            u = g2 / (x * x + sig * sig)
                            d = sc * u / (1.0 + u)
                            if d > 0.95:
                                d = 0.95
                            tau0[j] -= math.log(1.0 - d)
            j0 = line_j0[ln]
            for q in range(K):
                tau0[j0 + q] += w_core * line_kern[ln, q]
        for b in range(band_tau.shape[1]):
            t = band_tau[k, b]
            if t < 1e-5:
                continue
            for j in range(band_lo[b], band_hi[b]):
                tau0[j] += t * band_tmpl[b, j]
        # radial-velocity residual: shift the whole optical-depth spectrum (linear interpolation)
        sh = rv_pix[k]
        raw = np.empty(P, dtype=np.float32)
        ivr = np.empty(P, dtype=np.float32)
        key = keys[k]
        c0, c1, c2 = cont_coef[k, 0], cont_coef[k, 1], cont_coef[k, 2]
        inv_snr = 1.0 / snr[k]
        for j in range(0, P, 2):
            z = _hash(key + np.uint64(j + 1) * np.uint64(0x9E3779B97F4A7C15))
            for h in range(2):
                jj = j + h
                if jj >= P:
                    break
                src_pos = jj - sh
                i0 = min(max(int(math.floor(src_pos)), 0), P - 2)
                fr = min(max(src_pos - i0, 0.0), 1.0)
                t = tau0[i0] * (1.0 - fr) + tau0[i0 + 1] * fr
                bits = (z >> np.uint64(32 * h)) & np.uint64(0xFFFFFFFF)
                i16 = np.int64(bits >> np.uint64(16))
                f = np.float32(bits & np.uint64(0xFFFF)) * np.float32(1.0 / 65536.0)
                gauss = qtab[i16] + (qtab[i16 + 1] - qtab[i16]) * f
                xx = 2.0 * jj / (P - 1) - 1.0
                cont = max(1.0 + xx * (c0 + xx * (c1 + xx * c2)), 0.2)
                sg = cont * noise_prof[jj] * inv_snr
                raw[jj] = math.exp(-t) * cont + sg * gauss
                ivr[jj] = 1.0 / (sg * sg)
                out_mask[k, jj] = 0
        zb = _hash(key ^ np.uint64(0xBADB0B))
        nbad = np.int64(zb % np.uint64(7))
        for q in range(nbad):
            zq = _hash(zb + np.uint64(q + 1) * np.uint64(0x9E3779B97F4A7C15))
            jj = np.int64(zq % np.uint64(P))
            raw[jj] += np.float32((zq >> np.uint64(40)) & np.uint64(0xFF)) / 128.0
            ivr[jj] = 0.0
            out_mask[k, jj] = 1
        if (zb >> np.uint64(56)) < np.uint64(8):  # ~3% of stars: a dead stretch
            start = np.int64((zb >> np.uint64(20)) % np.uint64(P - 60))
            ln = 5 + np.int64((zb >> np.uint64(8)) % np.uint64(40))
            for jj in range(start, start + ln):
                raw[jj] = 0.0
                ivr[jj] = 0.0
                out_mask[k, jj] = 1
        cont_fit = np.empty(P, dtype=np.float32)
        _continuum_one(raw, ivr, nbins, niter, cont_fit)
        for jj in range(P):
            cf = cont_fit[jj]
            raw[jj] = min(max(raw[jj] / cf, -100.0), 100.0) if cf > 0 else 1.0
        bits = raw.view(np.uint32)
        for jj in range(P):
            out_flux[k, jj] = _half_bits(bits[jj])


class Generator:
    """Renders synthetic spectra for a survey seed on a grid."""

    def __init__(self, seed: int = 0, grid: WavelengthGrid = DEFAULT_GRID,
                 standin: StandIn | None = None) -> None:
        self.seed = int(seed)
        self.grid = grid
        self.standin = standin or StandIn()
        ll = self.standin.apply_to_linelist(load_linelist(), grid)
        self.ll = ll
        # the species of the stand-in's weak lines, after the line list's own: all Fe I
        base = load_linelist()
        fe1 = list(_species_groups(base)).index(("Fe", 1))
        self.weak_species = np.full(len(ll) - len(base), fe1, np.int64)
        self.line_pix = grid.pixel_of(ll.wave).astype(np.float64)
        self.pix_width = (grid.wave * np.log(10.0) * grid.dloglam).astype(np.float32)
        res = self.standin.resolution
        self.sig = float(lsf_sigma_pixels(grid, res))
        self.line_j0, self.line_kern = _line_kernels(self.line_pix, self.pix_width, self.sig)
        lt, la, tab = curve_of_growth_table()
        self.cog_axes = np.array([lt[0], lt[1] - lt[0], la[0], la[1] - la[0]])
        self.cog = tab
        tmpl = band_templates(grid, res).astype(np.float32)
        self.band_tmpl = tmpl
        self.band_scale = (10.0 ** self.standin.band_offsets(tmpl.shape[0])).astype(np.float32)
        nz = [np.nonzero(t > 1e-4)[0] for t in tmpl]
        self.band_lo = np.array([z[0] if z.size else 0 for z in nz], dtype=np.int64)
        self.band_hi = np.array([z[-1] + 1 if z.size else 0 for z in nz], dtype=np.int64)
        self.noise_prof = noise_profile(grid)
        self.qtab = normal_quantile_table()

    @property
    def ivar_profile(self) -> np.ndarray:
        """ivar = snr**2 * ivar_profile (normalised units)."""
        return (1.0 / self.noise_prof.astype(np.float64) ** 2).astype(np.float32)

    def labels(self, idx: np.ndarray) -> pd.DataFrame:
        if self.standin.snr == StandIn().snr:  # tools that patch sample_labels pass no S/N
            return sample_labels(self.seed, idx, self.standin.mix)
        return sample_labels(self.seed, idx, self.standin.mix, self.standin.snr)

    def render(self, labels: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Normalised flux (n, P) float16 and bad-pixel mask (n, P) uint8 for these stars."""
        n = len(labels)
        species, base, dtheta, ashift, vdop, band_tau = species_terms(labels, self.seed)
        if self.weak_species.size:
            species = np.concatenate([species, self.weak_species])
        if self.standin.teff_tilt_dex:
            base = (base + self.standin.tilt(labels["teff"].to_numpy())[:, None]).astype(np.float32)
        if not self.standin.is_default:
            band_tau = (band_tau * self.band_scale[None, :]).astype(np.float32)
        idx = labels["star_id"].to_numpy()
        keys = star_key(self.seed, idx)
        u = _cont_uniforms(self.seed, idx)
        teff = labels["teff"].to_numpy(np.float64)
        cont = np.stack([
            -0.35 * (teff - 5800) / 1500 + 0.15 * ndtri(u[:, 0]),
            0.08 * ndtri(u[:, 1]) - 0.05,
            0.05 * ndtri(u[:, 2]),
        ], axis=1).astype(np.float32)
        rv_pix = (labels["rv_residual"].to_numpy(np.float64) / self.grid.velocity_per_pixel)
        flux = np.empty((n, self.grid.npix), np.uint16)
        mask = np.empty((n, self.grid.npix), np.uint8)
        ll = self.ll
        _render(species, ll.log_tau_sun, ll.chi_exc, ll.log_a_sun, ll.wave, ll.wings,
                self.line_j0, self.line_kern, self.line_pix, base, dtheta, ashift, vdop,
                self.cog_axes, self.cog, band_tau, self.band_tmpl, self.band_lo, self.band_hi,
                rv_pix, cont, labels["snr"].to_numpy(np.float32), self.noise_prof,
                self.pix_width, self.sig, keys, self.qtab, N_BINS, N_ITER, flux, mask)
        return flux.view(np.float16), mask

    def ivar(self, labels: pd.DataFrame, mask: np.ndarray) -> np.ndarray:
        snr = labels["snr"].to_numpy(np.float32)
        iv = (snr[:, None] ** 2) * self.ivar_profile[None, :]
        iv[mask != 0] = 0.0
        return iv

    def spectrum(self, i: int) -> tuple[np.ndarray, np.ndarray, pd.Series]:
        """Regenerate star i alone: (flux, ivar, labels)."""
        lab = self.labels(np.array([i]))
        flux, mask = self.render(lab)
        return flux[0].astype(np.float32), self.ivar(lab, mask)[0], lab.iloc[0]


def _line_kernels(line_pix: np.ndarray, pix_width: np.ndarray, sig: float,
                  half: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """LSF Gaussian weights (per unit equivalent width) of each line on its nearby pixels."""
    P = pix_width.size
    j0 = np.clip(np.floor(line_pix).astype(np.int64) - half + 1, 0, P - 2 * half)
    j = j0[:, None] + np.arange(2 * half)[None, :]
    x = (j - line_pix[:, None]) / sig
    kern = np.exp(-0.5 * x**2) / (np.sqrt(2 * np.pi) * sig) / pix_width[j]
    return j0, kern.astype(np.float32)


def _cont_uniforms(seed: int, idx: np.ndarray) -> np.ndarray:
    from chemlatent.synth.populations import star_uniforms

    return star_uniforms(seed ^ 0xC0A7, idx, 3)


def generate_survey(path: str | Path, n_stars: int, seed: int = 0, *, chunk: int = 4096,
                    overwrite: bool = False, progress: bool = True,
                    grid: WavelengthGrid = DEFAULT_GRID,
                    on_progress: Callable[[int], None] | None = None,
                    standin: StandIn | None = None) -> Survey:
    """Write a synthetic survey of ``n_stars`` to ``path`` (atomic; bounded memory).

    ``progress``: a terminal progress bar; ``on_progress(n)``: called with each block's size;
    ``standin``: other physics, resolution and populations (chemlatent.synth.standins).
    """
    from tqdm.auto import tqdm

    gen = Generator(seed, grid, standin)
    chunk_stars = 512
    chunk = max(chunk_stars, (chunk // chunk_stars) * chunk_stars)
    prov = {"kind": "synthetic", "generator_version": GENERATOR_VERSION, "seed": int(seed),
            "resolution": gen.standin.resolution, "software_version": __version__}
    if not gen.standin.is_default:
        prov["standin"] = gen.standin.to_dict()
    t0 = time.perf_counter()
    catalogs = []
    bar = tqdm(total=n_stars, unit="star", disable=not progress, desc="generate")
    with SurveyWriter(path, grid, ivar_layout="scaled_profile", ivar_profile=gen.ivar_profile,
                      capacity=n_stars, chunk_stars=chunk_stars, provenance=prov,
                      overwrite=overwrite) as writer, ThreadPoolExecutor(1) as pool:
        pending = None
        for start in range(0, n_stars, chunk):
            idx = np.arange(start, min(start + chunk, n_stars))
            lab = gen.labels(idx)
            f16, mask = gen.render(lab)
            if pending is not None:
                pending.result()
            pending = pool.submit(writer.write, start, f16, mask=mask,
                                  ivar_scale=lab["snr"].to_numpy(np.float32) ** 2)
            catalogs.append(lab)
            bar.update(idx.size)
            if on_progress is not None:
                on_progress(idx.size)
        if pending is not None:
            pending.result()
        bar.close()
        catalog = pd.concat(catalogs, ignore_index=True)
        survey = writer.finish(catalog, extra={"generate_seconds": round(time.perf_counter() - t0, 2)})
    return survey
