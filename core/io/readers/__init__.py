"""Readers for real survey spectrum files: SDSS/BOSS/SEGUE, LAMOST, 1-D WCS FITS, tables.

Each reader turns one file into :class:`RawSpectrum` objects (wavelength in Angstrom in
vacuum, increasing; flux; inverse variance that is 0 on every bad pixel; a bad-pixel mask;
a metadata dict). Per-file problems raise :class:`chemlatent.errors.FormatError` with a short
one-line message; resampling and survey writing live in :mod:`chemlatent.io.ingest`.

Supported layouts (``fmt``):

- ``sdss``: ``spec-PLATE-MJD-FIBER.fits``, HDU ``COADD`` with loglam, flux, ivar, and_mask.
- ``lamost``: low-resolution spectra, DR7-and-earlier primary image (rows flux, ivar,
  wavelength, andmask, ormask) and DR8+ ``COADD`` binary table (FLUX, IVAR, WAVELENGTH, ...).
- ``wcs1d``: a 1-D FITS image with a linear or log-linear (``DC-FLAG = 1``) wavelength WCS,
  with optional ivar / error / variance / mask extensions.
- ``table``: a FITS binary table, HDF5 file or Parquet file with wavelength and flux (and
  optionally ivar, error or variance, mask) columns; either one spectrum per row (array
  columns) or one spectrum stored as the columns of a long table.
"""


from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from chemlatent.errors import FormatError
from chemlatent.io.readers.base import (
    FORMATS,
    MEDIA,
    RawSpectrum,
    _one_line,
    air_to_vacuum,
    der_snr_noise,
    finalise,
    medium_from,
)
from chemlatent.io.readers.fits import (
    check_fits_layout,
    detect_fits,
    open_fits,
    sniff,
)
from chemlatent.io.readers.lamost import read_lamost
from chemlatent.io.readers.sdss import read_sdss
from chemlatent.io.readers.table import (
    _records_fits_table,
    _records_hdf5,
    _records_parquet,
    _table_spectrum,
)
from chemlatent.io.readers.wcs1d import read_wcs1d

__all__ = ["FORMATS", "MEDIA", "RawSpectrum", "air_to_vacuum", "check_fits_layout", "damaged",
           "der_snr_noise", "detect_fits", "finalise", "iter_items", "iter_spectra", "medium_from",
           "open_fits", "read_lamost", "read_sdss", "read_spectrum", "read_wcs1d", "sniff"]


def damaged(exc: BaseException) -> FormatError:
    """A FormatError for an exception a parsing library raised on damaged content."""
    name = type(exc).__name__
    if isinstance(exc, MemoryError):
        return FormatError("file is corrupt (it declares more data than fits in memory)")
    if name == "VerifyError":
        return FormatError(f"file is corrupt (invalid FITS header: {_one_line(exc, 80)})")
    return FormatError(f"file is truncated or corrupt ({name}: {_one_line(exc, 80)})")


def iter_items(path: str | Path, fmt: str | None = None,
               medium: str | None = None) -> Iterator[RawSpectrum | FormatError]:
    """Spectra of one file; a bad row of a multi-spectrum table yields a FormatError item.

    File-level problems (unreadable, unknown layout, damaged content) raise FormatError,
    whatever the parsing library underneath raised. When a multi-spectrum table breaks off
    after some good rows, those rows come out and then one FormatError item for the rest.
    """
    path = Path(path)
    if fmt is not None and fmt not in FORMATS:
        raise FormatError(f"unknown format {fmt!r} (choose from {', '.join(FORMATS)})")
    if medium is not None and medium not in MEDIA:
        raise FormatError(f"unknown wavelength medium {medium!r} (vacuum or air)")
    items = _iter_items(path, fmt, medium)
    n = 0
    try:
        while True:
            err = None
            try:
                # damaged values (NaN casts, overflowing WCS) are handled, not worth a warning line
                with warnings.catch_warnings(), np.errstate(all="ignore"):
                    warnings.simplefilter("ignore")
                    item = next(items)
            except StopIteration:
                return
            except FormatError:
                raise
            except Exception as exc:  # astropy, h5py, pyarrow on damaged bytes: anything goes
                err = damaged(exc)
            if err is not None:  # raised out here, the library's frames (and files) are freed now
                if n == 0:
                    raise err
                yield FormatError(f"rows {n} onwards: {err}")
                return
            n += 1
            yield item
    finally:
        items.close()  # the file is closed as soon as the reader stops, not at garbage collection


def _iter_items(path: Path, fmt: str | None,
                medium: str | None) -> Iterator[RawSpectrum | FormatError]:
    kind = sniff(path)
    if kind != "fits":
        if fmt not in (None, "table"):
            raise FormatError(f"this is an {kind.upper() if kind == 'hdf5' else 'Parquet'} file, "
                              f"not a FITS file as --format {fmt} needs")
        opener = _records_hdf5 if kind == "hdf5" else _records_parquet
        roles, units, filemeta, multi, recs = opener(path)
        yield from _table_items(recs, roles, units, filemeta, path, multi, medium)
        return
    hdul = open_fits(path)
    try:
        fmt = fmt or detect_fits(hdul)
        if fmt == "table":
            roles, units, filemeta, multi, recs = _records_fits_table(hdul)
            yield from _table_items(recs, roles, units, filemeta, path, multi, medium)
        else:
            reader = {"sdss": read_sdss, "lamost": read_lamost, "wcs1d": read_wcs1d}[fmt]
            yield from reader(hdul, path, medium)
    finally:
        hdul.close()


def _table_items(recs: Iterator[dict], roles: dict, units: dict, filemeta: dict, path: Path,
                 multi: bool, medium: str | None) -> Iterator[RawSpectrum | FormatError]:
    for row, rec in enumerate(recs):
        try:
            if rec.get("flux") is None or rec.get("wave") is None:
                raise FormatError("wavelength or flux is empty")
            yield _table_spectrum(rec, roles, units, filemeta, path, row, multi, medium)
        except FormatError as exc:
            if not multi:
                raise
            yield FormatError(f"row {row}: {exc}")
        except (ValueError, TypeError, OverflowError) as exc:  # one row's odd values
            if not multi:
                raise damaged(exc) from None
            yield FormatError(f"row {row}: {damaged(exc)}")


def iter_spectra(path: str | Path, fmt: str | None = None,
                 medium: str | None = None) -> Iterator[RawSpectrum]:
    """All spectra in a file (one for SDSS/LAMOST/wcs1d, one per row for array tables).

    Raises FormatError on the first problem. ``fmt`` None means auto-detect from content;
    ``medium`` is the wavelength medium assumed for wcs1d/table files that do not declare it.
    """
    for item in iter_items(path, fmt, medium):
        if isinstance(item, FormatError):
            raise item
        yield item


def read_spectrum(path: str | Path, fmt: str | None = None, *, index: int = 0,
                  medium: str | None = None) -> RawSpectrum:
    """Read one spectrum (the ``index``-th of a multi-spectrum table) from a file."""
    for i, spec in enumerate(iter_spectra(path, fmt, medium)):
        if i == index:
            return spec
    raise FormatError(f"{Path(path).name} holds fewer than {index + 1} spectra")
