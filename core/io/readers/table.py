"""Tables of spectra: FITS binary tables, HDF5 and Parquet (one spectrum per row, or
one spectrum as the columns of a long table)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from chemlatent.errors import FormatError
from chemlatent.io.readers.base import (
    DEC_NAMES,
    ERR_NAMES,
    FLUX_NAMES,
    ID_NAMES,
    IVAR_NAMES,
    LOG_WAVE_NAMES,
    MASK_NAMES,
    RA_NAMES,
    TABLE_BATCH,
    VAR_NAMES,
    WAVE_NAMES,
    Z_NAMES,
    RawSpectrum,
    _base_meta,
    _coord,
    _first,
    _float,
    _lower_map,
    _one_line,
    _stem,
    _str,
    _unit_scale,
    finalise,
    medium_from,
)
from chemlatent.io.readers.fits import (
    MAX_ARRAY_BYTES,
)

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
