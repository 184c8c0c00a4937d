"""FITS files: format sniffing, a safe opener (layout checked before astropy reads it,
bounded gunzip) and detection of the survey layout."""

from __future__ import annotations

import gzip
import io
import warnings
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from chemlatent.errors import FormatError
from chemlatent.io.readers.base import (
    _HDF5_MAGIC,
    _one_line,
)

# --------------------------------------------------------------------------- file sniffing


def sniff(path: Path) -> str:
    """'fits', 'hdf5' or 'parquet' from the file's first bytes (gzip-compressed FITS too)."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise FormatError(f"cannot read file ({exc.strerror or exc})") from None
    if size == 0:
        raise FormatError("file is empty")
    with open(path, "rb") as fh:
        head = fh.read(8)
    if head.startswith(_HDF5_MAGIC):
        return "hdf5"
    if head.startswith(b"PAR1"):
        return "parquet"
    if head.startswith(b"SIMPLE"):
        return "fits"
    if head.startswith(b"\x1f\x8b"):
        try:
            with gzip.open(path, "rb") as fh:
                inner = fh.read(6)
        except (OSError, EOFError, zlib.error):
            raise FormatError("corrupt gzip file") from None
        if inner.startswith(b"SIMPLE"):
            return "fits"
        raise FormatError("gzip file does not contain FITS")
    raise FormatError("not a FITS, HDF5 or Parquet file (unrecognised content)")


#: Largest FITS data a gzip file may expand to, and most HDUs a FITS file may hold.
MAX_GZIP_BYTES = 1 << 30
MAX_HDUS = 1000
#: Largest single array read whole from an HDF5 file (larger ones are read in row blocks).
MAX_ARRAY_BYTES = 1 << 30
_BITPIX = frozenset({8, 16, 32, 64, -32, -64})


def _card_int(card: bytes | None) -> int | None:
    """The integer value of a header card (None when missing or not an integer)."""
    if card is None:
        return None
    text = card[10:80].split(b"/")[0].strip().replace(b"D", b"E")
    try:
        value = float(text)
    except ValueError:
        return None
    return int(value) if np.isfinite(value) and value == int(value) else None


def check_fits_layout(fh: Any, size: int) -> None:
    """Walk a FITS file's headers and check that the data they declare can be there.

    Reads only the header blocks. Raises FormatError on a missing END card, an invalid
    BITPIX/NAXIS/NAXISn/PCOUNT/GCOUNT, or data running past the end of the file, before
    astropy can loop over absurd axis counts or allocate what a damaged header claims.
    """
    pos = 0
    hdu = 0
    while pos < size:
        if hdu >= MAX_HDUS:
            raise FormatError(f"file is corrupt (more than {MAX_HDUS} HDUs)")
        fh.seek(pos)
        cards: dict[bytes, bytes] = {}
        blocks = 0
        end = False
        while not end:
            block = fh.read(2880)
            if len(block) < 2880:
                if hdu and not blocks:
                    return  # a few stray bytes after the last HDU: astropy ignores them
                raise FormatError(f"file is truncated (header of HDU {hdu} ends early)")
            blocks += 1
            if hdu and blocks == 1 and not block.startswith(b"XTENSION"):
                return  # padding or junk after the last HDU: left to astropy
            if blocks > 1000:
                raise FormatError(f"file is corrupt (header of HDU {hdu} has no END card)")
            for i in range(0, 2880, 80):
                card = block[i:i + 80]
                key = card[:8].rstrip()
                if key == b"END":
                    end = True
                    break
                if card[8:10] == b"= ":
                    cards.setdefault(key, card)
        bitpix = _card_int(cards.get(b"BITPIX"))
        naxis = _card_int(cards.get(b"NAXIS"))
        where = f"HDU {hdu}"
        if b"TFIELDS" in cards:
            tfields = _card_int(cards[b"TFIELDS"])
            if tfields is None or not 0 <= tfields <= 999:
                raise FormatError(f"file is corrupt ({where}: TFIELDS is not a number from 0 to 999)")
        if bitpix not in _BITPIX:
            raise FormatError(f"file is corrupt ({where}: BITPIX is not a FITS value)")
        if naxis is None or not 0 <= naxis <= 999:
            raise FormatError(f"file is corrupt ({where}: NAXIS is not a number from 0 to 999)")
        dims = []
        for k in range(1, naxis + 1):
            v = _card_int(cards.get(b"NAXIS%d" % k))
            if v is None or v < 0:
                raise FormatError(f"file is corrupt ({where}: NAXIS{k} missing or negative)")
            dims.append(v)
        pcount = _card_int(cards.get(b"PCOUNT")) if b"PCOUNT" in cards else 0
        gcount = _card_int(cards.get(b"GCOUNT")) if b"GCOUNT" in cards else 1
        if pcount is None or pcount < 0 or gcount is None or gcount < 0:
            raise FormatError(f"file is corrupt ({where}: PCOUNT/GCOUNT invalid)")
        groups = cards.get(b"GROUPS", b"")[10:30].strip() == b"T"
        if naxis == 0:
            npix = 0
        elif groups and dims[0] == 0:
            npix = int(np.prod(dims[1:], dtype=object))
        else:
            npix = int(np.prod(dims, dtype=object))
        nbytes = abs(bitpix) // 8 * gcount * (pcount + npix) if naxis else 0
        start = pos + blocks * 2880
        if start + nbytes > size:
            raise FormatError(f"file is truncated ({where} declares {nbytes:.4g} data bytes, "
                              f"{max(size - start, 0)} are there)")
        pos = start + -(-nbytes // 2880) * 2880
        hdu += 1


def _gunzip(path: Path) -> bytes:
    """A gzip file's content, refusing more than MAX_GZIP_BYTES (a damaged or hostile file)."""
    try:
        with gzip.open(path, "rb") as fh:
            data = fh.read(MAX_GZIP_BYTES + 1)
    except EOFError:
        raise FormatError("file is truncated (gzip stream ends early)") from None
    except (OSError, zlib.error):
        raise FormatError("corrupt gzip file") from None
    if len(data) > MAX_GZIP_BYTES:
        raise FormatError(f"gzip file expands to more than {MAX_GZIP_BYTES >> 20} MiB; "
                          "decompress it first")
    return data


