"""Matching a label table to the catalog: by star_id, by source file or on the sky."""


import math
import re
from typing import Any

import numpy as np
import pandas as pd

from chemlatent.errors import ChemlatentError
from chemlatent.io.labels.reading import (
    DEFAULT_RADIUS_ARCSEC,
    KEYS,
    MAX_RADIUS_ARCSEC,
    find_column,
)


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
