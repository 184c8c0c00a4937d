"""Attach columns of an external table to a survey's catalog (``chemlatent labels``).

Typical uses: Teff/logg from photometry or a survey pipeline for a real survey (training uses
them), and reference abundances (fe_h, c_fe, alpha_fe) from a high-resolution cross-match for
calibration. See ``docs/labels.md``.

The table (CSV, FITS binary table, VOTable, Parquet; chosen by extension) is matched to
``DIR/catalog.parquet`` on one key:

- ``star_id``: exact equality;
- ``source_file``: base names of the catalog's ``source_file`` and a table column of file
  names, case-sensitive, ignoring a ``.gz`` suffix (or LAMOST ``obsid`` against ``obsid``);
- ``radec``: the nearest table row on the sky within a radius; a table row goes to at most
  one star, the closest.

Stars without a match keep their row with missing values (NaN / None) in the new columns: the
catalog's row count and order never change and ``star_id`` stays first. The catalog is
rewritten atomically and ``survey.json`` gets a provenance entry under ``"labels"``.
"""

from __future__ import annotations

import gzip
import json
import math
import re
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from chemlatent import __version__
from chemlatent.errors import ChemlatentError
from chemlatent.io.store import CATALOG, SURVEY_JSON, Survey, write_json_atomic, write_parquet_atomic

__all__ = ["ALIASES", "DEFAULT_RADIUS_ARCSEC", "KEYS", "MAX_RADIUS_ARCSEC", "LabelResult",
           "attach_labels", "canonical_name", "choose_key", "find_column", "match_table",
           "parse_columns", "parse_rename", "read_table", "table_format"]

#: Match keys, in the order tried when none is given.
KEYS = ("star_id", "source_file", "radec")
DEFAULT_RADIUS_ARCSEC = 1.5
#: Larger cross-match radii are refused: at a minute of arc, neighbours get confused.
MAX_RADIUS_ARCSEC = 60.0
#: How many unmatched star_ids the summary line names.
SHOW_UNMATCHED = 3

#: Canonical column name -> recognised spellings (compared lower-case, spaces removed).
ALIASES: dict[str, tuple[str, ...]] = {
    "star_id": ("star_id", "starid"),
    "source_file": ("source_file", "filename", "file_name", "file", "fname", "spec_file",
                    "specfile", "spectrum_file", "spectrum"),
    "source_row": ("source_row",),
    "obsid": ("obsid", "obs_id"),
    "ra": ("ra", "raj2000", "_raj2000", "ra_icrs", "radeg", "ra_deg", "ra_j2000", "ra2000",
           "plug_ra"),
    "dec": ("dec", "dej2000", "_dej2000", "decj2000", "de_icrs", "dec_icrs", "dedeg", "decdeg",
            "dec_deg", "dec_j2000", "dec2000", "plug_dec", "de"),
    "teff": ("teff", "t_eff", "teff_k"),
    "logg": ("logg", "log_g", "log(g)"),
    "fe_h": ("fe_h", "feh", "[fe/h]", "fe/h"),
    "c_fe": ("c_fe", "cfe", "[c/fe]", "c/fe"),
    "alpha_fe": ("alpha_fe", "afe", "a_fe", "[alpha/fe]", "alpha/fe", "[a/fe]"),
    "teff_err": ("teff_err", "e_teff", "teff_error", "sig_teff", "teff_unc"),
    "logg_err": ("logg_err", "e_logg", "logg_error", "sig_logg", "logg_unc"),
    "fe_h_err": ("fe_h_err", "e_fe_h", "feh_err", "e_feh", "e_[fe/h]", "fe_h_error"),
    "c_fe_err": ("c_fe_err", "e_c_fe", "cfe_err", "e_cfe", "e_[c/fe]", "c_fe_error"),
    "alpha_fe_err": ("alpha_fe_err", "e_alpha_fe", "afe_err", "e_afe", "e_[alpha/fe]",
                     "alpha_fe_error"),
}
_CANONICAL = {alias: name for name, spellings in ALIASES.items() for alias in spellings}
#: Identification columns: not attached unless named with ``columns``.
IDENTIFIERS = ("star_id", "source_file", "source_row", "obsid", "ra", "dec")

