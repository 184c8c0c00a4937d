"""Differential spectrum of two star sets (GUI-free): what differs between set A and set B.

Per pixel, on the continuum-normalised flux (the survey's convention):

- the ivar-weighted mean of each set, ``mean_a`` and ``mean_b``, and ``diff = mean_a - mean_b``;
- Welch's t: ``diff / sqrt(se_a**2 + se_b**2)``, where each set's standard error is its
  weighted star-to-star variance over its effective number of stars
  ``n_eff = (sum w)**2 / sum w**2`` (weights ``w = ivar``, so noisy stars count less, and
  the variance includes the real scatter between stars, not only the photon noise);
  Welch-Satterthwaite degrees of freedom; two-sided p;
- Benjamini-Hochberg q over all tested pixels.

:func:`compare_sets` is what both ``chemlatent compare`` and the page's compare panel run.
Set B may be another mask, ``"rest"`` (every other star) or ``"control"`` (stars at the
same predicted Teff/logg as A: :func:`chemlatent.explore.spectrum.matched_control`).
Each set is read in blocks (bounded memory) and at most ``max_stars`` stars of each are
used (a seeded random subset, said in the provenance).

The per-pixel rows are identified with the generator's line list and molecular bands
(:mod:`chemlatent.spectra.linelist`) and their element group
(:data:`chemlatent.spectra.physics.ELEMENT_GROUP`). :meth:`Comparison.features` lists the
lines and bands that differ: each star's absorption is split into deblended line and band
depths (:mod:`chemlatent.explore.linedepths`), the two sets' depths are compared with the same
Welch test (BH q over features), and the significant ones are ranked by the change in
equivalent width, so a broad band that absorbs much more in A leads even when single pixels
inside it change little.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from chemlatent.errors import ChemlatentError
from chemlatent.explore.linedepths import DEFAULT_RESOLUTION, FeatureBasis, band_name, feature_basis
from chemlatent.explore.starsets import CONTROL, REST, mask_of, resolve_ids
from chemlatent.flags.statistics import bh_qvalues
from chemlatent.spectra.linelist import BANDS, MOLECULES, load_linelist
from chemlatent.spectra.physics import ELEMENT_GROUP

DEFAULT_MAX_STARS = 5000
BLOCK = 2048
TABLE_COLUMNS = ("wavelength", "mean_a", "mean_b", "diff", "t", "dof", "p", "q", "n_a", "n_b",
                 "feature", "group")


# --------------------------------------------------------------------------- identification


@lru_cache(maxsize=1)
def _band_spans() -> pd.DataFrame:
    rows = []
    for b in BANDS:
        lo, hi = sorted((b.head, b.head + b.extent))
        rows.append((band_name(b.molecule, b.head), lo, hi, b.head, abs(b.extent),
                     ELEMENT_GROUP.get(MOLECULES[b.molecule][0], "")))
    return pd.DataFrame(rows, columns=["name", "lo", "hi", "head", "extent", "group"])


def identify(wave: np.ndarray, tolerance: float = 2.5) -> tuple[np.ndarray, np.ndarray]:
    """(name, element group) of the feature at each vacuum wavelength: the nearest atomic
    line within ``tolerance`` A, then every molecular band covering the wavelength (the one
    nearest its head, relative to its extent, first), joined by " / " (their element groups
    likewise); empty strings where nothing is known."""
    wave = np.atleast_1d(np.asarray(wave, np.float64))
    names: list[list[str]] = [[] for _ in range(wave.size)]
    groups: list[list[str]] = [[] for _ in range(wave.size)]
    ll = load_linelist()
    order = np.argsort(ll.wave)
    lw = ll.wave[order]
    lo = np.searchsorted(lw, wave - tolerance)
    hi = np.searchsorted(lw, wave + tolerance)
    for i in np.flatnonzero(hi > lo):
        k = order[lo[i]:hi[i]]
        j = k[np.argmin(np.abs(ll.wave[k] - wave[i]))]
        names[i].append(f"{ll.species[j]} {ll.wave[j]:.1f}")
        groups[i].append(ELEMENT_GROUP.get(ll.element[j], ""))
    bands = _band_spans()
    cover = (wave[:, None] >= bands["lo"].to_numpy()) & (wave[:, None] <= bands["hi"].to_numpy())
    closeness = np.where(cover, 1.0 - np.abs(wave[:, None] - bands["head"].to_numpy())
                         / bands["extent"].to_numpy(), -1.0)
    for i in np.flatnonzero(cover.any(1)):
        for k in np.argsort(-closeness[i])[: int(cover[i].sum())]:
            names[i].append(bands["name"].iat[k])
            groups[i].append(bands["group"].iat[k])
    def join(rows: list[list[str]]) -> np.ndarray:
        out = np.empty(len(rows), dtype=object)
        out[:] = [" / ".join(dict.fromkeys(p for p in parts if p)) for parts in rows]
        return out

    return join(names), join(groups)


# --------------------------------------------------------------------------- statistics


@dataclass
class SetSums:
    """Running ivar-weighted sums of one star set, per pixel."""

    s0: np.ndarray
    s1: np.ndarray
    s2: np.ndarray
    q: np.ndarray
    n: np.ndarray
    d1: np.ndarray  # per feature: sum of the stars' deblended depths
    d2: np.ndarray  # and of their squares
    n_stars: int = 0

    @classmethod
    def empty(cls, npix: int, n_features: int = 0) -> SetSums:
        z, zf = np.zeros(npix), np.zeros(n_features)
        return cls(z.copy(), z.copy(), z.copy(), z.copy(), np.zeros(npix, np.int64), zf.copy(), zf.copy())

    def add(self, flux: np.ndarray, ivar: np.ndarray, basis: FeatureBasis | None = None) -> None:
        w = np.where((ivar > 0) & np.isfinite(flux), ivar, 0.0).astype(np.float64)
        f = np.where(w > 0, flux, 0.0).astype(np.float64)
        self.s0 += w.sum(0)
        self.s1 += (w * f).sum(0)
        self.s2 += (w * f * f).sum(0)
        self.q += (w * w).sum(0)
        self.n += (w > 0).sum(0)
        self.n_stars += flux.shape[0]
        if basis is not None:
            d = basis.depths(flux, ivar)
            self.d1 += d.sum(0)
            self.d2 += (d * d).sum(0)

    def depth_moments(self) -> tuple[np.ndarray, np.ndarray]:
        """(mean deblended depth, its squared standard error), per feature; stars weigh equally."""
        n = self.n_stars
        mean = self.d1 / max(n, 1)
        var = np.maximum(self.d2 / max(n, 1) - mean ** 2, 0.0) * n / max(n - 1, 1)
        return mean, var / max(n, 1)

    def moments(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(weighted mean, squared standard error, effective number of stars)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = self.s1 / self.s0
            var = np.maximum(self.s2 / self.s0 - mean ** 2, 0.0)
            n_eff = self.s0 ** 2 / self.q
            var = var * n_eff / (n_eff - 1.0)
            se2 = var / n_eff
        bad = self.n < 2
        mean[self.n == 0] = np.nan
        se2[bad] = np.nan
        n_eff[bad] = np.nan
        return mean, se2, n_eff


def accumulate(survey, rows: np.ndarray, block: int = BLOCK, basis: FeatureBasis | None = None) -> SetSums:
    """The weighted sums (and, with a ``basis``, the feature depths) of the stars at survey
    ``rows``, read ``block`` stars at a time."""
    rows = np.sort(np.asarray(rows, np.int64))
    sums = SetSums.empty(survey.grid.npix, len(basis) if basis is not None else 0)
    for s in range(0, rows.size, block):
        chunk = survey.read_rows(rows[s:s + block])
        sums.add(chunk.flux, chunk.ivar, basis)
    return sums


def survey_resolution(survey) -> float:
    """The survey's resolving power as its provenance records it (else R 2000)."""
    try:
        prov = (getattr(survey, "meta", None) or {}).get("provenance") or {}
        r = float(prov.get("resolution") or DEFAULT_RESOLUTION)
    except (TypeError, ValueError):
        return DEFAULT_RESOLUTION
    return r if np.isfinite(r) and r > 0 else DEFAULT_RESOLUTION


