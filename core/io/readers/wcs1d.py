"""1-D FITS images with a linear or log-linear wavelength WCS."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from chemlatent.errors import FormatError
from chemlatent.io.readers.base import (
    Z_NAMES,
    RawSpectrum,
    _base_meta,
    _coord,
    _first,
    _float,
    _int,
    _lower_map,
    _str,
    _unit_scale,
    finalise,
    medium_from,
)

# --------------------------------------------------------------------------- 1-D WCS image


def _wcs_wave(hdr: Mapping[str, Any], n: int) -> tuple[np.ndarray, bool]:
    """Wavelengths (Angstrom) of a 1-D image from CRVAL1/CDELT1|CD1_1/CRPIX1/DC-FLAG."""
    crval = _float(hdr.get("crval1"))
    step = _float(hdr.get("cdelt1"))
    if not np.isfinite(step) or step == 0:
        step = _float(hdr.get("cd1_1"))
    if not np.isfinite(crval):
        raise FormatError("unknown layout: 1-D image without a wavelength WCS (no CRVAL1)")
    if not np.isfinite(step) or step == 0:
        raise FormatError("unknown layout: 1-D image without a wavelength step (CDELT1/CD1_1)")
    crpix = _float(hdr.get("crpix1"))
    crpix = 1.0 if not np.isfinite(crpix) else crpix
    p = np.arange(n, dtype=np.float64) + 1.0 - crpix
    ctype = str(hdr.get("ctype1") or "").upper()
    dcflag = _int(hdr.get("dc-flag"))
    if ctype.endswith("-LOG"):
        scale, _ = _unit_scale(hdr.get("cunit1"))
        return crval * scale * np.exp(step * p / crval), True
    if dcflag == 1 or (dcflag is None and 2.5 < crval < 5.5 and abs(step) < 0.01):
        return 10.0 ** (crval + step * p), True
    scale, is_log = _unit_scale(hdr.get("cunit1"))
    if is_log:
        return 10.0 ** (crval + step * p), True
    return (crval + step * p) * scale, False


def read_wcs1d(hdul, path: Path, medium: str | None = None) -> Iterator[RawSpectrum]:
    """A 1-D FITS image with a wavelength WCS; ivar/error/variance/mask in other HDUs."""
    from astropy.io import fits

    spec = None
    for hdu in hdul:
        if isinstance(hdu, (fits.PrimaryHDU, fits.ImageHDU)) and hdu.data is not None:
            spec = hdu
            break
    if spec is None:
        raise FormatError("unknown layout: no image HDU with a spectrum")
    flux = np.squeeze(np.asarray(spec.data, dtype=np.float64))
    if flux.ndim != 1:
        raise FormatError(f"wrong shape: image is {spec.data.shape}; wcs1d needs a 1-D spectrum")
    hdr = _lower_map(spec.header)
    prim = _lower_map(hdul[0].header)
    allhdr = {**prim, **hdr}
    wave, is_log = _wcs_wave(hdr, flux.size)
    ivar = mask = None
    for hdu in hdul:
        if hdu is spec or not isinstance(hdu, (fits.PrimaryHDU, fits.ImageHDU)) or hdu.data is None:
            continue
        arr = np.squeeze(np.asarray(hdu.data))
        if arr.shape != flux.shape:
            continue
        name = hdu.name.upper()
        if "IVAR" in name or "INVVAR" in name or "INV_VAR" in name or name == "WEIGHT":
            ivar = arr.astype(np.float64)
        elif "VAR" in name:
            v = arr.astype(np.float64)
            ivar = np.where(v > 0, 1.0 / np.where(v > 0, v, 1.0), 0.0)
        elif any(s in name for s in ("ERR", "SIG", "UNC", "NOISE", "STD")):
            e = arr.astype(np.float64)
            ivar = np.where(e > 0, 1.0 / np.where(e > 0, e, 1.0) ** 2, 0.0)
        elif "MASK" in name or "BADPIX" in name or "DQ" == name:
            mask = arr
    meta = _base_meta(path, "wcs1d")
    oid = _str(_first(allhdr, ("objid", "obj_id", "object", "objname")))
    if oid:
        meta["obj_id"] = oid
    ra = _first(allhdr, ("ra", "ra_obj", "objra", "plug_ra"))
    dec = _first(allhdr, ("dec", "dec_obj", "objdec", "plug_dec"))
    meta["ra"] = _coord(ra, hours=True)  # numbers are degrees; sexagesimal strings hours
    meta["dec"] = _coord(dec, hours=False)
    meta["z"] = _float(_first(allhdr, Z_NAMES))
    meta["log_wavelength"] = is_log
    med = medium_from(hdr) or medium_from(prim) or medium or "vacuum"
    yield finalise(wave, flux, ivar, mask, meta, medium=med)