_EXTENSIONS = (
    (".fits.gz", "fits"), (".fit.gz", "fits"), (".fits", "fits"), (".fit", "fits"),
    (".fts", "fits"), (".vot.gz", "votable"), (".vot", "votable"), (".votable", "votable"),
    (".xml", "votable"), (".parquet", "parquet"), (".pq", "parquet"), (".ecsv", "ecsv"),
    (".csv.gz", "csv"), (".tsv.gz", "csv"), (".txt.gz", "csv"), (".csv", "csv"),
    (".tsv", "csv"), (".txt", "csv"), (".dat", "csv"),
)


# --------------------------------------------------------------------------- names


def _norm(name: object) -> str:
    return re.sub(r"\s+", "", str(name)).lower()


def canonical_name(column: str) -> str:
    """The catalog name for a table column: known aliases map to their canonical name
    (``TEFF`` -> ``teff``, ``[Fe/H]`` -> ``fe_h``), all-capital names are lower-cased
    (FITS habit), anything else is kept."""
    name = _CANONICAL.get(_norm(column))
    if name is not None:
        return name
    return column.lower() if column.isupper() else column


def find_column(columns: Any, name: str) -> str | None:
    """The column among ``columns`` that stands for ``name``: exact, then case-insensitive,
    then any alias of ``name``'s canonical form (in the order of :data:`ALIASES`)."""
    cols = [str(c) for c in columns]
    if name in cols:
        return name
    by_norm: dict[str, str] = {}
    for c in cols:
        by_norm.setdefault(_norm(c), c)
    if _norm(name) in by_norm:
        return by_norm[_norm(name)]
    canon = _CANONICAL.get(_norm(name), name)
    for alias in ALIASES.get(canon, ()):
        if alias in by_norm:
            return by_norm[alias]
    return None


def parse_rename(text: str | None) -> dict[str, str]:
    """``"old=new,old2=new2"`` -> ``{"old": "new", ...}`` (one-line error when malformed)."""
    out: dict[str, str] = {}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        old, sep, new = part.partition("=")
        old, new = old.strip(), new.strip()
        if not sep or not old or not new:
            raise ChemlatentError(f"--rename wants OLD=NEW pairs separated by commas, got {part.strip()!r}")
        if old in out:
            raise ChemlatentError(f"--rename names {old!r} twice")
        out[old] = new
    return out


def parse_columns(text: str | None) -> list[str] | None:
    """``"a,b,c"`` -> ``["a", "b", "c"]``; None or empty -> None (all label columns)."""
    if text is None:
        return None
    cols = [c.strip() for c in text.split(",") if c.strip()]
    if not cols:
        raise ChemlatentError("--columns is empty: name at least one column, or leave it out")
    return cols


# --------------------------------------------------------------------------- reading


def table_format(path: str | Path) -> str:
    """``csv``, ``ecsv``, ``fits``, ``votable`` or ``parquet`` from the file name's extension."""
    name = Path(path).name.lower()
    for ext, fmt in _EXTENSIONS:
        if name.endswith(ext):
            return fmt
    exts = ", ".join(e for e, _ in _EXTENSIONS)
    raise ChemlatentError(f"{Path(path).name}: unknown table type (use one of {exts})")


def _sniff_csv(path: Path) -> tuple[int, str, list[str] | None]:
    """(lines to skip, separator, column names when the header is a '#' comment)."""
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    comments: list[str] = []
    skip = 0
    first = None
    with opener(path, "rt", encoding="utf-8", errors="replace") as fh:
        for line in fh:
            text = line.strip()
            if not text or text.startswith("#"):
                if text:
                    comments.append(text.lstrip("#").strip())
                skip += 1
                if skip > 10000:
                    break
                continue
            first = text
            break
    if first is None:
        raise ChemlatentError(f"{path.name} has no rows")
    sep = next((s for s in (",", "\t", ";", "|") if s in first), r"\s+")
    fields = re.split(sep if sep != "|" else r"\|", first) if sep != r"\s+" else first.split()

    def numeric(v: str) -> bool:
        try:
            float(v)
            return True
        except ValueError:
            return False

    names = None
    if comments and all(numeric(f.strip()) for f in fields if f.strip()):
        head = comments[-1]
        cand = head.split() if sep == r"\s+" else [c.strip() for c in head.split(sep)]
        if len(cand) == len(fields):
            names = cand
    return skip, sep, names


def _read_csv(path: Path) -> pd.DataFrame:
    skip, sep, names = _sniff_csv(path)
    kw: dict[str, Any] = {"sep": sep, "skiprows": skip, "skipinitialspace": True}
    if names is not None:
        kw.update(header=None, names=names)
    if sep == "|":
        kw.update(sep=r"\|", engine="python")
    return pd.read_csv(path, **kw)


