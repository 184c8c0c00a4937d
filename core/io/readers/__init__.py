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

import gzip
import io
import re
import warnings
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from chemlatent.errors import FormatError
from chemlatent.spectra.physics import air_to_vacuum

FORMATS = ("sdss", "lamost", "wcs1d", "table")
MEDIA = ("vacuum", "air")

WAVE_NAMES = ("wave", "wavelength", "wavelengths", "lambda", "lam", "wave_vac", "wave_air",
              "loglam", "log_wave", "logwave", "log_lambda", "log10_wave")
LOG_WAVE_NAMES = frozenset({"loglam", "log_wave", "logwave", "log_lambda", "log10_wave"})
FLUX_NAMES = ("flux", "fluxes", "flam", "f_lambda", "spectrum", "spec")
IVAR_NAMES = ("ivar", "inverse_variance", "invvar", "inv_var", "flux_ivar", "ivar_flux")
ERR_NAMES = ("error", "err", "sigma", "flux_err", "flux_error", "error_flux", "uncertainty",
             "e_flux", "noise", "stddev", "std")
VAR_NAMES = ("var", "variance", "flux_var")
MASK_NAMES = ("and_mask", "andmask", "mask", "pixel_mask", "pixmask", "badpix", "bad")
ID_NAMES = ("obj_id", "objid", "object_id", "objname", "object", "id", "name", "designation",
            "desig", "specobjid", "obsid", "source_id")
RA_NAMES = ("ra", "plug_ra", "ra_obj", "objra", "radeg")
DEC_NAMES = ("dec", "plug_dec", "dec_obj", "objdec", "decdeg", "dedeg")
Z_NAMES = ("z", "redshift")

#: Rows read at a time from multi-spectrum tables (bounded memory).
TABLE_BATCH = 256

_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


@dataclass
class RawSpectrum:
    """One spectrum as read from a file, before resampling.

    ``wave`` is in Angstrom, in vacuum, strictly increasing (float64). ``ivar`` is 0 on
    every pixel flagged in ``mask`` (True = bad: survey and-mask, non-finite flux, padding).
    ``meta`` holds at least ``format``, ``source_file``, ``source_row``, ``obj_id``, ``ra``,
    ``dec`` and ``ivar_estimated``, plus header values such as ``class`` or ``z``.
    """

    wave: np.ndarray
    flux: np.ndarray
    ivar: np.ndarray
    mask: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def npix(self) -> int:
        return int(self.wave.size)


# --------------------------------------------------------------------------- helpers


def der_snr_noise(flux: np.ndarray) -> float:
    """Per-pixel noise from the flux's high-pass scatter (DER_SNR, Stoehr et al. 2008).

    ``1.482602 / sqrt(6) * median(|2 f_i - f_{i-2} - f_{i+2}|)`` over finite pixels; robust to
    absorption lines and a smooth continuum. Returns NaN if there are too few pixels.
    """
    f = np.asarray(flux, dtype=np.float64)
    f = f[np.isfinite(f)]
    if f.size < 5:
        return float("nan")
    d = np.abs(2.0 * f[2:-2] - f[:-4] - f[4:])
    return float(1.482602 / np.sqrt(6.0) * np.median(d))


