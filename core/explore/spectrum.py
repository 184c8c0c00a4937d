"""Data for the dashboard's spectrum panel (no plotting here).

- :func:`star_spectrum`: one star's observed flux and 1-sigma uncertainty, the model's
  reconstruction from the star's latents (NaN outside the element windows), the residuals,
  and each decoder's absorption.
- :func:`window_spans`: the element windows per group (fe, c, alpha) with labels, for
  shading; :data:`KEY_LINES`: well-known features for markers; :func:`zoom_range`: the
  wavelength range of a group, a window or a line.
- :func:`matched_control` and :func:`stacked_spectra`: the mean spectrum of a selection
  against the mean of survey stars at similar predicted Teff/logg (same numbers of stars
  per Teff/logg cell), so that what differs is chemistry, not temperature or gravity.

Wavelengths are vacuum Angstrom (the survey grid's convention).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from chemlatent.spectra.grid import ELEMENT_GROUPS
from chemlatent.spectra.physics import air_to_vacuum

GROUP_LABELS: dict[str, str] = {"fe": "Fe", "c": "C", "alpha": "alpha"}
GROUP_COLORS: dict[str, str] = {"fe": "#4c72b0", "c": "#dd8452", "alpha": "#55a868"}

# (label, air wavelengths in Angstrom): converted to vacuum below
_KEY_LINES_AIR: tuple[tuple[str, tuple[float, ...]], ...] = (
    ("Ca II K", (3933.66,)),
    ("Ca II H", (3968.47,)),
    ("G band", (4300.0,)),
    ("Hbeta", (4861.33,)),
    ("Mg b", (5167.32, 5172.68, 5183.60)),
    ("Na D", (5889.95, 5895.92)),
    ("Halpha", (6562.80,)),
    ("Ca triplet", (8498.02, 8542.09, 8662.14)),
)


def _key_lines() -> pd.DataFrame:
    rows = []
    for label, waves in _KEY_LINES_AIR:
        for w in air_to_vacuum(np.asarray(waves)):
            rows.append((label, float(w)))
    return pd.DataFrame(rows, columns=["label", "wave"])


KEY_LINES: pd.DataFrame = _key_lines()


def key_lines(wave_min: float | None = None, wave_max: float | None = None) -> pd.DataFrame:
    """The key line markers (label, vacuum wave) inside a wavelength range."""
    df = KEY_LINES
    if wave_min is not None:
        df = df[df["wave"] >= wave_min]
    if wave_max is not None:
        df = df[df["wave"] <= wave_max]
    return df.reset_index(drop=True)


def window_spans(windows: dict) -> pd.DataFrame:
    """One row per element window: group, lo, hi, label (the group name when unlabelled)."""
    rows = []
    for g in ELEMENT_GROUPS:
        for w in windows.get(g, []):
            lo, hi = float(w[0]), float(w[1])
            label = str(w[2]).strip() if len(w) > 2 and w[2] else ""
            rows.append((g, lo, hi, label or GROUP_LABELS[g]))
    return pd.DataFrame(rows, columns=["group", "lo", "hi", "label"])


MAIN_SHARE = 0.75  # a group's zoom spans the shortest range holding this share of its windows' width


def _main_range(lo: np.ndarray, hi: np.ndarray) -> tuple[float, float]:
    """The shortest wavelength range, from one window's start to another's end, that holds
    :data:`MAIN_SHARE` of the windows' total width (an isolated window far away is left out)."""
    order = np.argsort(lo)
    lo, hi = lo[order], hi[order]
    width = hi - lo
    need = MAIN_SHARE * width.sum()
    best = (float(lo[0]), float(hi.max()))
    for i in range(lo.size):
        for j in range(i, lo.size):
            if width[i:j + 1].sum() >= need:
                if hi[i:j + 1].max() - lo[i] < best[1] - best[0]:
                    best = (float(lo[i]), float(hi[i:j + 1].max()))
                break
    return best