def welch(ma, va, na, mb, vb, nb) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Welch's t, Welch-Satterthwaite dof and the natural log of the two-sided p, from each
    set's mean, squared standard error and (effective) number of stars."""
    with np.errstate(invalid="ignore", divide="ignore"):
        se2 = va + vb
        t = (ma - mb) / np.sqrt(se2)
        dof = se2 ** 2 / (va ** 2 / (na - 1.0) + vb ** 2 / (nb - 1.0))
        t = np.where(se2 > 0, t, np.nan)
        log_p = np.log(2.0) + stats.t.logsf(np.abs(t), np.where(dof > 0, dof, np.nan))
    return t, dof, log_p


@dataclass
class FeatureTest:
    """The deblended depths of every line and band in both sets, and their Welch test."""

    basis: FeatureBasis
    depth_a: np.ndarray
    depth_b: np.ndarray
    t: np.ndarray
    log_p: np.ndarray

    @property
    def d_ew(self) -> np.ndarray:
        """Equivalent width of A minus B (A; positive: the feature absorbs more in A)."""
        return (self.depth_a - self.depth_b) * self.basis.ew_per_depth


@dataclass
class Comparison:
    """The per-pixel comparison of set A with set B."""

    wave: np.ndarray
    mean_a: np.ndarray
    mean_b: np.ndarray
    t: np.ndarray
    dof: np.ndarray
    log_p: np.ndarray  # natural log of the two-sided p (no underflow for huge t)
    n_a: np.ndarray
    n_b: np.ndarray
    n_stars_a: int
    n_stars_b: int
    label_a: str = "A"
    label_b: str = "B"
    notes: list[str] = field(default_factory=list)
    lines: FeatureTest | None = None

    @property
    def diff(self) -> np.ndarray:
        return self.mean_a - self.mean_b

    @property
    def p(self) -> np.ndarray:
        return np.exp(self.log_p)

    @property
    def q(self) -> np.ndarray:
        return bh_qvalues(self.p)

    def significance_order(self) -> np.ndarray:
        """Pixels, most significant first (smallest p, then largest |t|); untested last."""
        lp = np.where(np.isfinite(self.log_p), self.log_p, np.inf)
        return np.lexsort((-np.nan_to_num(np.abs(self.t), nan=-1.0), lp))

    def table(self) -> pd.DataFrame:
        """One row per pixel, sorted by significance, with the feature identification."""
        names, groups = identify(self.wave)
        df = pd.DataFrame({"wavelength": self.wave, "mean_a": self.mean_a, "mean_b": self.mean_b,
                           "diff": self.diff, "t": self.t, "dof": self.dof, "p": self.p, "q": self.q,
                           "n_a": self.n_a, "n_b": self.n_b, "feature": names.astype(str),
                           "group": groups.astype(str)})
        return df.iloc[self.significance_order()].reset_index(drop=True)

    def features(self, k: int = 10, q_max: float = 0.05, rank_by: str = "ew") -> pd.DataFrame:
        """The ``k`` leading lines and bands whose deblended depth differs at q < ``q_max``
        (Benjamini-Hochberg over features): ``rank_by="ew"`` orders them by the size of the
        change in absorbed flux (|equivalent width of A - B|, A), ``"significance"`` by p."""
        cols = ["wavelength", "feature", "group", "ew_a", "ew_b", "d_ew", "t", "q"]
        ft = self.lines
        if ft is None:
            return pd.DataFrame(columns=cols)
        if rank_by not in ("ew", "significance"):
            raise ChemlatentError(f"rank features by 'ew' or 'significance', not {rank_by!r}")
        q = bh_qvalues(np.exp(ft.log_p))
        d_ew = ft.d_ew
        keep = np.flatnonzero(q < q_max)
        key = -np.abs(d_ew[keep]) if rank_by == "ew" else ft.log_p[keep]
        idx = keep[np.argsort(key, kind="stable")][:k]
        ew = ft.basis.ew_per_depth
        return pd.DataFrame({"wavelength": ft.basis.centers[idx], "feature": ft.basis.names[idx].astype(str),
                             "group": ft.basis.groups[idx].astype(str), "ew_a": ft.depth_a[idx] * ew[idx],
                             "ew_b": ft.depth_b[idx] * ew[idx], "d_ew": d_ew[idx], "t": ft.t[idx],
                             "q": q[idx]}, columns=cols)

    def meta(self) -> dict:
        """What was compared, for provenance."""
        out = {"set_a": self.label_a, "set_b": self.label_b, "n_stars_a": self.n_stars_a,
               "n_stars_b": self.n_stars_b, "test": "Welch t on continuum-normalised flux, "
               "ivar-weighted; Benjamini-Hochberg q over pixels; features: Welch t on deblended "
               "line and band depths, ranked by equivalent-width change"}
        if self.notes:
            out["notes"] = "; ".join(self.notes)
        return out


