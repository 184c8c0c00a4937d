"""Small surveys for the re-inference, job and cluster tests: copies of the first stars of
the session's tiny survey with small store chunks (several chunks and partitions from a
few hundred stars) in either ivar layout."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from chemlatent.encode.streaming import encode_survey
from chemlatent.io.store import Survey, SurveyWriter
from chemlatent.model.modelio import load_model


def small_survey(src: Survey, path: Path, n: int = 600, chunk_stars: int = 64,
                 layout: str = "scaled_profile", encode: bool = True) -> Survey:
    flux = np.asarray(src._flux[:n])
    mask = np.asarray(src._mask[:n])
    scale = src._ivar_scale[:n]
    if layout == "full":
        ivar = scale[:, None] * src._ivar_profile[None, :]
        ivar[mask != 0] = 0.0
        w = SurveyWriter(path, src.grid, ivar_layout="full", chunk_stars=chunk_stars)
        w.write(0, flux, ivar=ivar)
    else:
        w = SurveyWriter(path, src.grid, ivar_layout="scaled_profile", ivar_profile=src._ivar_profile,
                         chunk_stars=chunk_stars)
        w.write(0, flux, mask=mask, ivar_scale=scale)
    survey = w.finish(src.catalog.iloc[:n].reset_index(drop=True))
    if encode:
        encode_survey(survey, load_model(None))
    return survey


def digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def faint_copy(src: Path, dest: Path, snr: float = 10.0) -> Path:
    """A copy of the survey at ``src`` without its latents, every star's catalog S/N set to ``snr``."""
    import shutil

    import pandas as pd

    shutil.copytree(src, dest, ignore=shutil.ignore_patterns("latents", "annotations*"))
    cat = pd.read_parquet(dest / "catalog.parquet")
    cat["snr"] = np.float32(snr)
    cat.to_parquet(dest / "catalog.parquet")
    return dest