def _overlap(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Intersection over union of two ranges."""
    inter = min(a[1], b[1]) - max(a[0], b[0])
    union = max(a[1], b[1]) - min(a[0], b[0])
    return max(inter, 0.0) / union if union > 0 else 1.0


def zoom_choices(windows: dict) -> dict[str, tuple[float, float] | None]:
    """Named zoom targets: full range, each group's main windows, each labelled window,
    each key line; a target whose range nearly repeats an earlier one's is left out."""
    spans = window_spans(windows)
    out: dict[str, tuple[float, float] | None] = {"full spectrum": None}

    def add(name: str, rng: tuple[float, float]) -> None:
        if name not in out and not any(v is not None and _overlap(v, rng) > 0.8 for v in out.values()):
            out[name] = rng

    for g in ELEMENT_GROUPS:
        s = spans[spans["group"] == g]
        if len(s):
            lo, hi = _main_range(s["lo"].to_numpy(float), s["hi"].to_numpy(float))
            add(f"{GROUP_LABELS[g]} windows", (lo - 10, hi + 10))
    for r in spans.itertuples():
        pad = max(5.0, 0.15 * (r.hi - r.lo))
        add(f"{GROUP_LABELS[r.group]}: {r.label} {r.lo:.0f}-{r.hi:.0f}", (r.lo - pad, r.hi + pad))
    for label, g in KEY_LINES.groupby("label", sort=False):
        lo, hi = float(g["wave"].min()), float(g["wave"].max())
        add(f"line: {label}", (lo - 25, hi + 25))
    return out


def zoom_range(windows: dict, name: str) -> tuple[float, float] | None:
    """The wavelength range of a zoom target from :func:`zoom_choices` (None: everything)."""
    choices = zoom_choices(windows)
    if name not in choices:
        raise KeyError(f"unknown zoom target {name!r}")
    return choices[name]


@dataclass
class StarSpectrum:
    """Everything the spectrum panel draws for one star."""

    star_id: int
    row: int
    wave: np.ndarray
    flux: np.ndarray  # NaN where the pixel is bad (ivar = 0)
    sigma: np.ndarray  # NaN where bad
    model: np.ndarray | None = None  # NaN outside the windows
    components: dict[str, np.ndarray] = field(default_factory=dict)  # per-decoder absorption
    info: dict = field(default_factory=dict)

    @property
    def residual(self) -> np.ndarray:
        """Observed minus model (NaN where either is missing)."""
        if self.model is None:
            return np.full_like(self.flux, np.nan)
        return self.flux - self.model

    @property
    def chi(self) -> np.ndarray:
        """Residual in units of the uncertainty."""
        return self.residual / self.sigma

    def chi2(self) -> float:
        c = self.chi
        c = c[np.isfinite(c)]
        return float(np.mean(c ** 2)) if c.size else float("nan")

    def frame(self) -> pd.DataFrame:
        d = {"wave": self.wave, "flux": self.flux, "sigma": self.sigma,
             "lo": self.flux - self.sigma, "hi": self.flux + self.sigma,
             "model": self.model if self.model is not None else np.nan,
             "residual": self.residual, "chi": self.chi}
        return pd.DataFrame(d)


def observed(flux: np.ndarray, ivar: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(flux, sigma) with NaN at bad pixels."""
    flux = np.asarray(flux, np.float64)
    ivar = np.asarray(ivar, np.float64)
    good = ivar > 0
    f = np.where(good, flux, np.nan)
    with np.errstate(divide="ignore"):
        s = np.where(good, 1.0 / np.sqrt(np.where(good, ivar, 1.0)), np.nan)
    return f, s


def reconstruct(model, z: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Full-length reconstruction (NaN outside windows) and each decoder's absorption
    placed on the full grid (NaN outside its own windows), for one star."""
    import torch

    with torch.inference_mode():
        zt = torch.as_tensor(np.asarray(z, np.float32).reshape(1, 3))
        wt = torch.as_tensor(np.asarray(w, np.float32).reshape(1, -1))
        rec = model.reconstruct(zt, wt)[0].float().cpu().numpy().astype(np.float64)
        parts = model.absorption(zt, wt, selective=False)
        comps = {}
        npix = rec.size
        for g in ELEMENT_GROUPS:
            a = np.full(npix, np.nan)
            vals = parts[g][0].float().cpu().numpy()
            idx = model.part_pixels(g)
            a[idx] = vals
            comps[g] = a
    return rec, comps


def star_spectrum(survey, row: int, latent_row=None, model=None) -> StarSpectrum:
    """The spectrum panel data for survey row ``row``.

    ``latent_row``: a mapping with z_fe, z_c, z_alpha, w_0.. (a latents table row); with a
    ``model`` the reconstruction and components are filled in.
    """
    flux, ivar = survey.spectrum(int(row))
    f, s = observed(flux, ivar)
    sid = int(survey.catalog["star_id"].iloc[int(row)])
    spec = StarSpectrum(sid, int(row), survey.grid.wave, f, s)
    if model is not None and latent_row is not None:
        z = np.array([latent_row["z_fe"], latent_row["z_c"], latent_row["z_alpha"]], np.float64)
        n_w = int(model.config.n_w)
        w = np.array([latent_row[f"w_{i}"] for i in range(n_w)], np.float64)
        if np.all(np.isfinite(z)) and np.all(np.isfinite(w)):
            spec.model, spec.components = reconstruct(model, z, w)
    spec.info["chi2"] = spec.chi2()
    return spec


# --------------------------------------------------------------------------- stacks


def matched_control(teff, logg, selected: np.ndarray, *, max_stars: int = 400, seed: int = 0,
                    teff_step: float = 150.0, logg_step: float = 0.3
                    ) -> tuple[np.ndarray, np.ndarray]:
    """(selection rows, control rows): up to ``max_stars`` selected stars and, for each
    Teff/logg cell they occupy, as many unselected stars of the same cell (fewer when the
    cell has too few). Rows are indices into the arrays given."""
    rng = np.random.default_rng(seed)
    teff = np.asarray(teff, np.float64)
    logg = np.asarray(logg, np.float64)
    sel = np.asarray(selected, bool) & np.isfinite(teff) & np.isfinite(logg)
    sel_rows = np.flatnonzero(sel)
    if sel_rows.size > max_stars:
        sel_rows = np.sort(rng.choice(sel_rows, max_stars, replace=False))
    if sel_rows.size == 0:
        return sel_rows, np.zeros(0, np.int64)
    cell = (np.floor(np.nan_to_num(teff) / teff_step).astype(np.int64) * 100003
            + np.floor(np.nan_to_num(logg) / logg_step).astype(np.int64))
    pool = ~np.asarray(selected, bool) & np.isfinite(teff) & np.isfinite(logg)
    want = pd.Series(cell[sel_rows]).value_counts()
    pool_rows = np.flatnonzero(pool & np.isin(cell, want.index.to_numpy()))
    if pool_rows.size == 0:
        return sel_rows, np.zeros(0, np.int64)
    by_cell = pd.Series(pool_rows).groupby(cell[pool_rows])
    ctrl = []
    for c, rows in by_cell:
        k = int(want.get(c, 0))
        r = rows.to_numpy()
        ctrl.append(r if r.size <= k else rng.choice(r, k, replace=False))
    return sel_rows, np.sort(np.concatenate(ctrl)).astype(np.int64)


@dataclass
class Stack:
    """Mean spectrum of a set of stars (valid pixels only) and its standard error."""

    wave: np.ndarray
    mean: np.ndarray
    err: np.ndarray
    n_stars: int
    n_pix: np.ndarray


def stack(survey, rows: np.ndarray) -> Stack:
    """Mean and standard error of the flux over ``rows`` (bad pixels left out)."""
    rows = np.asarray(rows, np.int64)
    wave = survey.grid.wave
    if rows.size == 0:
        nan = np.full(wave.size, np.nan)
        return Stack(wave, nan, nan.copy(), 0, np.zeros(wave.size, np.int64))
    chunk = survey.read_rows(rows)
    good = chunk.ivar > 0
    f = np.where(good, chunk.flux, 0.0).astype(np.float64)
    n = good.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = f.sum(0) / n
        var = (np.where(good, (chunk.flux - mean) ** 2, 0.0)).sum(0) / np.maximum(n - 1, 1)
        err = np.sqrt(var / n)
    mean[n == 0] = np.nan
    err[n < 2] = np.nan
    return Stack(wave, mean, err, int(rows.size), n)


def stacked_spectra(survey, teff, logg, selected: np.ndarray, survey_rows: np.ndarray | None = None,
                    *, max_stars: int = 400, seed: int = 0) -> tuple[Stack, Stack]:
    """(selection stack, matched control stack). ``survey_rows`` maps the arrays' indices
    to survey rows (identity when None)."""
    s, c = matched_control(teff, logg, selected, max_stars=max_stars, seed=seed)
    if survey_rows is not None:
        survey_rows = np.asarray(survey_rows, np.int64)
        s, c = survey_rows[s], survey_rows[c]
    return stack(survey, s), stack(survey, c)