def compare_rows(survey, rows_a: np.ndarray, rows_b: np.ndarray, *, label_a: str = "A",
                 label_b: str = "B") -> Comparison:
    """The comparison of the stars at survey rows ``rows_a`` with those at ``rows_b``."""
    if len(rows_a) < 2 or len(rows_b) < 2:
        raise ChemlatentError(f"each set needs at least 2 stars to compare ({label_a}: {len(rows_a)}, "
                              f"{label_b}: {len(rows_b)})")
    basis = feature_basis(survey.grid, survey_resolution(survey))
    a, b = accumulate(survey, rows_a, basis=basis), accumulate(survey, rows_b, basis=basis)
    ma, va, na = a.moments()
    mb, vb, nb = b.moments()
    t, dof, log_p = welch(ma, va, na, mb, vb, nb)
    (da, sa), (db, sb) = a.depth_moments(), b.depth_moments()
    ft, _, flp = welch(da, sa, float(a.n_stars), db, sb, float(b.n_stars))
    lines = FeatureTest(basis, da, db, ft, flp)
    return Comparison(survey.grid.wave, ma, mb, t, dof, log_p, a.n, b.n, a.n_stars, b.n_stars,
                      label_a, label_b, lines=lines)


def _subsample(rows: np.ndarray, max_stars: int | None, rng, label: str, notes: list,
               chunk: int = 1) -> np.ndarray:
    """At most ``max_stars`` of the survey ``rows``: all the rows of randomly chosen store
    chunks of ``chunk`` stars (reading 5,000 stars scattered over a million-star survey would
    read nearly every chunk of it)."""
    if max_stars is None or rows.size <= max_stars:
        return rows
    notes.append(f"{label}: a random {max_stars:,} of its {rows.size:,} stars (whole store chunks)")
    blocks = rows // max(int(chunk), 1)
    keys = rng.permutation(np.unique(blocks))
    rank = np.empty(int(blocks.max()) + 1, np.int64)
    rank[keys] = np.arange(keys.size)
    order = np.argsort(rank[blocks], kind="stable")
    return np.sort(rows[order[:max_stars]])


