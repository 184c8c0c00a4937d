"""LAMOST low-resolution spectra (DR7-and-earlier image and DR8+ ``COADD`` table)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from chemlatent.errors import FormatError
from chemlatent.io.readers.base import (
    RawSpectrum,
    _base_meta,
    _coord,
    _float,
    _int,
    _lower_map,
    _str,
    finalise,
    medium_from,
)

# --------------------------------------------------------------------------- LAMOST


def _lamost_wave(wave: np.ndarray, prim: Mapping[str, Any]) -> np.ndarray:
    """Exact log-linear wavelengths from COEFF0/COEFF1 when they match the stored column."""
    c0, c1 = _float(prim.get("coeff0")), _float(prim.get("coeff1"))
    wave = np.asarray(wave, dtype=np.float64)
    if np.isfinite(c0) and np.isfinite(c1) and c1 > 0 and np.all(wave > 0):
        exact = 10.0 ** (c0 + c1 * np.arange(wave.size))
        if np.max(np.abs(np.log10(wave) - np.log10(exact))) < 0.01 * c1:
            return exact
    return wave


def read_lamost(hdul, path: Path, medium: str | None = None) -> Iterator[RawSpectrum]:
    """LAMOST low-resolution spectrum: DR7-style primary image or DR8+ COADD table."""
    from astropy.io import fits

    prim = _lower_map(hdul[0].header)
    table = None
    for hdu in hdul[1:]:
        if isinstance(hdu, fits.BinTableHDU) and hdu.columns is not None:
            names = {n.upper() for n in hdu.columns.names}
            if {"FLUX", "WAVELENGTH"} <= names:
                table = hdu
                break
    if table is not None:
        cols = {n.upper(): n for n in table.columns.names}
        if table.data is None or len(table.data) == 0:
            raise FormatError("COADD table has no rows")
        row = table.data[0]

        def get(name: str) -> np.ndarray | None:
            return np.asarray(row[cols[name]]) if name in cols else None

        flux, ivar, wave, andmask = get("FLUX"), get("IVAR"), get("WAVELENGTH"), get("ANDMASK")
        if ivar is None:
            raise FormatError("LAMOST COADD table has no IVAR column")
        layout = "table"
    else:
        data = hdul[0].data
        if data is None:
            raise FormatError("unknown layout: LAMOST file with neither a primary image nor "
                              "a COADD table")
        if data.ndim != 2 or not 3 <= data.shape[0] <= 5:
            raise FormatError(f"wrong shape: LAMOST image is {data.shape}, expected (5, N) rows "
                              "flux, ivar, wavelength, andmask, ormask")
        flux, ivar, wave = data[0], data[1], data[2]
        andmask = data[3] if data.shape[0] >= 4 else None
        layout = "image"
    wave = _lamost_wave(np.asarray(wave, dtype=np.float64).ravel(), prim)
    meta = _base_meta(path, "lamost")
    obsid = _int(prim.get("obsid"))
    desig = _str(prim.get("desig"))
    meta["obj_id"] = str(obsid) if obsid is not None else (desig or meta["obj_id"])
    meta.update(obsid=obsid, designation=desig, lamost_layout=layout,
                ra=_coord(prim.get("ra"), hours=False), dec=_coord(prim.get("dec"), hours=False),
                z=_float(prim.get("z")), z_err=_float(prim.get("z_err")),
                snr_g=_float(prim.get("snrg")), snr_r=_float(prim.get("snrr")),
                mjd=_int(prim.get("mjd")), fiberid=_int(prim.get("fiberid")))
    for key in ("class", "subclass"):
        v = _str(prim.get(key))
        if v:
            meta[key] = v
    med = "air" if medium_from(prim) == "air" else "vacuum"
    yield finalise(wave, np.ravel(flux), np.ravel(ivar),
                   None if andmask is None else np.ravel(andmask), meta, medium=med)
