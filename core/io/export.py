"""Export candidate tables to CSV, FITS or VOTable, on disk or in memory, and over SAMP.

The format follows the file extension: ``.csv``; ``.fits``/``.fit``/``.fts``;
``.vot``/``.votable``/``.xml``. Provenance (survey, model, rule text and JSON, UTC time,
software version) goes into the file's metadata: FITS header keywords plus HISTORY/COMMENT
cards, VOTable INFO elements (and PARAMs for numbers), CSV leading ``#`` lines. All three
read back with astropy (CSV: ``Table.read(path, format="ascii.csv", comment="#")`` or
``format="ascii"``; pandas: ``pd.read_csv(path, comment="#")``).

File writes are atomic: written to a hidden sibling, fsynced, then renamed into place.
"""

from __future__ import annotations

import io
import os
import tempfile
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd

from chemlatent import __version__
from chemlatent.errors import ChemlatentError

FORMATS: dict[str, str] = {".csv": "csv", ".fits": "fits", ".fit": "fits", ".fts": "fits",
                           ".vot": "votable", ".votable": "votable", ".xml": "votable"}

# canonical provenance key -> FITS keyword (8 characters at most)
FITS_KEYWORDS: dict[str, str] = {
    "software": "CREATOR", "version": "SWVERSN", "created": "DATE", "survey_path": "SURVEY",
    "survey_name": "SURVNAME", "model_name": "MODEL", "model_dir": "MODELDIR",
    "rule": "RULE", "rule_json": "RULEJSON", "n_stars": "NSTARS", "n_flagged": "NFLAGGED",
    "expected": "NEXPECT", "null": "NULLHYP", "null_model": "NULLDESC", "fdr": "FDRQ",
    "p_threshold": "PTHRESH",
    "calibration": "CALIB", "precision": "PRECISN", "recall": "RECALL",
}

COLUMN_DESCRIPTIONS: dict[str, str] = {
    "star_id": "survey star identifier",
    "ra": "right ascension (deg)", "dec": "declination (deg)",
    "z_fe": "posterior mean of the iron latent", "z_c": "posterior mean of the carbon latent",
    "z_alpha": "posterior mean of the alpha latent",
    "z_fe_std": "posterior std of z_fe", "z_c_std": "posterior std of z_c",
    "z_alpha_std": "posterior std of z_alpha",
    "s_fe": "z_fe standardised to the survey (median/MAD)",
    "s_c": "z_c standardised to the survey (median/MAD)",
    "s_alpha": "z_alpha standardised to the survey (median/MAD)",
    "s_c_cond": "z_c standardised against stars of similar z_fe",
    "s_alpha_cond": "z_alpha standardised against stars of similar z_fe",
    "mahal_d2": "squared Mahalanobis distance over the 3 chemical axes (survey frame)",
    "mahal_p": "chi2(3) tail probability of mahal_d2",
    "fe_h_cal": "[Fe/H] from the linear calibration (dex)",
    "c_fe_cal": "[C/Fe] from the linear calibration (dex)",
    "alpha_fe_cal": "[alpha/Fe] from the linear calibration (dex)",
}


# units (FITS TUNIT, VOTable unit, the CSV header) and UCDs of the columns that have them;
# latents, scores and probabilities are dimensionless
COLUMN_UNITS: dict[str, str] = {
    "ra": "deg", "dec": "deg", "teff": "K", "teff_pred": "K", "logg": "log(cm.s**-2)",
    "logg_pred": "log(cm.s**-2)", "fe_h": "dex", "c_fe": "dex", "alpha_fe": "dex",
    "fe_h_cal": "dex", "c_fe_cal": "dex", "alpha_fe_cal": "dex",
}
COLUMN_UCDS: dict[str, str] = {
    "star_id": "meta.id;meta.main", "ra": "pos.eq.ra;meta.main", "dec": "pos.eq.dec;meta.main",
    "snr": "stat.snr", "teff": "phys.temperature.effective", "teff_pred": "phys.temperature.effective",
    "logg": "phys.gravity", "logg_pred": "phys.gravity", "fe_h": "phys.abund.Fe",
    "fe_h_cal": "phys.abund.Fe", "c_fe": "phys.abund", "c_fe_cal": "phys.abund",
    "alpha_fe": "phys.abund", "alpha_fe_cal": "phys.abund", "verdict": "meta.note",
    "note": "meta.note", "population": "meta.code.class",
}


