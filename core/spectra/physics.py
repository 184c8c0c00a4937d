"""Simplified line-formation physics for the synthetic generator.

Line strengths follow the classical recipe (Gray, "The Observation and Analysis of Stellar
Photospheres"): line-centre optical depth relative to the continuum scales with the
element abundance, the fraction of the element in the line's ionisation stage (Saha), the
lower-level population (Boltzmann), and inversely with the H- continuous opacity. The
equivalent width follows a Voigt curve of growth (linear, saturated, damped). Molecules
follow dissociation equilibrium. Everything is expressed relative to a solar-like reference
atmosphere so that the line list only needs solar strengths.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

TEFF_SUN = 5777.0
LOGG_SUN = 4.44
LINE_FORMING_T = 0.85  # line-forming layer temperature / Teff
K_B = 1.380649e-23
AMU = 1.66053907e-27
C_KMS = 299792.458

IONISATION_EV = {
    "H": 13.60, "C": 11.26, "O": 13.62, "Na": 5.14, "Mg": 7.65, "Al": 5.99, "Si": 8.15,
    "S": 10.36, "K": 4.34, "Ca": 6.11, "Sc": 6.56, "Ti": 6.83, "V": 6.75, "Cr": 6.77,
    "Mn": 7.43, "Fe": 7.90, "Co": 7.88, "Ni": 7.64, "Sr": 5.69, "Y": 6.22, "Zr": 6.63,
    "Ba": 5.21,
}
MASS_AMU = {
    "H": 1.0, "C": 12.0, "O": 16.0, "Na": 23.0, "Mg": 24.3, "Al": 27.0, "Si": 28.1, "S": 32.1,
    "K": 39.1, "Ca": 40.1, "Sc": 45.0, "Ti": 47.9, "V": 50.9, "Cr": 52.0, "Mn": 54.9,
    "Fe": 55.8, "Co": 58.9, "Ni": 58.7, "Sr": 87.6, "Y": 88.9, "Zr": 91.2, "Ba": 137.3,
}
# Which abundance ratio moves each element: "fe" -> [Fe/H], "alpha" -> [Fe/H]+[alpha/Fe],
# "c" -> [Fe/H]+[C/Fe], "n" -> [Fe/H]+[N/Fe], "h" -> fixed.
ELEMENT_GROUP = {
    "H": "h", "C": "c", "O": "alpha", "Mg": "alpha", "Si": "alpha", "S": "alpha", "Ca": "alpha",
    "Ti": "alpha", "Na": "fe", "Al": "fe", "K": "fe", "Sc": "fe", "V": "fe", "Cr": "fe",
    "Mn": "fe", "Fe": "fe", "Co": "fe", "Ni": "fe", "Sr": "fe", "Y": "fe", "Zr": "fe", "Ba": "fe",
}


def theta(teff: np.ndarray) -> np.ndarray:
    """5040 / T of the line-forming layer."""
    return 5040.0 / (LINE_FORMING_T * np.asarray(teff, dtype=np.float64))


def log_pe(teff, logg, m_h):
    """log10 electron pressure (cgs) at the line-forming layer.

    Grey-atmosphere scaling with H- opacity: Pg ~ g / kappa and kappa ~ Pe ~ sqrt(Pg A), so
    Pe ~ g^(1/3) A^(1/3); ionisation of metals (and of H in hot stars) makes it rise with T.
    """
    t = np.log10(np.asarray(teff) / TEFF_SUN)
    return 1.0 + (np.asarray(logg) - LOGG_SUN) / 3.0 + np.asarray(m_h) / 3.0 + 5.0 * t


def log_pg(teff, logg, m_h):
    """log10 gas pressure, Pg ~ g^(2/3) A^(-1/3): metal-poor atmospheres are denser."""
    t = np.log10(np.asarray(teff) / TEFF_SUN)
    return 5.1 + 2.0 * (np.asarray(logg) - LOGG_SUN) / 3.0 - np.asarray(m_h) / 3.0 - 1.5 * t


def log_kappa(teff, logg, m_h):
    """log10 H- continuous opacity per H atom (Gray's approximation, up to a constant)."""
    th = theta(teff)
    return log_pe(teff, logg, m_h) + 2.5 * np.log10(th) + 0.754 * th


def log_stage_fraction(element: str, ion: int, teff, logg, m_h):
    """log10 fraction of an element in ionisation stage I or II (Saha, two stages)."""
    th = theta(teff)
    t = LINE_FORMING_T * np.asarray(teff, dtype=np.float64)
    chi = IONISATION_EV[element]
    # log(N_II / N_I) = log(2 U_II/U_I) + 2.5 log T - theta chi - log Pe - 0.1762
    log_ratio = 0.3 + 2.5 * np.log10(t) - th * chi - log_pe(teff, logg, m_h) - 0.1762
    log_ratio = np.clip(log_ratio, -30, 30)
    frac_ii = 1.0 / (1.0 + 10.0 ** (-log_ratio))
    frac = frac_ii if ion == 2 else 1.0 - frac_ii
    return np.log10(np.clip(frac, 1e-30, 1.0))


def doppler_width_kms(element: str, teff, vmicro):
    """Doppler velocity width sqrt(2kT/m + xi^2), km/s."""
    t = LINE_FORMING_T * np.asarray(teff, dtype=np.float64)
    vth2 = 2.0 * K_B * t / (MASS_AMU[element] * AMU) / 1e6
    return np.sqrt(vth2 + np.asarray(vmicro) ** 2)


@lru_cache(maxsize=1)
def curve_of_growth_table() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """W / dlambda_D on a grid of log10 tau0 (rows) and log10 a (columns), Voigt profile.

    W/dlambda_D = integral of (1 - exp(-tau0 H(a, v))) dv, H(0, 0) = 1.
    """
    from scipy.special import wofz

    log_tau = np.arange(-4.0, 9.01, 0.1)
    log_a = np.arange(-3.5, 0.76, 0.25)
    t = np.linspace(0.0, np.arcsinh(3e5), 3000)
    v = np.sinh(t)
    dv = np.cosh(t) * (t[1] - t[0])
    table = np.empty((log_tau.size, log_a.size))
    for j, la in enumerate(log_a):
        h = wofz(v + 1j * 10.0**la).real
        tau = 10.0 ** log_tau[:, None] * h[None, :]
        table[:, j] = 2.0 * np.sum(-np.expm1(-tau) * dv[None, :], axis=1)
    return log_tau, log_a, table


def equivalent_width_ratio(log_tau0: np.ndarray, log_a: np.ndarray) -> np.ndarray:
    """Bilinear interpolation in the curve-of-growth table (W / dlambda_D)."""
    lt, la, tab = curve_of_growth_table()
    x = np.clip((np.asarray(log_tau0) - lt[0]) / (lt[1] - lt[0]), 0, lt.size - 1.000001)
    y = np.clip((np.asarray(log_a) - la[0]) / (la[1] - la[0]), 0, la.size - 1.000001)
    i = x.astype(np.int64)
    j = y.astype(np.int64)
    fx = x - i
    fy = y - j
    out = (tab[i, j] * (1 - fx) * (1 - fy) + tab[i + 1, j] * fx * (1 - fy)
           + tab[i, j + 1] * (1 - fx) * fy + tab[i + 1, j + 1] * fx * fy)
    # below the table: linear regime W/dl_D = sqrt(pi) tau0
    low = np.asarray(log_tau0) < lt[0]
    if np.any(low):
        out = np.where(low, np.sqrt(np.pi) * 10.0 ** np.asarray(log_tau0), out)
    return out


def air_to_vacuum(wave: np.ndarray) -> np.ndarray:
    """Air to vacuum wavelengths (Angstrom), IAU standard (Morton 2000, as SDSS idlutils).

    Wavelengths below 2000 A are returned unchanged.
    """
    wave = np.asarray(wave, dtype=np.float64)
    sigma2 = (1e4 / wave) ** 2
    fact = 1.0 + 5.792105e-2 / (238.0185 - sigma2) + 1.67917e-3 / (57.362 - sigma2)
    return np.where(wave >= 2000.0, wave * fact, wave)


def vacuum_to_air(wave: np.ndarray) -> np.ndarray:
    """Vacuum to air wavelengths (Angstrom): the inverse of :func:`air_to_vacuum` (three
    fixed-point steps, exact to well below 1e-6 A); below 2000 A unchanged."""
    vac = np.asarray(wave, dtype=np.float64)
    air = vac.copy()
    for _ in range(3):
        air = air * vac / air_to_vacuum(air)
    return np.where(vac >= 2000.0, air, vac)
