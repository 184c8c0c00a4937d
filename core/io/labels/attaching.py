"""Attaching matched columns to the catalog (atomic rewrite with provenance)."""


import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from chemlatent import __version__
from chemlatent.errors import ChemlatentError
from chemlatent.io.labels.matching import (
    _some,
    check_radius,
    choose_key,
    match_table,
)
from chemlatent.io.labels.reading import (
    DEFAULT_RADIUS_ARCSEC,
    IDENTIFIERS,
    KEYS,
    SHOW_UNMATCHED,
    _norm,
    canonical_name,
    find_column,
    read_table,
)
from chemlatent.io.store import CATALOG, SURVEY_JSON, Survey, write_json_atomic, write_parquet_atomic


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
