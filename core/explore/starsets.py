"""Star sets named the way users name them: a file of star_ids, a saved selection or list,
"the rest" of the survey, or the matched Teff/logg control of another set (GUI-free).

The command line (``chemlatent compare``, ``annotate``) and the page resolve sets with the
same functions, so a name means the same stars in both.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from chemlatent.errors import ChemlatentError

REST = "rest"
CONTROL = "control"
SPECIAL_SETS: dict[str, str] = {
    REST: "every star of the survey not in the other set",
    CONTROL: "survey stars at the same predicted Teff/logg as the other set (matched control)",
}
TABLE_SUFFIXES = (".csv", ".fits", ".fit", ".fts", ".vot", ".votable", ".xml", ".parquet")


def read_star_ids(path: str | Path) -> np.ndarray:
    """star_ids from a file: plain text (one id per line, ``#`` comments), or a table
    (CSV, FITS, VOTable, Parquet) with a ``star_id`` column (the first column otherwise)."""
    path = Path(path)
    if not path.is_file():
        raise ChemlatentError(f"{path} is not a file of star_ids")
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            df = pd.read_parquet(path)
        elif suffix in TABLE_SUFFIXES and suffix != ".csv":
            from astropy.table import Table

            df = Table.read(path).to_pandas()
        else:
            df = _read_text_ids(path)
    except ChemlatentError:
        raise
    except Exception as exc:
        raise ChemlatentError(f"cannot read star_ids from {path} ({type(exc).__name__}: {exc})") from None
    first = df.columns[0] if len(df.columns) else None
    col = next((c for c in df.columns if str(c).lower() == "star_id"), first)
    if col is None:
        raise ChemlatentError(f"{path} has no star_id column")
    ids = pd.to_numeric(df[col], errors="coerce")
    if ids.isna().any():
        raise ChemlatentError(f"{path}: column {col!r} holds values that are not star_ids")
    return np.unique(ids.to_numpy(np.int64))


def _read_text_ids(path: Path) -> pd.DataFrame:
    lines = [ln.split("#", 1)[0].strip() for ln in path.read_text().splitlines()]
    lines = [ln for ln in lines if ln]
    if lines and "," in lines[0]:  # a CSV table with a header
        from io import StringIO

        return pd.read_csv(StringIO("\n".join(lines)))
    if lines and not lines[0].lstrip("+-").isdigit():  # a one-column header
        return pd.DataFrame({lines[0]: lines[1:]})
    return pd.DataFrame({"star_id": lines})


def resolve_ids(spec: str, store=None, *, who: str | None = None) -> tuple[np.ndarray, str]:
    """(star_ids, description) of a set named by a file path or a saved name: the user's
    saved selection of that name first, then a saved candidate list."""
    path = Path(spec)
    if path.is_file():
        return read_star_ids(path), f"file {path.name}"
    if store is None:
        raise ChemlatentError(f"{spec!r} is neither a file of star_ids nor a saved selection "
                              "(this survey has no annotations database)")
    try:
        sel = store.get_selection(spec, who=who)
        return sel.star_ids, f"saved selection {spec!r}"
    except ChemlatentError:
        pass
    try:
        lst = store.get_list(spec)
        return lst.star_ids, f"saved list {spec!r}"
    except ChemlatentError:
        pass
    names = sorted(set(store.selections(who=who)["name"]) | set(store.lists()["name"]))
    raise ChemlatentError(f"{spec!r} is neither a file of star_ids nor a saved selection or list"
                          + (f" (saved: {', '.join(names)})" if names else ""))


def mask_of(star_ids: np.ndarray, frame_ids: np.ndarray) -> np.ndarray:
    """Boolean mask over ``frame_ids`` of the stars in ``star_ids``."""
    return np.isin(np.asarray(frame_ids, np.int64), np.asarray(star_ids, np.int64))