def compare_sets(survey, survey_rows: np.ndarray, mask_a: np.ndarray, b, *, teff=None, logg=None,
                 max_stars: int | None = DEFAULT_MAX_STARS, seed: int = 0, label_a: str = "A",
                 label_b: str | None = None) -> Comparison:
    """Compare set A (``mask_a``) with set B: a mask, ``"rest"`` or ``"control"``.

    The masks index a table whose row ``i`` is survey row ``survey_rows[i]`` (the page's
    frame, or the command line's latents); ``teff``/``logg`` (predicted, same indexing) are
    needed for ``"control"``. The one function behind ``chemlatent compare`` and the page.
    """
    survey_rows = np.asarray(survey_rows, np.int64)
    mask_a = np.asarray(mask_a, bool)
    rng = np.random.default_rng(seed)
    notes: list[str] = []
    if isinstance(b, str):
        if b == REST:
            mask_b = ~mask_a
            label_b = label_b or "the rest"
        elif b == CONTROL:
            if teff is None or logg is None:
                raise ChemlatentError("a matched Teff/logg control needs predicted Teff and logg "
                                      "(encode the survey first)")
            from chemlatent.explore.spectrum import matched_control

            max_a = max_stars or int(mask_a.sum())
            sel, ctrl = matched_control(teff, logg, mask_a, max_stars=max_a, seed=seed)
            if sel.size < int(mask_a.sum()):
                notes.append(f"{label_a}: {sel.size:,} of its {int(mask_a.sum()):,} stars (with Teff/logg)")
            comp = compare_rows(survey, survey_rows[sel], survey_rows[ctrl], label_a=label_a,
                                label_b=label_b or "matched Teff/logg control")
            comp.notes = notes
            return comp
        else:
            raise ChemlatentError(f"set B must be a star set, {REST!r} or {CONTROL!r}, got {b!r}")
    else:
        mask_b = np.asarray(b, bool)
        label_b = label_b or "B"
    chunk = getattr(survey, "chunk_stars", 1)
    rows_a = _subsample(survey_rows[mask_a], max_stars, rng, label_a, notes, chunk)
    rows_b = _subsample(survey_rows[mask_b], max_stars, rng, label_b, notes, chunk)
    comp = compare_rows(survey, rows_a, rows_b, label_a=label_a, label_b=label_b)
    comp.notes = notes
    return comp


