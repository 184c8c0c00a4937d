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

from chemlatent.io.labels.attaching import LabelResult, attach_labels
from chemlatent.io.labels.matching import choose_key, match_table
from chemlatent.io.labels.reading import (
    ALIASES,
    DEFAULT_RADIUS_ARCSEC,
    KEYS,
    MAX_RADIUS_ARCSEC,
    canonical_name,
    find_column,
    parse_columns,
    parse_rename,
    read_table,
    table_format,
)

__all__ = ["ALIASES", "DEFAULT_RADIUS_ARCSEC", "KEYS", "MAX_RADIUS_ARCSEC", "LabelResult",
           "attach_labels", "canonical_name", "choose_key", "find_column", "match_table",
           "parse_columns", "parse_rename", "read_table", "table_format"]