def _from_astropy(table: Any, notes: list[str]) -> tuple[pd.DataFrame, dict[str, str]]:
    """An astropy Table as a DataFrame (multi-dimensional columns left out), plus units."""
    multi = [n for n in table.colnames if getattr(table[n], "ndim", 1) > 1]
    if multi:
        notes.append(f"left out {len(multi)} multi-dimensional column{'s' if len(multi) > 1 else ''} "
                     f"({', '.join(multi[:5])}{', ...' if len(multi) > 5 else ''})")
        table.remove_columns(multi)
    units = {n: str(table[n].unit) for n in table.colnames if getattr(table[n], "unit", None) is not None}
    df = table.to_pandas()
    for col in df.columns:
        if df[col].dtype == object:
            s = df[col]
            if s.map(lambda v: isinstance(v, bytes)).any():
                df[col] = s.map(lambda v: v.decode("utf-8", "replace").strip() if isinstance(v, bytes) else v)
    return df, units


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a CSV / FITS / VOTable / Parquet table by extension.

    Units of FITS/VOTable columns are in ``df.attrs["units"]``, remarks (columns left out)
    in ``df.attrs["notes"]``. Missing files, unreadable or empty tables raise
    :class:`ChemlatentError` with one line.
    """
    path = Path(path)
    fmt = table_format(path)
    if not path.is_file():
        raise ChemlatentError(f"{path}: no such file")
    notes: list[str] = []
    units: dict[str, str] = {}
    try:
        if fmt == "csv":
            df = _read_csv(path)
        elif fmt == "parquet":
            df = pd.read_parquet(path)
        else:
            from astropy.io import fits
            from astropy.table import Table

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                if fmt == "fits":
                    with fits.open(path, memmap=False) as hdul:
                        tables = [i for i, h in enumerate(hdul)
                                  if isinstance(h, (fits.BinTableHDU, fits.TableHDU))]
                        if not tables:
                            raise ChemlatentError(f"{path.name} has no FITS table extension")
                        hdu = next((i for i in tables if (hdul[i].data is not None and len(hdul[i].data))),
                                   tables[0])
                        table = Table.read(hdul[hdu])
                elif fmt == "votable":
                    table = Table.read(path, format="votable", use_names_over_ids=True)
                else:
                    table = Table.read(path, format="ascii.ecsv")
            df, units = _from_astropy(table, notes)
    except ChemlatentError:
        raise
    except Exception as exc:  # each reader has its own error types
        msg = str(exc).splitlines()[0] if str(exc) else ""
        raise ChemlatentError(f"{path.name}: unreadable {fmt} table ({type(exc).__name__}: {msg})") from None
    if df.shape[1] == 0:
        raise ChemlatentError(f"{path.name} has no columns")
    if len(df) == 0:
        raise ChemlatentError(f"{path.name} has no rows")
    df.columns = [str(c).strip() for c in df.columns]
    df = df.reset_index(drop=True)
    df.attrs["units"] = units
    df.attrs["notes"] = notes
    df.attrs["format"] = fmt
    return df


# --------------------------------------------------------------------------- keys


def _file_key_columns(catalog: pd.DataFrame, table: pd.DataFrame) -> tuple[str, str, str] | None:
    """(catalog column, table column, mode) for the source_file key; mode 'name' or 'id'."""
    tab_file = find_column(table.columns, "source_file")
    tab_obsid = find_column(table.columns, "obsid")
    if tab_file is not None and "source_file" in catalog.columns:
        return "source_file", tab_file, "name"
    if tab_obsid is not None and "obsid" in catalog.columns:
        return "obsid", tab_obsid, "id"
    if tab_obsid is not None and "source_file" in catalog.columns:
        return "source_file", tab_obsid, "name"
    return None


def _has_coords(catalog: pd.DataFrame, table: pd.DataFrame) -> bool:
    if "ra" not in catalog.columns or "dec" not in catalog.columns:
        return False
    if find_column(table.columns, "ra") is None or find_column(table.columns, "dec") is None:
        return False
    ra = pd.to_numeric(catalog["ra"], errors="coerce")
    dec = pd.to_numeric(catalog["dec"], errors="coerce")
    return bool((ra.notna() & dec.notna()).any())


def choose_key(catalog: pd.DataFrame, table: pd.DataFrame, name: str = "the table") -> str:
    """The default key: star_id if the table has it, else source_file if both have file names,
    else radec if both have coordinates."""
    if find_column(table.columns, "star_id") is not None:
        return "star_id"
    if _file_key_columns(catalog, table) is not None:
        return "source_file"
    if _has_coords(catalog, table):
        return "radec"
    raise ChemlatentError(
        f"cannot match {name} to the catalog: it has no star_id column, no file-name column "
        f"(source_file/filename/obsid) the catalog also has, and no RA/Dec the catalog also has; "
        f"columns are {_some(table.columns)} (name the key with --rename COL=star_id)")


def _some(values: Any, n: int = 8) -> str:
    vals = [str(v) for v in list(values)[: n + 1]]
    return ", ".join(vals[:n]) + (", ..." if len(vals) > n else "")


def _int_keys(values: pd.Series) -> pd.Series:
    """Integer keys as Int64 (values that are not whole numbers become missing)."""
    s = values
    if s.dtype == object or pd.api.types.is_string_dtype(s):
        s = s.astype("string").str.strip()
    num = pd.to_numeric(s, errors="coerce")
    if pd.api.types.is_integer_dtype(num):
        return num.astype("Int64")
    arr = num.to_numpy(dtype=np.float64, na_value=np.nan)
    whole = np.isfinite(arr) & (np.round(arr) == arr) & (np.abs(arr) < 2.0**63)
    out = pd.array(np.where(whole, arr, 0).astype(np.int64), dtype="Int64")
    out[~whole] = pd.NA
    return pd.Series(out, index=values.index)


def _str_keys(values: pd.Series) -> pd.Series:
    """String keys, stripped; whole-number floats written without '.0'; blanks missing."""
    s = values
    if s.dtype == object:
        s = s.map(lambda v: v.decode("utf-8", "replace") if isinstance(v, bytes) else v)
    if pd.api.types.is_float_dtype(s):
        arr = s.to_numpy(np.float64)
        whole = np.isfinite(arr) & (np.round(arr) == arr)
        if whole[np.isfinite(arr)].all():
            s = _int_keys(s)
    out = s.astype("string").str.strip()
    return out.mask(out == "")


def _file_keys(values: pd.Series) -> pd.Series:
    """Base names of file paths (either slash), a trailing .gz dropped, case kept."""
    s = _str_keys(values)
    s = s.str.replace("\\", "/", regex=False).str.rsplit("/", n=1).str[-1]
    s = s.str.replace(r"\.gz$", "", regex=True, case=False)
    return s.mask(s == "")


def _key_array(keys: pd.Series) -> np.ndarray:
    """Keys as a plain numpy array for hashing (missing ones filled; callers mask them)."""
    if pd.api.types.is_integer_dtype(keys):
        return keys.fillna(0).to_numpy(np.int64)
    return keys.fillna("").to_numpy(dtype=object)


def _exact_index(cat_keys: pd.Series, tab_keys: pd.Series, key: str, table_col: str,
                 name: str) -> np.ndarray:
    """Table row per catalog row (-1: none) by exact key equality; duplicate keys are an error."""
    valid = tab_keys.notna().to_numpy()
    tk = tab_keys[valid]
    dup = tk.duplicated(keep=False)
    if dup.any():
        counts = tk[dup].value_counts()
        first = counts.index[0]
        more = len(counts) - 1
        raise ChemlatentError(
            f"{name}: duplicate {key} in column {table_col!r}: {first} appears {counts.iloc[0]} times"
            + (f" ({more} other value{'s' if more > 1 else ''} repeated too)" if more else "")
            + "; keep one row per star")
    rows = np.flatnonzero(valid)
    if rows.size == 0:
        raise ChemlatentError(f"{name}: column {table_col!r} has no usable {key} values")
    index = pd.Index(_key_array(tk))
    pos = index.get_indexer(_key_array(cat_keys))
    cat_missing = cat_keys.isna().to_numpy()
    pos[cat_missing] = -1
    return np.where(pos >= 0, rows[np.clip(pos, 0, None)], -1).astype(np.int64)


def _id_match(cat_col: pd.Series, tab_col: pd.Series, key: str, table_col: str,
              name: str) -> np.ndarray:
    """Exact match of identifiers: as integers when the catalog's are integers, else as text."""
    if pd.api.types.is_integer_dtype(cat_col):
        cat_keys, tab_keys = cat_col.astype("Int64"), _int_keys(tab_col)
    else:
        cat_keys, tab_keys = _str_keys(cat_col), _str_keys(tab_col)
    return _exact_index(cat_keys, tab_keys, key, table_col, name)


