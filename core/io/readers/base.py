"""What every reader shares: :class:`RawSpectrum`, metadata helpers, units and
:func:`finalise` (vacuum, increasing wavelength, bad pixels at ivar 0)."""

from __future__ import annotations

from collections.abc import Mapping
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