def _one_line(text: str, limit: int = 200) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _lower_map(mapping: Mapping | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if mapping is None:
        return out
    for key in mapping.keys():
        k = key.decode() if isinstance(key, bytes) else str(key)
        try:
            v = mapping[key]
        except Exception:  # a header card astropy cannot parse
            continue
        if isinstance(v, bytes):
            v = v.decode(errors="replace")
        out.setdefault(k.lower(), v)
    return out


def medium_from(meta: Mapping[str, Any]) -> str | None:
    """'air', 'vacuum' or None from header-like keys (lower-case mapping).

    Looks at AIRORVAC / MEDIUM / WAVE_MEDIUM ('air' or 'vac...'), VACUUM (T/F) and CTYPE1
    ('AWAV' is air, 'WAVE' vacuum, as in FITS WCS paper III).
    """
    for key in ("airorvac", "medium", "wave_medium", "wavemedium", "wave_frame"):
        v = meta.get(key)
        if isinstance(v, str):
            s = v.strip().lower()
            if s.startswith("air"):
                return "air"
            if s.startswith("vac"):
                return "vacuum"
    v = meta.get("vacuum")
    if isinstance(v, (bool, np.bool_)):
        return "vacuum" if v else "air"
    if isinstance(v, str) and v.strip().upper() in ("T", "TRUE", "F", "FALSE"):
        return "vacuum" if v.strip().upper() in ("T", "TRUE") else "air"
    ctype = meta.get("ctype1")
    if isinstance(ctype, str):
        c = ctype.strip().upper()
        if c.startswith("AWAV"):
            return "air"
        if c.startswith("WAVE") or c.startswith("VWAV"):
            return "vacuum"
    return None


def _float(v: Any) -> float:
    """A header value as float, NaN when missing or not numeric."""
    if v is None or isinstance(v, bool):
        return float("nan")
    try:
        out = float(v)
    except (TypeError, ValueError):
        return float("nan")
    return out if np.isfinite(out) else float("nan")


def _int(v: Any) -> int | None:
    f = _float(v)
    return int(f) if np.isfinite(f) and f == int(f) else None


def _str(v: Any) -> str | None:
    if v is None:
        return None
    if isinstance(v, bytes):
        v = v.decode(errors="replace")
    if isinstance(v, (float, np.floating)) and not np.isfinite(v):
        return None
    if isinstance(v, (np.integer, int)) and not isinstance(v, bool):
        return str(int(v))
    s = str(v).strip()
    return s or None


def _coord(v: Any, hours: bool) -> float:
    """RA/Dec in degrees from a number or a sexagesimal string; NaN if unknown."""
    f = _float(v)
    if np.isfinite(f):
        return f
    if isinstance(v, str) and v.strip():
        try:
            import astropy.units as u
            from astropy.coordinates import Angle

            return float(Angle(v.strip(), unit=u.hourangle if hours else u.deg).deg)
        except Exception:
            return float("nan")
    return float("nan")


def _first(meta: Mapping[str, Any], names: tuple[str, ...]) -> Any:
    for n in names:
        v = meta.get(n)
        if v is not None and not (isinstance(v, str) and not v.strip()):
            return v
    return None


def _unit_scale(unit: Any) -> tuple[float, bool]:
    """(factor to Angstrom, is_log10) for a wavelength unit string; unknown means Angstrom."""
    if unit is None:
        return 1.0, False
    s = str(unit).strip()
    if not s:
        return 1.0, False
    low = s.lower()
    if "log" in low or "dex" in low:
        return 1.0, True
    if low in ("a", "aa", "ang", "angstrom", "angstroms", "0.1 nm"):
        return 1.0, False
    try:
        import astropy.units as u

        return float(u.Unit(s, parse_strict="silent").to(u.AA)), False
    except Exception:
        return 1.0, False


def finalise(wave: Any, flux: Any, ivar: Any | None, mask: Any | None, meta: dict[str, Any],
             *, medium: str = "vacuum") -> RawSpectrum:
    """Validate arrays and build a RawSpectrum (vacuum, increasing wavelengths).

    ``ivar`` None means "unknown": a constant ivar is estimated from the flux's high-pass
    scatter (:func:`der_snr_noise`) and ``meta['ivar_estimated']`` is set. Leading and
    trailing runs of exactly-zero flux are padding (LAMOST pads its red end) and get ivar 0.
    """
    wave = np.asarray(wave, dtype=np.float64)
    flux = np.asarray(flux, dtype=np.float64)
    if wave.ndim != 1 or flux.ndim != 1:
        raise FormatError(f"wrong shape: wavelength {wave.shape} and flux {flux.shape} "
                          "must both be 1-D")
    if flux.size != wave.size:
        raise FormatError(f"wrong shape: flux has {flux.size} pixels but wavelength has "
                          f"{wave.size}")
    if flux.size < 5:
        raise FormatError(f"wrong shape: only {flux.size} pixels")
    if not np.isfinite(wave).all():
        raise FormatError(f"wavelength has {int((~np.isfinite(wave)).sum())} non-finite values")
    if not np.isfinite(flux).any():
        raise FormatError("flux is all NaN")
    bad = np.zeros(flux.size, dtype=bool)
    if mask is not None:
        m = np.asarray(mask)
        if m.shape != flux.shape:
            raise FormatError(f"wrong shape: mask has {m.size} pixels but flux has {flux.size}")
        bad |= m.astype(bool) if m.dtype == bool else (np.nan_to_num(m.astype(np.float64)) != 0)
    meta = dict(meta)
    if ivar is None:
        noise = der_snr_noise(flux[~bad])
        good = flux[np.isfinite(flux) & ~bad]
        floor = 1e-4 * float(np.median(np.abs(good))) if good.size else 0.0
        noise = max(noise, floor) if np.isfinite(noise) else noise
        if not (np.isfinite(noise) and noise > 0):
            raise FormatError("cannot estimate the noise: flux has no usable scatter")
        ivar = np.full(flux.size, 1.0 / noise**2)
        meta["ivar_estimated"] = True
    else:
        ivar = np.asarray(ivar, dtype=np.float64)
        if ivar.shape != flux.shape:
            raise FormatError(f"wrong shape: ivar has {ivar.size} pixels but flux has {flux.size}")
        ivar = np.where(np.isfinite(ivar) & (ivar > 0), ivar, 0.0)
        meta.setdefault("ivar_estimated", False)
    bad |= ~np.isfinite(flux)
    # exactly-zero padding at either end
    nz = np.flatnonzero(flux != 0.0)
    if nz.size:
        bad[: nz[0]] = True
        bad[nz[-1] + 1:] = True
    ivar = np.where(bad, 0.0, ivar)
    flux = np.where(np.isfinite(flux), flux, 0.0)
    d = np.diff(wave)
    if not (d > 0).all():
        if (d < 0).all():
            wave, flux, ivar, bad = wave[::-1], flux[::-1], ivar[::-1], bad[::-1]
        else:
            raise FormatError("wavelengths are not monotonic")
    if wave[0] <= 0:
        raise FormatError(f"wavelengths are not positive (first is {wave[0]:g})")
    if not (ivar > 0).any():
        raise FormatError("no usable pixels (all masked or ivar 0)")
    if medium == "air":
        wave = air_to_vacuum(wave)
    meta["medium"] = medium
    return RawSpectrum(wave, flux, ivar, bad, meta)


def _base_meta(path: Path, fmt: str, row: int = 0) -> dict[str, Any]:
    return {"format": fmt, "source_file": path.name, "source_row": row,
            "obj_id": _stem(path), "ra": float("nan"), "dec": float("nan")}


def _stem(path: Path) -> str:
    name = path.name
    for ext in (".gz", ".bz2", ".fits", ".fit", ".fts", ".h5", ".hdf5", ".parquet"):
        if name.lower().endswith(ext):
            name = name[: -len(ext)]
    return name


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


# --------------------------------------------------------------------------- tables


def _roles(names: list[str]) -> dict[str, str | None]:
    """Map roles (wave, flux, ivar, err, var, mask, id, ra, dec, z) to column names."""
    low = {n.lower(): n for n in names}

    def pick(cands: tuple[str, ...]) -> str | None:
        for c in cands:
            if c in low:
                return low[c]
        return None

    return {"wave": pick(WAVE_NAMES), "flux": pick(FLUX_NAMES), "ivar": pick(IVAR_NAMES),
            "err": pick(ERR_NAMES), "var": pick(VAR_NAMES), "mask": pick(MASK_NAMES),
            "id": pick(ID_NAMES), "ra": pick(RA_NAMES), "dec": pick(DEC_NAMES),
            "z": pick(Z_NAMES)}


_PIXEL_ROLES = ("wave", "flux", "ivar", "err", "var", "mask")
_SCALAR_ROLES = ("id", "ra", "dec", "z")


def _no_columns_error(names: list[str]) -> FormatError:
    shown = ", ".join(names[:8]) + (", ..." if len(names) > 8 else "")
    return FormatError(f"unknown layout: no wavelength and flux columns (have {shown or 'none'}; "
                       "expected wave/wavelength/lambda/loglam and flux)")


def _table_spectrum(rec: dict[str, Any], roles: dict[str, str | None], units: dict[str, Any],
                    filemeta: dict[str, Any], path: Path, row: int, multi: bool,
                    medium: str | None) -> RawSpectrum:
    """Build one RawSpectrum from a record of role -> column value."""
    meta = _base_meta(path, "table", row)
    meta["multi"] = multi
    if multi:
        meta["obj_id"] = f"{_stem(path)}:{row}"
    wave = np.asarray(rec["wave"], dtype=np.float64).ravel()
    flux = np.asarray(rec["flux"], dtype=np.float64).ravel()
    wname = (roles["wave"] or "").lower()
    scale, is_log = _unit_scale(units.get("wave"))
    finite = wave[np.isfinite(wave)]
    if wname in LOG_WAVE_NAMES or is_log or (finite.size and 2.5 < finite.min()
                                              and finite.max() < 5.5):
        wave = 10.0 ** wave
    else:
        wave = wave * scale
    ivar = None
    if rec.get("ivar") is not None:
        ivar = np.asarray(rec["ivar"], dtype=np.float64).ravel()
    elif rec.get("err") is not None:
        e = np.asarray(rec["err"], dtype=np.float64).ravel()
        ivar = np.where(e > 0, 1.0 / np.where(e > 0, e, 1.0) ** 2, 0.0)
    elif rec.get("var") is not None:
        v = np.asarray(rec["var"], dtype=np.float64).ravel()
        ivar = np.where(v > 0, 1.0 / np.where(v > 0, v, 1.0), 0.0)
    mask = None if rec.get("mask") is None else np.asarray(rec["mask"]).ravel()
    oid = _str(rec.get("id"))
    if oid:
        meta["obj_id"] = oid
    for role in ("ra", "dec"):
        v = rec.get(role)
        if v is not None:
            meta[role] = _coord(_str(v) if isinstance(v, bytes) else v, hours=role == "ra")
    if rec.get("z") is not None:
        meta["z"] = _float(rec["z"])
    if not multi:
        oid = _str(_first(filemeta, ("obj_id", "objid", "object", "objname", "id")))
        if oid and not _str(rec.get("id")):
            meta["obj_id"] = oid
        for role, keys in (("ra", RA_NAMES), ("dec", DEC_NAMES)):
            if not np.isfinite(meta[role]):
                meta[role] = _coord(_first(filemeta, keys), hours=role == "ra")
    med = medium_from(filemeta) or medium or "vacuum"
    if wname.endswith("_air"):
        med = "air"
    elif wname.endswith("_vac"):
        med = "vacuum"
    return finalise(wave, flux, ivar, mask, meta, medium=med)


def _scalar(v: Any) -> Any:
    if isinstance(v, np.ndarray) and v.ndim == 0:
        return v.item()
    return v


def _records_fits_table(hdul) -> tuple[dict, dict, dict, bool, Iterator[dict]]:
    from astropy.io import fits

    chosen = None
    allnames: list[str] = []
    for hdu in hdul[1:]:
        if isinstance(hdu, (fits.BinTableHDU, fits.TableHDU)) and hdu.columns is not None:
            names = list(hdu.columns.names)
            allnames += names
            roles = _roles(names)
            if roles["wave"] and roles["flux"]:
                chosen = (hdu, roles)
                break
    if chosen is None:
        raise _no_columns_error(allnames)
    hdu, roles = chosen
    data = hdu.data
    if data is None or len(data) == 0:
        raise FormatError("table has no rows")
    units = {r: hdu.columns[n].unit for r, n in roles.items() if n}
    filemeta = {**_lower_map(hdul[0].header), **_lower_map(hdu.header)}
    fcol = data[roles["flux"]]
    multi = fcol.dtype == object or np.ndim(fcol) == 2
    if multi:
        wcol = data[roles["wave"]]
        if not (wcol.dtype == object or np.ndim(wcol) == 2):
            raise FormatError("wrong shape: flux holds one array per row but wavelength is a "
                              "scalar column")

        def gen() -> Iterator[dict]:
            for i in range(len(data)):
                yield {r: _scalar(data[n][i]) for r, n in roles.items() if n}
        return roles, units, filemeta, True, gen()
    rec = {r: np.asarray(data[n]) for r, n in roles.items() if n and r in _PIXEL_ROLES}
    return roles, units, filemeta, False, iter([rec])


def _bounded(ds: Any, rows: int | None = None) -> Any:
    """``ds`` when reading it whole (or ``rows`` rows of it) stays under MAX_ARRAY_BYTES."""
    shape = tuple(int(n) for n in ds.shape)
    n = int(np.prod(shape if rows is None else (min(rows, shape[0]),) + shape[1:], dtype=object))
    nbytes = n * int(ds.dtype.itemsize)
    if nbytes > MAX_ARRAY_BYTES:
        raise FormatError(f"dataset {ds.name} declares shape {shape} ({nbytes:,} bytes "
                          f"{'per block' if rows else 'in all'}): damaged, or too large to read")
    return ds


def _records_hdf5(path: Path) -> tuple[dict, dict, dict, bool, Iterator[dict]]:
    import h5py

    try:
        fh = h5py.File(path, "r")
    except Exception as exc:
        raise FormatError(f"file is truncated or corrupt ({type(exc).__name__}: "
                          f"{_one_line(exc, 80)})") from None
    try:
        groups: list = [fh]
        found = None
        allnames: list[str] = []
        while groups and found is None:
            g = groups.pop(0)
            dsets = {k: v for k, v in g.items() if isinstance(v, h5py.Dataset)}
            allnames += list(dsets)
            roles = _roles(list(dsets))
            if roles["wave"] and roles["flux"]:
                found = ("group", g, roles, dsets)
                break
            for ds in dsets.values():
                if ds.dtype.names:
                    r = _roles(list(ds.dtype.names))
                    if r["wave"] and r["flux"]:
                        found = ("compound", g, r, ds)
                        break
            groups += [v for v in g.values() if isinstance(v, h5py.Group)]
        if found is None:
            raise _no_columns_error(allnames)
        kind, g, roles, obj = found
        filemeta = {**_lower_map(fh.attrs), **_lower_map(g.attrs)}
        if kind == "compound":
            filemeta.update(_lower_map(obj.attrs))
            units = {"wave": obj.attrs.get("wave_unit") or obj.attrs.get("unit")}
            if obj.ndim != 1:
                raise FormatError(f"wrong shape: table dataset has shape {obj.shape}")
            if not obj.dtype[roles["flux"]].shape:  # one spectrum as scalar columns
                arr = _bounded(obj)[()]
                fh.close()
                return roles, units, filemeta, False, iter([
                    {r: arr[n] for r, n in roles.items() if n and r in _PIXEL_ROLES}])

            def gen_compound() -> Iterator[dict]:
                try:
                    for s in range(0, obj.shape[0], TABLE_BATCH):
                        block = _bounded(obj, TABLE_BATCH)[s:s + TABLE_BATCH]
                        for row in block:
                            yield {r: _scalar(row[n]) for r, n in roles.items() if n}
                finally:
                    fh.close()
            return roles, units, filemeta, True, gen_compound()
        ds = obj
        wds = ds[roles["wave"]]
        units = {"wave": wds.attrs.get("unit") or wds.attrs.get("units")}
        filemeta.update(_lower_map(wds.attrs))
        flux = ds[roles["flux"]]
        if flux.ndim == 1:
            rec = {r: np.asarray(_bounded(ds[n])[()]) for r, n in roles.items()
                   if n and r in _PIXEL_ROLES}
            fh.close()
            return roles, units, filemeta, False, iter([rec])
        if flux.ndim != 2:
            raise FormatError(f"wrong shape: flux dataset has shape {flux.shape}")
        n, npix = flux.shape
        for r in _PIXEL_ROLES:
            name = roles[r]
            if name and r != "wave" and ds[name].shape != flux.shape:
                raise FormatError(f"wrong shape: {name} has shape {ds[name].shape} but flux has "
                                  f"{flux.shape}")
        if wds.ndim == 1 and wds.shape[0] != npix:
            raise FormatError(f"wrong shape: flux has {npix} pixels per spectrum but wavelength "
                              f"has {wds.shape[0]}")
        if wds.ndim == 2 and wds.shape != flux.shape:
            raise FormatError(f"wrong shape: wavelength has shape {wds.shape} but flux has "
                              f"{flux.shape}")
        shared = np.asarray(_bounded(wds)[()]) if wds.ndim == 1 else None

        def gen() -> Iterator[dict]:
            try:
                for s in range(0, n, TABLE_BATCH):
                    e = min(s + TABLE_BATCH, n)
                    block = {}
                    for r, name in roles.items():
                        if not name or (r == "wave" and shared is not None):
                            continue
                        d = ds[name]
                        if r in _SCALAR_ROLES and (d.ndim != 1 or d.shape[0] != n):
                            continue
                        block[r] = _bounded(d, TABLE_BATCH)[s:e]
                    for i in range(e - s):
                        rec = {r: _scalar(v[i]) for r, v in block.items()}
                        if shared is not None:
                            rec["wave"] = shared
                        yield rec
            finally:
                fh.close()
        return roles, units, filemeta, True, gen()
    except BaseException:
        fh.close()
        raise


def _records_parquet(path: Path) -> tuple[dict, dict, dict, bool, Iterator[dict]]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
        schema = pf.schema_arrow
    except Exception as exc:
        raise FormatError(f"file is truncated or corrupt ({type(exc).__name__}: "
                          f"{_one_line(exc, 80)})") from None
    try:
        return _parquet_records(pf, schema)
    except BaseException:
        pf.close()
        raise


def _parquet_records(pf: Any, schema: Any) -> tuple[dict, dict, dict, bool, Iterator[dict]]:
    """The records of an open ParquetFile; closes it once they are read (or on error)."""
    import pyarrow as pa

    names = list(schema.names)
    roles = _roles(names)
    if not (roles["wave"] and roles["flux"]):
        raise _no_columns_error(names)
    if pf.metadata.num_rows == 0:
        raise FormatError("table has no rows")
    filemeta = {k: v for k, v in _lower_map(schema.metadata).items() if k != "pandas"}
    units: dict[str, Any] = {}
    wfield = schema.field(roles["wave"])
    if wfield.metadata:
        wm = _lower_map(wfield.metadata)
        units["wave"] = wm.get("unit") or wm.get("units")
    ftype = schema.field(roles["flux"]).type
    multi = (pa.types.is_list(ftype) or pa.types.is_large_list(ftype)
             or pa.types.is_fixed_size_list(ftype))
    used = [n for n in roles.values() if n]
    used = list(dict.fromkeys(used))
    if multi:
        def gen() -> Iterator[dict]:
            try:
                for batch in pf.iter_batches(batch_size=TABLE_BATCH, columns=used):
                    cols = {r: batch.column(n) for r, n in roles.items() if n}
                    for i in range(batch.num_rows):
                        rec = {}
                        for r, c in cols.items():
                            v = c[i]
                            if r in _PIXEL_ROLES and hasattr(v, "values"):
                                vals = v.values
                                rec[r] = (None if vals is None
                                          else np.asarray(vals.to_numpy(zero_copy_only=False)))
                            else:
                                rec[r] = v.as_py()
                        yield rec
            finally:
                pf.close()
        return roles, units, filemeta, True, gen()
    try:
        table = pf.read(columns=used)
    except Exception as exc:
        raise FormatError(f"file is truncated or corrupt ({type(exc).__name__}: "
                          f"{_one_line(exc, 80)})") from None
    pf.close()
    rec = {r: table.column(n).to_numpy() for r, n in roles.items() if n and r in _PIXEL_ROLES}
    return roles, units, filemeta, False, iter([rec])


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