def format_for(path: str | Path) -> str:
    """'csv', 'fits' or 'votable' from a file name's extension."""
    ext = Path(path).suffix.lower()
    if ext not in FORMATS:
        raise ChemlatentError(
            f"cannot tell the format of {Path(path).name!r}: use .csv, .fits/.fit or .vot/.xml")
    return FORMATS[ext]


def utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())


def provenance(*, survey_path: str | Path | None = None, model_name: str | None = None,
               model_dir: str | Path | None = None, rule=None, extra: dict | None = None,
               paths: bool = True, latents_path: str | Path | None = None) -> dict:
    """The standard provenance dict (``rule``: a rules.Rule or text). ``paths=False`` (a file
    downloaded from the page): names only, no absolute path on the server. ``latents_path``:
    the latents file read, whose kind (each star's fit, posterior means, ...) is recorded."""
    meta: dict = {"software": "chemlatent", "version": __version__, "created": utc_now()}
    if survey_path is not None:
        if paths:
            meta["survey_path"] = str(Path(survey_path).resolve())
        meta["survey_name"] = Path(survey_path).resolve().name
    if model_name:
        meta["model_name"] = str(model_name)
    if model_dir:
        meta["model_dir"] = str(model_dir) if paths else Path(model_dir).name
    if latents_path is not None:
        from chemlatent.io.latents import latents_metadata, latents_reading

        meta["latents"] = latents_reading(latents_metadata(latents_path)) or "each star's own fit"
    if rule is not None:
        if hasattr(rule, "to_json"):
            meta["rule"] = rule.describe()
            meta["rule_json"] = rule.to_json()
        else:
            meta["rule"] = str(rule)
    meta.update(extra or {})
    return meta


def build_export_frame(latents: pd.DataFrame, *, scores: pd.DataFrame | None = None,
                       catalog: pd.DataFrame | None = None, calibration=None) -> pd.DataFrame:
    """star_id, ra/dec when known, latents and uncertainties, scores, calibrated dex.

    ``scores`` is row-aligned with ``latents``; ``catalog`` is joined on star_id (ra, dec,
    snr and truth labels when present); ``calibration`` adds ``<target>_cal`` columns.
    """
    out = latents.reset_index(drop=True).copy()
    if scores is not None:
        sc = scores.reset_index(drop=True)
        out = pd.concat([out, sc[[c for c in sc.columns if c not in out.columns]]], axis=1)
    if calibration is not None:
        cal = calibration.dex_columns(out)
        out = pd.concat([out, cal[[c for c in cal.columns if c not in out.columns]]], axis=1)
    if catalog is not None and "star_id" in catalog.columns:
        keep = [c for c in ("ra", "dec", "snr", "teff", "logg", "fe_h", "c_fe", "alpha_fe",
                            "population") if c in catalog.columns and c not in out.columns]
        for c in ("ra", "dec"):  # "when known": drop coordinates that are all missing
            if c in keep and not pd.to_numeric(catalog[c], errors="coerce").notna().any():
                keep.remove(c)
        if keep:
            out = out.merge(catalog[["star_id", *keep]], on="star_id", how="left")
    first = [c for c in ("star_id", "ra", "dec") if c in out.columns]
    return out[first + [c for c in out.columns if c not in first]]


# --------------------------------------------------------------------------- writers


def _clean(value) -> str:
    text = str(value).replace("\r", " ").replace("\n", " ")
    return text.encode("ascii", "replace").decode("ascii")


def _astropy_table(df: pd.DataFrame):
    from astropy.table import Table

    cols = {}
    for c in df.columns:
        s = df[c]
        dt = s.dtype
        if (pd.api.types.is_object_dtype(dt) or pd.api.types.is_string_dtype(dt)
                or isinstance(dt, pd.CategoricalDtype)):
            cols[c] = np.array([_clean(v) if isinstance(v, str) or (v is not None and v == v)
                                else "" for v in s.astype(object)], dtype=str)
        elif pd.api.types.is_datetime64_any_dtype(dt):
            cols[c] = np.array(s.astype(str), dtype=str)
        elif pd.api.types.is_extension_array_dtype(dt):  # nullable Int64 / boolean / Float
            missing = s.isna().to_numpy()
            kind = bool if pd.api.types.is_bool_dtype(dt) else (
                np.int64 if pd.api.types.is_integer_dtype(dt) else np.float64)
            filled = s.astype(object).where(~missing, 0).to_numpy().astype(kind)
            cols[c] = np.ma.masked_array(filled, mask=missing) if missing.any() else filled
        elif pd.api.types.is_bool_dtype(dt):
            cols[c] = s.to_numpy(bool)
        else:
            cols[c] = s.to_numpy()
    return Table(cols, names=list(df.columns))