# --------------------------------------------------------------------------- command line


@dataclass
class SurveyComparison:
    comparison: Comparison
    table: pd.DataFrame
    meta: dict


def compare_survey(survey_dir: str | Path, a: str, b: str, *, model: str | None = None,
                   db: str | None = None, who: str | None = None,
                   max_stars: int | None = DEFAULT_MAX_STARS, seed: int = 0) -> SurveyComparison:
    """``chemlatent compare``: resolve A and B (files of star_ids, saved selection or list
    names; B also ``rest`` or ``control``) on a survey directory and compare them."""
    from chemlatent.io.annotations import DB_NAME, open_annotations
    from chemlatent.io.export import provenance
    from chemlatent.io.latents import find_latents, read_latents
    from chemlatent.io.store import Survey

    survey = Survey(survey_dir)
    ids = survey.catalog["star_id"].to_numpy(np.int64)
    rows = np.arange(ids.size, dtype=np.int64)
    teff = logg = None
    model_name = None
    if b == CONTROL:
        info = find_latents(survey.path, model)
        lat = read_latents(info.path)
        model_name = info.model_name
        pos = pd.Index(ids).get_indexer(lat["star_id"].to_numpy(np.int64))
        lat, pos = lat[pos >= 0], pos[pos >= 0]
        ids, rows = ids[pos], rows[pos]
        teff, logg = lat["teff_pred"].to_numpy(), lat["logg_pred"].to_numpy()
    store = None
    needs_store = any(not Path(s).is_file() and s not in (REST, CONTROL) for s in (a, b))
    if needs_store and (db or (survey.path / DB_NAME).exists()):
        store = open_annotations(db or survey.path, who=who)
    try:
        ids_a, label_a = resolve_ids(a, store, who=who)
        mask_a = mask_of(ids_a, ids)
        if b in (REST, CONTROL):
            spec_b, label_b = b, None
        else:
            ids_b, label_b = resolve_ids(b, store, who=who)
            spec_b = mask_of(ids_b, ids)
    finally:
        if store is not None:
            store.close()
    missing = ids_a.size - int(mask_a.sum())
    comp = compare_sets(survey, rows, mask_a, spec_b, teff=teff, logg=logg, max_stars=max_stars,
                        seed=seed, label_a=label_a, label_b=label_b)
    if missing:
        comp.notes.append(f"{label_a}: {missing:,} star_ids not in the survey")
    meta = provenance(survey_path=survey.path, model_name=model_name, extra=comp.meta())
    return SurveyComparison(comp, comp.table(), meta)
