"""Latents files: finding a survey's ``latents/<model>.parquet``, its metadata and the table."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from chemlatent.errors import ChemlatentError


@dataclass
class LatentsInfo:
    """Where a survey's latents are and which model produced them."""

    path: Path
    model_name: str
    model_dir: Path | None
    note: str = ""


def find_latents(survey_dir, model: str | None = None) -> LatentsInfo:
    """Locate ``DIR/latents/<model>.parquet`` and the model directory.

    ``model``: a model directory (its name picks the latents file) or a model name. Without
    it: the only latents file, or the newest one (with a note naming the others). The
    parquet's key-value metadata ``model_dir`` / ``model_name`` are used when present.
    """
    from chemlatent.io.store import LATENTS_DIR

    survey_dir = Path(survey_dir)
    if not survey_dir.is_dir():
        raise ChemlatentError(f"{survey_dir} is not a survey directory (it does not exist)")
    ldir = survey_dir / LATENTS_DIR
    files = sorted(ldir.glob("*.parquet")) if ldir.is_dir() else []
    files = [f for f in files if not f.name.startswith(".")]
    names = [f.stem for f in files]
    model_dir = None
    note = ""
    if model is not None:
        mpath = Path(model)
        if mpath.is_dir():
            model_dir = mpath
            name = mpath.resolve().name
        else:
            name = model[:-8] if model.endswith(".parquet") else model
        path = ldir / f"{name}.parquet"
        if not path.exists():
            if not files:
                raise ChemlatentError("no latents for this survey: run chemlatent encode DIR first")
            raise ChemlatentError(f"no latents for model {name!r} in {ldir}; "
                                  f"there are: {', '.join(names)}")
    else:
        if not files:
            raise ChemlatentError("no latents for this survey: run chemlatent encode DIR first")
        if len(files) == 1:
            path = files[0]
        else:
            mt = [f.stat().st_mtime for f in files]
            newest = int(np.argmax(mt))
            if sum(1 for m in mt if m == mt[newest]) > 1:
                raise ChemlatentError(f"several latents files in {ldir} ({', '.join(names)}): "
                                      "choose one with --model NAME")
            path = files[newest]
            note = (f"using the newest latents {path.stem!r} "
                    f"(also: {', '.join(n for n in names if n != path.stem)}; pick with --model)")
        name = path.stem
    meta = latents_metadata(path)
    if model_dir is None and meta.get("model_dir"):
        cand = Path(str(meta["model_dir"]))
        for c in (cand, survey_dir / cand):
            if c.is_dir():
                model_dir = c
                break
        else:
            note = (note + "; " if note else "") + (
                f"model directory {cand} named by the latents is not here: no calibration")
    return LatentsInfo(path, str(meta.get("model_name") or name), model_dir, note)


def latents_metadata(path) -> dict:
    """The parquet key-value metadata (JSON values decoded), without pandas' own entry."""
    import pyarrow.parquet as pq

    try:
        raw = pq.read_schema(path).metadata or {}
    except Exception as exc:
        raise ChemlatentError(f"{path} is not a readable parquet file ({exc})") from None
    out = {}
    for k, v in raw.items():
        key = k.decode(errors="replace")
        if key == "pandas" or key.startswith("ARROW:"):
            continue
        text = v.decode(errors="replace")
        try:
            out[key] = json.loads(text)
        except ValueError:
            out[key] = text
    # ``chemlatent encode`` stores its provenance as one JSON object under "chemlatent"
    nested = out.pop("chemlatent", None)
    if isinstance(nested, dict):
        out = {**nested, **out}
    return out


def read_latents(path) -> pd.DataFrame:
    """The latents table, one row per star (the last row wins when re-inference added runs)."""
    try:
        df = pd.read_parquet(path)
    except Exception as exc:
        raise ChemlatentError(f"{path} is not a readable latents table ({exc})") from None
    missing = [c for c in ("star_id", "z_fe", "z_c", "z_alpha") if c not in df.columns]
    if missing:
        raise ChemlatentError(f"{path} lacks column(s) {', '.join(missing)}")
    if df["star_id"].duplicated().any():
        df = df.drop_duplicates("star_id", keep="last")
    for c in df.columns:  # repeated labels (the run name) as categories: 1 byte a star, not ~35
        if c != "star_id" and (df[c].dtype == object or pd.api.types.is_string_dtype(df[c])):
            df[c] = df[c].astype("category")
    return df.reset_index(drop=True)


def latents_reading(meta: dict) -> str:
    """What the latents in a file with metadata ``meta`` are, in words: each star's own fit
    (""), or what ``encode --at-labels`` / ``--posterior-mean`` made of it."""
    parts = []
    if "at_labels" in meta:
        parts.append("z_fe at the catalog's Teff/logg")
    if "posterior_mean" in meta:
        parts.append("posterior means under the survey's population")
    return "; ".join(parts)