def _write_csv(df: pd.DataFrame, fh, meta: dict) -> None:
    lines = ["# chemlatent candidate table"]
    lines += [f"# {k}: {_clean(v)}" for k, v in meta.items()]
    units = [f"{c}={COLUMN_UNITS[c]}" for c in df.columns if c in COLUMN_UNITS]
    if units:
        lines.append("# units: " + ", ".join(units) + " (other columns dimensionless)")
    text = "\n".join(lines) + "\n" + df.to_csv(index=False, lineterminator="\n")
    fh.write(text.encode("utf-8"))


def _write_fits(df: pd.DataFrame, fh, meta: dict) -> None:
    import warnings

    from astropy.io import fits

    t = _astropy_table(df)
    hdu = fits.BinTableHDU(t, name="CANDIDATES")
    h = hdu.header
    used = set()
    for k, v in meta.items():
        key = FITS_KEYWORDS.get(k, k.upper().replace("-", "_")[:8])
        if key in used:
            continue
        used.add(key)
        if isinstance(v, (bool, np.bool_)):
            h[key] = bool(v)
        elif isinstance(v, (int, np.integer)):
            h[key] = int(v)
        elif isinstance(v, (float, np.floating)):
            h[key] = float(v) if np.isfinite(v) else str(v)
        elif v is None:
            continue
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                h[key] = _clean(v)
    h.add_history(f"Written by chemlatent {__version__} on {meta.get('created', utc_now())} UTC")
    for k in ("survey_path", "model_name", "rule"):
        if k in meta:
            h.add_history(_clean(f"{k}: {meta[k]}"))
    for i, c in enumerate(df.columns, start=1):
        if c in COLUMN_DESCRIPTIONS:
            h.comments[f"TTYPE{i}"] = COLUMN_DESCRIPTIONS[c][:47]
        if c in COLUMN_UNITS:
            h.set(f"TUNIT{i}", COLUMN_UNITS[c], after=f"TFORM{i}")
    h.add_comment("Chemical latent candidates; z_* are the VAE's chemical axes (prior N(0,1)).")
    h.add_comment("Keywords RULE / RULEJSON hold the selection; see docs/flags.md.")
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(fh)


def _write_votable(df: pd.DataFrame, fh, meta: dict) -> None:
    from astropy.io.votable import from_table
    from astropy.io.votable.tree import Info, Param

    vt = from_table(_astropy_table(df))
    res = vt.resources[0]
    table = res.tables[0]
    table.name = "candidates"
    for f in table.fields:
        if f.name in COLUMN_DESCRIPTIONS:
            f.description = COLUMN_DESCRIPTIONS[f.name]
        if f.name in COLUMN_UNITS:
            f.unit = COLUMN_UNITS[f.name]
        if f.name in COLUMN_UCDS:
            f.ucd = COLUMN_UCDS[f.name]
    for k, v in meta.items():
        if v is None:
            continue
        res.infos.append(Info(name=k, value=_clean(v)))
        if isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool):
            dt = "long" if isinstance(v, (int, np.integer)) else "double"
            table.params.append(Param(vt, name=k, ID=f"param_{k}", datatype=dt, value=v))
    vt.to_xml(fh)


_WRITERS = {"csv": _write_csv, "fits": _write_fits, "votable": _write_votable}


def export_bytes(df: pd.DataFrame, fmt: str, meta: dict | None = None) -> bytes:
    """The table in ``fmt`` ('csv', 'fits', 'votable' or an extension) as bytes."""
    fmt = FORMATS.get(fmt.lower() if fmt.startswith(".") else "." + fmt.lower(), fmt.lower())
    if fmt not in _WRITERS:
        raise ChemlatentError(f"unknown export format {fmt!r}: use csv, fits or votable")
    buf = io.BytesIO()
    _WRITERS[fmt](df, buf, dict(meta or {}))
    return buf.getvalue()


