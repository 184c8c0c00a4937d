"""SDSS/BOSS/SEGUE ``spec-PLATE-MJD-FIBER.fits`` (HDU ``COADD``)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from chemlatent.errors import FormatError
from chemlatent.io.readers.base import (
    RawSpectrum,
    _base_meta,
    _coord,
    _first,
    _float,
    _int,
    _lower_map,
    _str,
    finalise,
    medium_from,
)

# --------------------------------------------------------------------------- SDSS


_SDSS_NAME = re.compile(r"spec-(\d{4,6})-(\d{5})-(\d{3,4})")


def read_sdss(hdul, path: Path, medium: str | None = None) -> Iterator[RawSpectrum]:
    """SDSS/BOSS/SEGUE ``spec-PLATE-MJD-FIBER.fits`` (coadd in HDU COADD, vacuum)."""
    from astropy.io import fits

    names = [h.name.upper() for h in hdul]
    hdu = hdul["COADD"] if "COADD" in names else (hdul[1] if len(hdul) > 1 else None)
    if not isinstance(hdu, fits.BinTableHDU) or hdu.data is None:
        raise FormatError("not an SDSS spec file: no COADD binary table in HDU 1")
    cols = {n.lower(): n for n in hdu.columns.names}
    missing = [c for c in ("loglam", "flux", "ivar") if c not in cols]
    if missing:
        raise FormatError(f"not an SDSS spec file: COADD table has no {', '.join(missing)} column")
    data = hdu.data
    if len(data) == 0:
        raise FormatError("COADD table has no rows")

    def col(name: str) -> np.ndarray:
        a = np.asarray(data[cols[name]])
        return a[0] if a.ndim == 2 and a.shape[0] == 1 else a

    mask_key = "and_mask" if "and_mask" in cols else ("andmask" if "andmask" in cols else None)
    mask = col(mask_key) if mask_key else None
    prim = _lower_map(hdul[0].header)
    spall: dict[str, Any] = {}
    for h in hdul[2:]:
        if isinstance(h, fits.BinTableHDU) and h.data is not None and len(h.data) >= 1:
            hn = {n.lower() for n in h.columns.names}
            if {"plate", "mjd", "fiberid"} <= hn or "plug_ra" in hn:
                row = h.data[0]
                spall = {n.lower(): row[n] for n in h.columns.names
                         if np.ndim(row[n]) == 0}
                break
    meta = _base_meta(path, "sdss")
    plate = _int(_first(prim, ("plateid", "plate")) or spall.get("plate"))
    mjd = _int(prim.get("mjd") or spall.get("mjd"))
    fiber = _int(_first(prim, ("fiberid", "fiber")) or spall.get("fiberid"))
    m = _SDSS_NAME.search(path.name)
    if m:
        plate = plate if plate is not None else int(m.group(1))
        mjd = mjd if mjd is not None else int(m.group(2))
        fiber = fiber if fiber is not None else int(m.group(3))
    if plate is not None and mjd is not None and fiber is not None:
        meta["obj_id"] = f"{plate:04d}-{mjd:05d}-{fiber:04d}"
    meta.update(plate=plate, mjd=mjd, fiberid=fiber)
    ra = _first(prim, ("plug_ra",))
    dec = _first(prim, ("plug_dec",))
    if ra is None:
        ra, dec = spall.get("plug_ra"), spall.get("plug_dec")
    if ra is None:
        ra, dec = prim.get("ra"), prim.get("dec")
    meta["ra"], meta["dec"] = _coord(ra, hours=False), _coord(dec, hours=False)
    z = prim.get("z") if "z" in prim else spall.get("z")
    meta["z"] = _float(z)
    for key in ("class", "subclass"):
        v = _str(prim.get(key) or spall.get(key))
        if v:
            meta[key] = v
    wave = 10.0 ** col("loglam").astype(np.float64)
    med = "air" if medium_from(prim) == "air" else "vacuum"
    yield finalise(wave, col("flux"), col("ivar"), mask, meta, medium=med)