def _degrees(col: pd.Series, unit: str | None, is_ra: bool, label: str) -> np.ndarray:
    """Coordinates in degrees from numbers (unit-aware) or sexagesimal strings."""
    import astropy.units as u
    from astropy.coordinates import Angle

    num = pd.to_numeric(col, errors="coerce") if not pd.api.types.is_numeric_dtype(col) else col
    if pd.api.types.is_numeric_dtype(col) or num.notna().sum() >= 0.5 * col.notna().sum():
        arr = num.to_numpy(dtype=np.float64, na_value=np.nan)
        if unit:
            if unit.strip().lower() in ("h", "hr", "hour", "hours", "hourangle"):
                factor = 15.0
            else:
                try:
                    factor = u.Unit(unit).to(u.deg)
                except Exception:  # not an angle (or unparsable): take degrees
                    factor = 1.0
            arr = arr * factor
        return arr
    text = col.astype("string").str.strip()
    out = np.full(len(col), np.nan)
    ok = text.notna().to_numpy() & (text != "").fillna(False).to_numpy()
    vals = text[ok].to_numpy(dtype=object)
    sexa = is_ra and any(re.search(r"[:\sh]", str(v)) for v in vals[:20])
    try:
        out[ok] = Angle(list(vals), unit=u.hourangle if sexa else u.deg).deg
    except Exception:
        raise ChemlatentError(f"{label}: cannot read {col.name!r} as coordinates "
                              f"(e.g. {vals[0]!r})") from None
    return out