def export_table(df: pd.DataFrame, path: str | Path, meta: dict | None = None,
                 fmt: str | None = None) -> Path:
    """Write ``df`` to ``path`` (format from the extension unless ``fmt``), atomically."""
    path = Path(path)
    fmt = fmt or format_for(path)
    if path.is_dir():
        raise ChemlatentError(f"{path} is a directory: give a file name ending in .csv, .fits or .vot")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        with open(tmp, "wb") as fh:
            _WRITERS[FORMATS.get("." + fmt, fmt)](df, fh, dict(meta or {}))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


# --------------------------------------------------------------------------- SAMP

NO_HUB = "no SAMP hub is running: start TOPCAT or Aladin, then retry"


def _samp_dir() -> Path:
    d = Path(tempfile.gettempdir()) / "chemlatent-samp"
    d.mkdir(parents=True, exist_ok=True)
    cutoff = time.time() - 86400
    for old in d.glob("*.vot"):  # tables sent more than a day ago
        try:
            if old.stat().st_mtime < cutoff:
                old.unlink()
        except OSError:
            pass
    return d


def send_table_samp(table, name: str, select_rows=None, hub_timeout: float = 5.0, *,
                    meta: dict | None = None, select_delay: float = 0.5) -> dict:
    """Broadcast a table to SAMP clients (TOPCAT, Aladin) and optionally select rows.

    ``table``: a DataFrame or astropy Table, written as a VOTable to a temporary file whose
    file:// URL is sent with ``table.load.votable``. ``select_rows``: 0-based row indices
    of that table, sent with ``table.select.rowList`` after ``select_delay`` seconds (the
    receivers load asynchronously). Raises ChemlatentError when no hub runs or it does not
    answer within ``hub_timeout`` seconds. Returns url, table_id and the recipients.
    """
    import warnings

    from astropy.table import Table
    from astropy.utils.exceptions import AstropyDeprecationWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AstropyDeprecationWarning)
        from astropy.samp import SAMPIntegratedClient, conf

    df = table.to_pandas() if isinstance(table, Table) else table
    if not isinstance(df, pd.DataFrame):
        raise ChemlatentError("send_table_samp needs a DataFrame or an astropy Table")
    table_id = f"chemlatent-{uuid.uuid4().hex[:12]}"
    path = _samp_dir() / f"{table_id}.vot"
    export_table(df, path, meta, fmt="votable")
    url = path.resolve().as_uri()
    client = SAMPIntegratedClient(name="chemlatent", description="chemlatent candidate tables",
                                  callable=False)
    err: list = []

    def _connect() -> None:
        try:
            with conf.set_temp("use_internet", False):
                client.connect()
        except Exception as exc:  # SAMPHubError, connection refused, bad lock file
            err.append(exc)

    th = threading.Thread(target=_connect, daemon=True)
    th.start()
    th.join(hub_timeout)
    if th.is_alive():
        raise ChemlatentError(f"the SAMP hub did not answer within {hub_timeout:g} s: "
                              "restart TOPCAT or Aladin, then retry")
    if err:
        raise ChemlatentError(NO_HUB)
    out = {"url": url, "table_id": table_id, "path": str(path), "loaded_by": [],
           "selected_by": []}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "No client was able to receive this message"
            out["loaded_by"] = list(client.notify_all({
                "samp.mtype": "table.load.votable",
                "samp.params": {"url": url, "table-id": table_id, "name": str(name)},
            }) or [])
            if select_rows is not None:
                rows = [str(int(r)) for r in np.asarray(select_rows).ravel()]
                time.sleep(select_delay)
                out["selected_by"] = list(client.notify_all({
                    "samp.mtype": "table.select.rowList",
                    "samp.params": {"table-id": table_id, "url": url, "row-list": rows},
                }) or [])
        time.sleep(0.2)  # let the hub hand the notifications over before we unregister
    except Exception as exc:
        raise ChemlatentError(f"SAMP broadcast failed ({type(exc).__name__}: {exc})") from None
    finally:
        try:
            client.disconnect()
        except Exception:
            pass
    return out
