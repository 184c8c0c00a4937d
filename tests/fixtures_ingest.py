"""Small spectrum files of every supported layout, built in a temporary directory.

Every builder renders the same kind of star: a smooth continuum times Gaussian absorption
lines at known vacuum wavelengths, with constant Gaussian noise ``sigma`` (ivar 1/sigma^2)
from a fixed seed, so tests know where lines must land and what ivar to expect.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from astropy.io import fits

LINE = 5000.0  # vacuum Angstrom of the injected absorption line
LINE_DEPTH = 0.6
LINE_SIGMA = 1.5  # Angstrom
SIGMA = 1.0  # flux noise (continuum ~100, so S/N ~ 100)


def vacuum_to_air(wave: np.ndarray) -> np.ndarray:
    """Inverse of the IAU air->vacuum formula (fixed-point iteration), Angstrom."""
    from chemlatent.io.readers import air_to_vacuum

    wave = np.asarray(wave, dtype=np.float64)
    air = wave / 1.00028
    for _ in range(6):
        air = air * wave / air_to_vacuum(air)
    return air


def continuum(wave: np.ndarray) -> np.ndarray:
    """A smooth, positive pseudo-continuum (~60-140)."""
    return 100.0 * (1.0 + 0.3 * np.sin(wave / 900.0)) * (wave / 6000.0) ** -0.5


def model_flux(wave_vac: np.ndarray, lines: tuple[float, ...] = (LINE,)) -> np.ndarray:
    """Noise-free flux at vacuum wavelengths."""
    prof = np.ones_like(wave_vac)
    for c in lines:
        prof *= 1.0 - LINE_DEPTH * np.exp(-0.5 * ((wave_vac - c) / LINE_SIGMA) ** 2)
    return continuum(wave_vac) * prof


def noisy(wave_vac: np.ndarray, sigma: float = SIGMA, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return model_flux(wave_vac) + sigma * rng.standard_normal(wave_vac.size)


def loglin(loglam0: float, npix: int, dloglam: float = 1e-4) -> np.ndarray:
    return 10.0 ** (loglam0 + dloglam * np.arange(npix))


# --------------------------------------------------------------------------- SDSS


def make_sdss(path: Path, *, loglam0: float = 3.5800, npix: int = 4100, sigma: float = SIGMA,
              plate: int = 1234, mjd: int = 55555, fiber: int = 42, ra: float = 150.25,
              dec: float = 2.5, z: float = 1e-4, masked: tuple[float, float] | None = (6000, 6010),
              upper: bool = False, flux: np.ndarray | None = None, seed: int = 1) -> Path:
    """``spec-PLATE-MJD-FIBER.fits``: COADD table (loglam, flux, ivar, and_mask) + SPALL."""
    loglam = loglam0 + 1e-4 * np.arange(npix)
    wave = 10.0**loglam
    f = noisy(wave, sigma, seed) if flux is None else flux
    and_mask = np.zeros(npix, np.int32)
    if masked is not None:
        and_mask[(wave >= masked[0]) & (wave <= masked[1])] = 1 << 23
        f = np.where(and_mask > 0, 1e4, f)  # garbage under the mask must not leak through
    ivar = np.full(npix, 1.0 / sigma**2, np.float32)

    def name(s: str) -> str:
        return s.upper() if upper else s

    cols = [fits.Column(name=name("flux"), format="E", array=f.astype(np.float32)),
            fits.Column(name=name("loglam"), format="E", array=loglam.astype(np.float32)),
            fits.Column(name=name("ivar"), format="E", array=ivar),
            fits.Column(name=name("and_mask"), format="J", array=and_mask),
            fits.Column(name=name("or_mask"), format="J", array=and_mask)]
    prim = fits.PrimaryHDU()
    h = prim.header
    h["TELESCOP"] = "SDSS 2.5-M"
    h["PLATEID"], h["MJD"], h["FIBERID"] = plate, mjd, fiber
    h["PLUG_RA"], h["PLUG_DEC"] = ra, dec
    h["RA"], h["DEC"] = ra + 1.0, dec + 1.0  # plate centre, must not be used
    h["VACUUM"] = True
    coadd = fits.BinTableHDU.from_columns(cols, name="COADD")
    spall = fits.BinTableHDU.from_columns([
        fits.Column(name="PLATE", format="J", array=[plate]),
        fits.Column(name="MJD", format="J", array=[mjd]),
        fits.Column(name="FIBERID", format="J", array=[fiber]),
        fits.Column(name="Z", format="E", array=[z]),
        fits.Column(name="CLASS", format="6A", array=["STAR"]),
        fits.Column(name="SUBCLASS", format="6A", array=["K1"]),
    ], name="SPALL")
    fits.HDUList([prim, coadd, spall]).writeto(path, overwrite=True)
    return path


def sdss_name(plate: int = 1234, mjd: int = 55555, fiber: int = 42) -> str:
    return f"spec-{plate:04d}-{mjd:05d}-{fiber:04d}.fits"


# --------------------------------------------------------------------------- LAMOST


def _lamost_header(h: fits.Header, obsid: int, ra: float, dec: float) -> None:
    h["TELESCOP"] = "LAMOST"
    h["OBSID"] = obsid
    h["DESIG"] = f"LAMOST J{obsid:06d}"
    h["RA"], h["DEC"] = ra, dec
    h["VACUUM"] = True
    h["COEFF0"], h["COEFF1"] = 3.5682, 1e-4
    h["CLASS"], h["SUBCLASS"], h["Z"] = "STAR", "G2", -1e-4


def _lamost_arrays(npix: int, masked: tuple[float, float] | None, seed: int):
    wave = loglin(3.5682, npix)
    flux = noisy(wave, SIGMA, seed)
    ivar = np.full(npix, 1.0 / SIGMA**2)
    andmask = np.zeros(npix)
    if masked is not None:
        andmask[(wave >= masked[0]) & (wave <= masked[1])] = 4
    flux[-20:] = 0.0  # red-end padding as in real LAMOST files
    return wave, flux, ivar, andmask


def make_lamost_dr7(path: Path, *, npix: int = 3908, rows: int = 5, obsid: int = 700001,
                    ra: float = 10.5, dec: float = 41.25,
                    masked: tuple[float, float] | None = (6500, 6510), seed: int = 2) -> Path:
    """DR7-style LAMOST file: primary image (rows, npix) = flux, ivar, wavelength, andmask, ormask."""
    wave, flux, ivar, andmask = _lamost_arrays(npix, masked, seed)
    img = np.vstack([flux, ivar, wave, andmask, np.zeros(npix)])[:rows].astype(np.float32)
    prim = fits.PrimaryHDU(img)
    _lamost_header(prim.header, obsid, ra, dec)
    prim.writeto(path, overwrite=True)
    return path


def make_lamost_dr8(path: Path, *, npix: int = 3908, obsid: int = 800001, ra: float = 11.5,
                    dec: float = 42.25, masked: tuple[float, float] | None = (6500, 6510),
                    seed: int = 3) -> Path:
    """DR8-style LAMOST file: empty primary + COADD table with one row of array columns."""
    wave, flux, ivar, andmask = _lamost_arrays(npix, masked, seed)
    fmt = f"{npix}E"
    cols = [fits.Column(name=n, format=fmt, array=a[None, :].astype(np.float32))
            for n, a in (("FLUX", flux), ("IVAR", ivar), ("WAVELENGTH", wave),
                         ("ANDMASK", andmask), ("ORMASK", np.zeros(npix)),
                         ("NORMALIZATION", np.full(npix, -9999.0)))]
    prim = fits.PrimaryHDU()
    _lamost_header(prim.header, obsid, ra, dec)
    fits.HDUList([prim, fits.BinTableHDU.from_columns(cols, name="COADD")]).writeto(
        path, overwrite=True)
    return path


# --------------------------------------------------------------------------- 1-D WCS images


def make_wcs1d_linear(path: Path, *, start: float = 3850.0, step: float = 0.5, npix: int = 9000,
                      error_hdu: bool = True, air: bool | None = True, obj: str = "HD 140283",
                      ra: str | float = "15:43:03.1", dec: str | float = "-10:56:00.6",
                      seed: int = 4) -> Path:
    """Linear-wavelength 1-D image; ERROR extension; wavelengths in air when ``air``."""
    wave_file = start + step * np.arange(npix)
    wave_vac = wave_file
    if air:
        from chemlatent.io.readers import air_to_vacuum

        wave_vac = air_to_vacuum(wave_file)
    flux = noisy(wave_vac, SIGMA, seed)
    prim = fits.PrimaryHDU(flux.astype(np.float32))
    h = prim.header
    h["CRVAL1"], h["CDELT1"], h["CRPIX1"] = start, step, 1.0
    h["CTYPE1"] = "AWAV" if air else "WAVE"
    h["CUNIT1"] = "Angstrom"
    if air is not None:
        h["AIRORVAC"] = "air" if air else "vac"
    h["OBJECT"], h["RA"], h["DEC"] = obj, ra, dec
    hdus = [prim]
    if error_hdu:
        hdus.append(fits.ImageHDU(np.full(npix, SIGMA, np.float32), name="ERROR"))
    fits.HDUList(hdus).writeto(path, overwrite=True)
    return path


def make_wcs1d_log(path: Path, *, loglam0: float = 3.5850, dloglam: float = 1e-4,
                   npix: int = 3800, crpix: float = 1.0, seed: int = 5) -> Path:
    """Log-linear 1-D image (DC-FLAG = 1, CD1_1), no noise extension."""
    wave = 10.0 ** (loglam0 + dloglam * (np.arange(npix) + 1 - crpix))
    flux = noisy(wave, SIGMA, seed)
    prim = fits.PrimaryHDU(flux.astype(np.float32))
    h = prim.header
    h["CRVAL1"], h["CD1_1"], h["CRPIX1"], h["DC-FLAG"] = loglam0, dloglam, crpix, 1
    h["CTYPE1"] = "LINEAR"
    fits.HDUList([prim]).writeto(path, overwrite=True)
    return path


# --------------------------------------------------------------------------- tables


def table_spectra(n: int = 3, npix: int = 6000, seed: int = 6):
    """(wave (npix,), flux (n, npix), err (n, npix)): fine linear pixels, 0.4 A."""
    wave = 4200.0 + 0.4 * np.arange(npix)
    flux = np.vstack([noisy(wave, SIGMA, seed + i) for i in range(n)])
    err = np.full_like(flux, SIGMA)
    return wave, flux, err


TABLE_IDS = ("star-a", "star-b", "star-c")
TABLE_RA = (1.0, 2.0, 3.0)
TABLE_DEC = (-1.0, -2.0, -3.0)


def make_fits_table_rows(path: Path) -> Path:
    """FITS binary table, one spectrum per row (array columns WAVE, FLUX, ERROR)."""
    wave, flux, err = table_spectra()
    n, p = flux.shape
    cols = [fits.Column(name="OBJ_ID", format="10A", array=list(TABLE_IDS)),
            fits.Column(name="RA", format="D", array=TABLE_RA),
            fits.Column(name="DEC", format="D", array=TABLE_DEC),
            fits.Column(name="WAVE", format=f"{p}D", array=np.tile(wave, (n, 1)),
                        unit="Angstrom"),
            fits.Column(name="FLUX", format=f"{p}E", array=flux),
            fits.Column(name="ERROR", format=f"{p}E", array=err)]
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(cols)]).writeto(path)
    return path


def make_fits_table_long(path: Path) -> Path:
    """FITS binary table, one spectrum as columns (wavelength in nm, ivar)."""
    wave, flux, err = table_spectra(1)
    cols = [fits.Column(name="lambda", format="D", array=wave / 10.0, unit="nm"),
            fits.Column(name="flux", format="E", array=flux[0]),
            fits.Column(name="ivar", format="E", array=1.0 / err[0] ** 2)]
    hdu = fits.BinTableHDU.from_columns(cols)
    hdu.header["OBJECT"] = "long-fits"
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(path)
    return path


def make_hdf5_rows(path: Path) -> Path:
    """HDF5: flux (N, P), sigma (N, P), a shared wavelength (P,), per-star ids/ra/dec."""
    wave, flux, err = table_spectra()
    with h5py.File(path, "w") as f:
        f.create_dataset("wavelength", data=wave)
        f.create_dataset("flux", data=flux.astype(np.float32))
        f.create_dataset("sigma", data=err.astype(np.float32))
        f.create_dataset("obj_id", data=np.array(TABLE_IDS, dtype="S10"))
        f.create_dataset("ra", data=np.array(TABLE_RA))
        f.create_dataset("dec", data=np.array(TABLE_DEC))
    return path


def make_hdf5_long(path: Path) -> Path:
    """HDF5: one spectrum as 1-D datasets loglam / flux / inverse_variance in a group."""
    wave, flux, err = table_spectra(1)
    with h5py.File(path, "w") as f:
        g = f.create_group("spectrum")
        g.create_dataset("loglam", data=np.log10(wave))
        g.create_dataset("flux", data=flux[0])
        g.create_dataset("inverse_variance", data=1.0 / err[0] ** 2)
        f.attrs["obj_id"] = "long-h5"
        f.attrs["ra"], f.attrs["dec"] = 12.0, 34.0
    return path


def make_hdf5_compound(path: Path) -> Path:
    """HDF5: one compound dataset, a row per spectrum with array fields and a name field."""
    wave, flux, err = table_spectra()
    n, p = flux.shape
    dt = np.dtype([("name", "S10"), ("ra", "f8"), ("dec", "f8"), ("wave", "f8", (p,)),
                   ("flux", "f4", (p,)), ("err", "f4", (p,))])
    rows = np.zeros(n, dt)
    rows["name"] = [s.encode() for s in TABLE_IDS]
    rows["ra"], rows["dec"] = TABLE_RA, TABLE_DEC
    rows["wave"], rows["flux"], rows["err"] = wave, flux, err
    with h5py.File(path, "w") as f:
        f.create_dataset("spectra", data=rows)
    return path


def make_parquet_rows(path: Path) -> Path:
    """Parquet: one spectrum per row (list columns wave/flux/ivar) plus id, ra, dec."""
    wave, flux, err = table_spectra()
    table = pa.table({
        "id": list(TABLE_IDS),
        "ra": list(TABLE_RA),
        "dec": list(TABLE_DEC),
        "wave": [wave.tolist()] * len(TABLE_IDS),
        "flux": [row.tolist() for row in flux],
        "ivar": [(1.0 / e**2).tolist() for e in err],
    })
    pq.write_table(table, path)
    return path


def make_parquet_long(path: Path, *, wave: np.ndarray | None = None) -> Path:
    """Parquet: one spectrum as columns wavelength, flux, error."""
    w, flux, err = table_spectra(1)
    wave = w if wave is None else wave
    pq.write_table(pa.table({"wavelength": wave, "flux": flux[0], "error": err[0]}), path)
    return path


ALL_LAYOUTS = {
    # name -> (builder, file name, expected format, number of spectra)
    "sdss": (make_sdss, sdss_name(), "sdss", 1),
    "lamost_dr7": (make_lamost_dr7, "spec-55000-F1_sp01-001.fits", "lamost", 1),
    "lamost_dr8": (make_lamost_dr8, "spec-55000-F1_sp01-002.fits.gz", "lamost", 1),
    "wcs1d_linear": (make_wcs1d_linear, "linear.fits", "wcs1d", 1),
    "wcs1d_log": (make_wcs1d_log, "loglin.fit", "wcs1d", 1),
    "fits_rows": (make_fits_table_rows, "rows.fits", "table", 3),
    "fits_long": (make_fits_table_long, "long.fits", "table", 1),
    "hdf5_rows": (make_hdf5_rows, "rows.h5", "table", 3),
    "hdf5_long": (make_hdf5_long, "long.hdf5", "table", 1),
    "hdf5_compound": (make_hdf5_compound, "compound.h5", "table", 3),
    "parquet_rows": (make_parquet_rows, "rows.parquet", "table", 3),
    "parquet_long": (make_parquet_long, "long.parquet", "table", 1),
}


def build(layout: str, directory: Path) -> Path:
    """Write the fixture file of ``layout`` into ``directory`` and return its path."""
    builder, name, _, _ = ALL_LAYOUTS[layout]
    return builder(Path(directory) / name)