def open_fits(path: Path):
    """Open a FITS file eagerly (all headers and data read), turning damage into FormatError."""
    from astropy.io import fits

    with open(path, "rb") as fh:
        gz = fh.read(2) == b"\x1f\x8b"
    if gz:
        source: Any = io.BytesIO(_gunzip(path))
        check_fits_layout(source, len(source.getbuffer()))
        source.seek(0)
    else:
        # our own handle: astropy leaves the files it opened itself open when it fails
        source = open(path, "rb")  # noqa: SIM115 (closed by hdul.close() or below)
        try:
            check_fits_layout(source, path.stat().st_size)
        except BaseException:
            source.close()
            raise
        source.seek(0)
    hdul = None
    error: str | None = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            # memory-mapped when uncompressed: large tables are read row by row
            hdul = fits.open(source, memmap=not gz, lazy_load_hdus=False)
            for hdu in hdul:
                _ = hdu.data
        except Exception as exc:
            # keep only the text: the exception's frames hold astropy's memory map (and so a
            # file descriptor) until they are freed
            error = f"{type(exc).__name__}: {_one_line(exc, 80)}"
    messages = " ".join(str(w.message).lower() for w in caught)
    caught.clear()
    if error is not None or "truncat" in messages or "corrupt" in messages:
        if hdul is not None:
            hdul.close()
        source.close()
        if "truncat" in messages:
            raise FormatError("file is truncated")
        if error is not None:
            raise FormatError(f"file is truncated or corrupt ({error})")
        raise FormatError("file is truncated or corrupt (invalid FITS header)")
    return hdul


def detect_fits(hdul) -> str:
    """Which FITS layout a file holds: 'sdss', 'lamost', 'wcs1d' or 'table'."""
    from astropy.io import fits

    prim = hdul[0].header
    tags = " ".join(str(prim.get(k, "")) for k in ("TELESCOP", "AUTHOR", "DATA_V", "ORIGIN"))
    if "LAMOST" in tags.upper():
        return "lamost"
    sdss_hdr = any(k in prim for k in ("PLATEID", "PLUG_RA")) or "SDSS" in tags.upper()
    for hdu in hdul[1:]:
        if isinstance(hdu, fits.BinTableHDU) and hdu.columns is not None:
            names = {n.lower() for n in hdu.columns.names}
            if {"loglam", "flux"} <= names and (
                "and_mask" in names or sdss_hdr or hdu.name.upper() == "COADD"
            ):
                return "sdss"
            if {"wavelength", "flux", "ivar", "andmask"} <= names:
                return "lamost"
    data = hdul[0].data
    if data is not None and data.ndim == 2 and 3 <= data.shape[0] <= 5 and "COEFF0" in prim:
        row = np.asarray(data[2], dtype=np.float64)  # LAMOST keeps wavelengths in row 2
        if np.all(np.diff(row) > 0) and 1000 < row[0] < row[-1] < 30000:
            return "lamost"
    for hdu in hdul:
        if isinstance(hdu, (fits.PrimaryHDU, fits.ImageHDU)) and hdu.data is not None:
            if np.squeeze(hdu.data).ndim == 1:
                return "wcs1d"
            break
    for hdu in hdul[1:]:
        if isinstance(hdu, (fits.BinTableHDU, fits.TableHDU)):
            return "table"
    raise FormatError("unknown layout: no SDSS, LAMOST, 1-D WCS image or wavelength/flux "
                      "table found")
