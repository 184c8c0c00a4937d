"""Reading label tables (CSV with a sniffed dialect, FITS, VOTable, Parquet) and the
names of their columns (aliases, ``--rename``, ``--columns``)."""


import gzip
import re
import warnings
from pathlib import Path
from typing import Any

import pandas as pd

from chemlatent.errors import ChemlatentError

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