def _sky_match(cat_ra: np.ndarray, cat_dec: np.ndarray, tab_ra: np.ndarray, tab_dec: np.ndarray,
               radius_arcsec: float, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Nearest table row per star within the radius; a table row goes to its closest star only.

    Returns (table row per star or -1, separation in arcsec or NaN)."""
    import astropy.units as u
    from astropy.coordinates import SkyCoord

    n = cat_ra.size
    idx = np.full(n, -1, np.int64)
    sep_out = np.full(n, np.nan)
    cok = np.isfinite(cat_ra) & np.isfinite(cat_dec)
    tok = np.isfinite(tab_ra) & np.isfinite(tab_dec)
    if not cok.any():
        raise ChemlatentError("the catalog has no coordinates (ra/dec): cannot match by position")
    if not tok.any():
        raise ChemlatentError(f"{name}: no row has valid RA/Dec")
    for label, dec in (("catalog", cat_dec[cok]), (name, tab_dec[tok])):
        if np.abs(dec).max() > 90:
            raise ChemlatentError(f"{label}: Dec values beyond +-90 degrees (max {np.abs(dec).max():.4g}); "
                                  "are they in degrees?")
    stars = SkyCoord(cat_ra[cok] * u.deg, cat_dec[cok] * u.deg)
    rows = SkyCoord(tab_ra[tok] * u.deg, tab_dec[tok] * u.deg)
    j, sep, _ = stars.match_to_catalog_sky(rows)
    d = sep.to_value(u.arcsec)
    ok = d <= radius_arcsec
    star_rows = np.flatnonzero(cok)[ok]
    tab_rows = np.flatnonzero(tok)[np.asarray(j)[ok]]
    d = d[ok]
    order = np.lexsort((d, tab_rows))
    first = np.ones(order.size, bool)
    first[1:] = tab_rows[order][1:] != tab_rows[order][:-1]
    keep = order[first]
    idx[star_rows[keep]] = tab_rows[keep]
    sep_out[star_rows[keep]] = d[keep]
    return idx, sep_out


def match_table(catalog: pd.DataFrame, table: pd.DataFrame, on: str,
                radius_arcsec: float = DEFAULT_RADIUS_ARCSEC, name: str = "table",
                ) -> tuple[np.ndarray, list[str], np.ndarray | None]:
    """Match table rows to catalog rows.

    Returns (table row per catalog row, -1 when unmatched; the table columns used as key;
    separations in arcsec for ``radec``, else None).
    """
    if on == "star_id":
        col = find_column(table.columns, "star_id")
        if col is None:
            raise ChemlatentError(f"{name} has no star_id column (columns: {_some(table.columns)})")
        return _id_match(catalog["star_id"], table[col], "star_id", col, name), [col], None
    if on == "source_file":
        pair = _file_key_columns(catalog, table)
        if pair is None:
            if "source_file" not in catalog.columns and "obsid" not in catalog.columns:
                raise ChemlatentError("the catalog has no source_file column (synthetic surveys have "
                                      "none): match on star_id or radec")
            raise ChemlatentError(f"{name} has no file-name column (source_file, filename, obsid, ...; "
                                  f"columns: {_some(table.columns)})")
        cat_col, tab_col, mode = pair
        if mode == "id":
            return _id_match(catalog[cat_col], table[tab_col], "obsid", tab_col, name), [tab_col], None
        cat_keys, tab_keys = _file_keys(catalog[cat_col]), _file_keys(table[tab_col])
        used = [tab_col]
        shared = cat_keys.duplicated(keep=False) & cat_keys.notna()
        if shared.any():
            tab_row = find_column(table.columns, "source_row")
            if tab_row is not None and "source_row" in catalog.columns:
                cat_keys = cat_keys + "#" + _str_keys(catalog["source_row"])
                tab_keys = tab_keys + "#" + _str_keys(table[tab_row])
                used.append(tab_row)
            else:
                hit = shared & cat_keys.isin(set(tab_keys.dropna()))
                if hit.any():
                    example = cat_keys[hit].iloc[0]
                    raise ChemlatentError(
                        f"{int(hit.sum())} stars share a source_file with a table row (e.g. {example} "
                        f"holds several spectra): add a source_row column to {name}, or match on "
                        "star_id or radec")
        return _exact_index(cat_keys, tab_keys, "source_file", tab_col, name), used, None
    if on == "radec":
        check_radius(radius_arcsec)
        if "ra" not in catalog.columns or "dec" not in catalog.columns:
            raise ChemlatentError("the catalog has no ra/dec columns: cannot match by position")
        ra_col, dec_col = find_column(table.columns, "ra"), find_column(table.columns, "dec")
        if ra_col is None or dec_col is None:
            raise ChemlatentError(f"{name} has no RA/Dec columns (ra, dec, RAJ2000, DEJ2000, ...; "
                                  f"columns: {_some(table.columns)})")
        units = table.attrs.get("units", {})
        tab_ra = _degrees(table[ra_col], units.get(ra_col), True, name)
        tab_dec = _degrees(table[dec_col], units.get(dec_col), False, name)
        cat_ra = pd.to_numeric(catalog["ra"], errors="coerce").to_numpy(np.float64, na_value=np.nan)
        cat_dec = pd.to_numeric(catalog["dec"], errors="coerce").to_numpy(np.float64, na_value=np.nan)
        idx, sep = _sky_match(cat_ra, cat_dec, tab_ra, tab_dec, float(radius_arcsec), name)
        return idx, [ra_col, dec_col], sep
    raise ChemlatentError(f"unknown key {on!r}: use one of {', '.join(KEYS)}")


def check_radius(radius_arcsec: float) -> float:
    """The radius as a float, or a one-line error when it is not in (0, MAX_RADIUS_ARCSEC]."""
    try:
        r = float(radius_arcsec)
    except (TypeError, ValueError):
        raise ChemlatentError(f"--radius must be a number of arcseconds, got {radius_arcsec!r}") from None
    if not (math.isfinite(r) and 0 < r <= MAX_RADIUS_ARCSEC):
        raise ChemlatentError(f"--radius {radius_arcsec} arcsec is not sensible: use a value in "
                              f"(0, {MAX_RADIUS_ARCSEC:g}]")
    return r


# --------------------------------------------------------------------------- attaching


@dataclass
class LabelResult:
    """What :func:`attach_labels` did (or, with ``dry_run``, would do)."""

    table: str
    on: str
    columns: list[str]
    source_columns: list[str]
    n_stars: int
    matched: int
    n_unmatched: int
    unmatched_ids: list[Any]
    table_rows: int
    table_unmatched: int
    replaced: list[str] = field(default_factory=list)
    radius_arcsec: float | None = None
    median_sep_arcsec: float | None = None
    notes: list[str] = field(default_factory=list)
    written: bool = False

    def provenance(self) -> dict[str, Any]:
        """The entry appended to survey.json's ``"labels"`` list."""
        entry: dict[str, Any] = {
            "table": self.table, "on": self.on, "columns": list(self.columns),
            "source_columns": list(self.source_columns), "matched": self.matched,
            "unmatched": self.n_unmatched, "table_rows": self.table_rows,
            "table_unmatched": self.table_unmatched,
        }
        if self.replaced:
            entry["replaced"] = list(self.replaced)
        if self.radius_arcsec is not None:
            entry["radius_arcsec"] = self.radius_arcsec
            entry["median_sep_arcsec"] = self.median_sep_arcsec
        entry["time"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        entry["software_version"] = __version__
        return entry

    def summary(self) -> str:
        """One line, e.g. ``attached teff, logg to 1,180 of 1,200 stars by star_id (20
        unmatched: 3, 17, 56, ...); 4 table rows matched no star``."""
        cols = self.columns
        names = ", ".join(cols[:8]) + (f" and {len(cols) - 8} more" if len(cols) > 8 else "")
        verb = "attached" if self.written else "would attach"
        by = (f"by position within {self.radius_arcsec:g}\"" if self.on == "radec"
              else f"by {self.on}")
        text = f"{verb} {names} to {self.matched:,} of {self.n_stars:,} stars {by}"
        if self.n_unmatched:
            ids = ", ".join(str(i) for i in self.unmatched_ids[:SHOW_UNMATCHED])
            more = ", ..." if self.n_unmatched > SHOW_UNMATCHED else ""
            text += f" ({self.n_unmatched:,} unmatched: {ids}{more})"
        else:
            text += " (all matched)"
        if self.median_sep_arcsec is not None:
            text += f", median separation {self.median_sep_arcsec:.2f}\""
        if self.table_unmatched:
            rows = "row" if self.table_unmatched == 1 else "rows"
            text += f"; {self.table_unmatched:,} table {rows} matched no star"
        else:
            text += "; every table row matched"
        if self.replaced:
            text += f"; replaced {', '.join(self.replaced)}"
        return text


def _apply_rename(table: pd.DataFrame, rename: dict[str, str], name: str) -> dict[str, str]:
    """Rename table columns in place; returns new name -> original name for renamed ones."""
    mapping: dict[str, str] = {}
    for old, new in rename.items():
        col = old if old in table.columns else next(
            (c for c in table.columns if _norm(c) == _norm(old)), None)
        if col is None:
            raise ChemlatentError(f"--rename: {name} has no column {old!r} (columns: {_some(table.columns)})")
        mapping[col] = new
    targets = list(mapping.values())
    clash = next((t for t in targets if targets.count(t) > 1), None)
    if clash is not None:
        raise ChemlatentError(f"--rename gives two columns the name {clash!r}")
    renamed = [mapping.get(c, c) for c in table.columns]
    dup = next((c for c in renamed if renamed.count(c) > 1), None)
    if dup is not None:
        raise ChemlatentError(f"--rename: {name} would have two columns named {dup!r}")
    table.columns = renamed
    return {new: old for old, new in mapping.items()}


def _select(table: pd.DataFrame, columns: list[str] | None, key_cols: list[str],
            renamed: dict[str, str], name: str) -> list[str]:
    """Table columns to attach: the named ones, or every non-identifier column."""
    if columns is None:
        chosen = [c for c in table.columns if c not in key_cols
                  and (c in renamed or canonical_name(c) not in IDENTIFIERS)]
        if not chosen:
            raise ChemlatentError(f"{name} has nothing to attach besides its key and identifier "
                                  f"columns ({_some(table.columns)}); name them with --columns")
        return chosen
    original = {old: new for new, old in renamed.items()}
    chosen = []
    for want in columns:
        col = original.get(want)
        if col is None:
            col = find_column(table.columns, want)
        if col is None:
            col = next((original[o] for o in original if _norm(o) == _norm(want)), None)
        if col is None:
            raise ChemlatentError(f"--columns: {name} has no column {want!r} "
                                  f"(columns: {_some(table.columns)})")
        if col not in chosen:
            chosen.append(col)
    return chosen


def _take(col: pd.Series, idx: np.ndarray) -> pd.Series:
    """``col`` at table rows ``idx``; missing (NaN / None) where idx is -1."""
    col = col.reset_index(drop=True)
    if (idx >= 0).all():
        return col.iloc[idx].reset_index(drop=True)
    was_bool = pd.api.types.is_bool_dtype(col)
    out = col.reindex(idx).reset_index(drop=True)
    if was_bool:
        return out.astype("boolean")
    if pd.api.types.is_integer_dtype(out.dtype) or pd.api.types.is_float_dtype(out.dtype):
        if isinstance(out.dtype, pd.api.extensions.ExtensionDtype):
            return pd.Series(out.to_numpy(dtype=np.float64, na_value=np.nan))
        return out
    if out.dtype == object:
        return out.astype(object).where(out.notna(), None)
    return out


def attach_labels(
    survey_dir: str | Path,
    table_path: str | Path,
    *,
    on: str | None = None,
    radius_arcsec: float | None = None,
    columns: list[str] | None = None,
    rename: dict[str, str] | None = None,
    prefix: str = "",
    overwrite_columns: bool = False,
    dry_run: bool = False,
) -> LabelResult:
    """Attach columns of the table at ``table_path`` to the catalog of the survey ``survey_dir``.

    ``rename`` is applied to the table's columns first (so ``{"ID": "star_id"}`` declares a
    key); ``columns`` picks what to attach (default: every column but the key and
    identifiers); known aliases get their canonical name, then ``prefix`` is put in front.
    Unmatched stars get NaN / None; the catalog's rows never change. Writes nothing when
    ``dry_run``. Bad input raises :class:`ChemlatentError` with one line.
    """
    survey = Survey(survey_dir)
    if on is not None and on not in KEYS:
        raise ChemlatentError(f"unknown key {on!r}: use one of {', '.join(KEYS)}")
    radius = check_radius(DEFAULT_RADIUS_ARCSEC if radius_arcsec is None else radius_arcsec)
    prefix = prefix or ""
    if not re.fullmatch(r"[A-Za-z0-9_]{0,32}", prefix):
        raise ChemlatentError(f"--prefix {prefix[:40]!r}: use at most 32 letters, digits or underscores "
                              "(column names travel to FITS and VOTable exports)")
    table_path = Path(table_path)
    name = table_path.name
    table = read_table(table_path)
    notes = list(table.attrs.get("notes", []))
    renamed = _apply_rename(table, rename or {}, name)
    catalog = survey.catalog
    if "star_id" not in catalog.columns:
        raise ChemlatentError(f"{survey.path / CATALOG} has no star_id column")
    key = on or choose_key(catalog, table, name)
    idx, key_cols, sep = match_table(catalog, table, key, radius, name)

    chosen = _select(table, columns, key_cols, renamed, name)
    out_names = [prefix + (c if c in renamed else canonical_name(c)) for c in chosen]
    dup = next((n for n in out_names if out_names.count(n) > 1), None)
    if dup is not None:
        srcs = [c for c, n in zip(chosen, out_names) if n == dup]
        raise ChemlatentError(f"columns {', '.join(map(repr, srcs))} would both become {dup!r}: "
                              "pick one with --columns or name them with --rename")
    if "star_id" in out_names:
        raise ChemlatentError("cannot replace the catalog's star_id; leave that column out or --rename it")
    existing = [n for n in out_names if n in catalog.columns]
    if existing and not overwrite_columns:
        raise ChemlatentError(
            f"the catalog already has {', '.join(existing)}: pass --overwrite-columns to replace, or "
            "--prefix/--rename to keep both")

    hit = idx >= 0
    matched = int(hit.sum())
    if matched == 0:
        cat_col = {"source_file": "source_file" if "source_file" in catalog else "obsid",
                   "radec": "ra"}.get(key, "star_id")
        example = _some(table[key_cols[0]].dropna().head(3), 3)
        raise ChemlatentError(
            f"no row of {name} matched a star by {key} (table {key_cols[0]} like {example}; catalog "
            f"{cat_col} like {_some(catalog[cat_col].dropna().head(3), 3)}); nothing attached")
    unmatched_ids = catalog["star_id"].to_numpy()[~hit][:20].tolist()
    used_rows = np.unique(idx[hit]).size
    result = LabelResult(
        table=name, on=key, columns=out_names, source_columns=[renamed.get(c, c) for c in chosen],
        n_stars=len(catalog),
        matched=matched, n_unmatched=int((~hit).sum()), unmatched_ids=unmatched_ids,
        table_rows=len(table), table_unmatched=len(table) - used_rows, replaced=existing,
        radius_arcsec=radius if key == "radec" else None,
        median_sep_arcsec=float(np.nanmedian(sep[hit])) if sep is not None else None,
        notes=notes,
    )
    if dry_run:
        return result

    new = catalog.copy()
    for src, out in zip(chosen, out_names):
        new[out] = _take(table[src], idx).set_axis(new.index)
    if list(new.columns[:1]) != ["star_id"]:
        new = new[["star_id"] + [c for c in new.columns if c != "star_id"]]
    write_parquet_atomic(new, survey.path / CATALOG)
    meta_path = survey.path / SURVEY_JSON
    meta = json.loads(meta_path.read_text())
    meta.setdefault("labels", []).append(result.provenance())
    write_json_atomic(meta, meta_path)
    result.written = True
    return result
