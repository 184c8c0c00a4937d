"""Encoding at a survey's own Teff/logg (``chemlatent encode DIR --at-labels``).

The encoder reads Teff/logg and the chemistry from the same spectrum, so where it misreads
Teff (on real spectra by up to ~1000 K: docs/model.md, "Real stars: line depths and the
refit") z_fe follows it along the Teff-metallicity degeneracy (a hotter star's lines are
weaker, as a more metal-poor star's are). Where the survey has Teff/logg labels (its
pipeline's, attached with ``chemlatent labels``), z_fe can be moved back along that
degeneracy:

    z_fe <- z_fe - k_teff (teff_pred - teff) - k_logg (logg_pred - logg)

The coupling (k_teff, k_logg) is the model's own, measured on the survey being encoded and
without any abundance: for each of up to ``max_stars`` labelled stars, the encoder's Jacobian
J with respect to the flux gives how pixel noise moves z_fe and (Teff, logg) together
(covariances J diag(1/ivar) J^T); the per-star regression coefficient of z_fe on (Teff, logg)
is C_fw C_ww^-1, and the coupling is its median over the stars. Only z_fe is moved: the ratio
axes ([C/Fe], [alpha/Fe]) are differential against iron, and moving z_alpha the same way
lowered its r on the stand-ins whose line strengths respond to Teff unlike the generator's.
The model's Teff/logg head must fit its final encoder (``check_head``): a head left over from
before an encoder refit misreads Teff on its own, and z_fe does not follow that error.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from chemlatent.encode.jacobian import noise_jacobian
from chemlatent.errors import ChemlatentError
from chemlatent.io.store import Survey
from chemlatent.model.modelio import load_config
from chemlatent.model.vae import DisentangledVAE

LABELS = ("teff", "logg")
MIN_STARS = 20


@dataclass
class LabelCoupling:
    """How far z_fe moves per unit of the encoder's Teff/logg error (median over ``n_stars``)."""

    fe_per_kelvin: float
    fe_per_dex_logg: float
    n_stars: int

    def to_dict(self) -> dict:
        return asdict(self)


def labelled_rows(catalog: pd.DataFrame) -> np.ndarray:
    """Rows whose Teff and logg labels are both finite; an error when the catalog has none."""
    missing = [c for c in LABELS if c not in catalog.columns]
    if missing:
        raise ChemlatentError(
            f"--at-labels needs Teff/logg labels; the catalog has no {' or '.join(missing)} column: "
            "attach them first (chemlatent labels DIR TABLE)")
    ok = np.ones(len(catalog), bool)
    for c in LABELS:
        ok &= np.isfinite(pd.to_numeric(catalog[c], errors="coerce").to_numpy(np.float64))
    return np.nonzero(ok)[0]


def check_head(model: DisentangledVAE) -> None:
    """An error unless the model's Teff/logg head fits its final encoder trunk: a head left
    from before an encoder refit misreads Teff by itself, and z_fe does not follow that error."""
    if not isinstance(model, DisentangledVAE):
        raise ChemlatentError("--at-labels works with chemlatent's own models, not this recipe's")
    model_dir = getattr(model, "model_dir", None)
    training = (load_config(model_dir)[1].get("training") or {}) if model_dir else {}
    refit = training.get("encoder_refit")
    if refit and "nuisance_rms_after" not in refit:
        raise ChemlatentError(
            "--at-labels needs the model's Teff/logg head fitted to its refitted encoder; this model's "
            "predates that: run python tools/refit_nuisance_head.py MODEL TRAIN_SURVEY first")


def per_star_coupling(model: DisentangledVAE, flux: torch.Tensor, ivar: torch.Tensor) -> np.ndarray:
    """(B, 2): each star's regression coefficient of z_fe on the standardised (Teff, logg)
    that pixel noise of variance 1/ivar induces through the encoder (module docstring)."""
    jac, var = noise_jacobian(model, flux, ivar, lambda mu, w: (mu[:, 0], w[:, 0], w[:, 1]))
    cov = torch.einsum("bip,bp,bjp->bij", jac, var, jac).double().cpu()
    c_ww = cov[:, 1:, 1:] + 1e-9 * torch.eye(2, dtype=cov.dtype)
    return torch.linalg.solve(c_ww, cov[:, 1:, 0:1])[..., 0].numpy()


def measure_coupling(model: DisentangledVAE, survey: Survey, *, max_stars: int = 2000,
                     seed: int = 0, chunk: int = 256) -> LabelCoupling:
    """The model's label coupling on up to ``max_stars`` random labelled stars of ``survey``."""
    from chemlatent.model.training import InMemoryData

    check_head(model)
    rows = labelled_rows(survey.catalog)
    if rows.size < MIN_STARS:
        raise ChemlatentError(f"--at-labels needs at least {MIN_STARS} stars with Teff and logg "
                              f"labels to measure the model's coupling, got {rows.size}")
    if rows.size > max_stars:
        rows = np.sort(np.random.default_rng(seed).choice(rows, max_stars, replace=False))
    data = InMemoryData(survey, rows)
    was_training = model.training
    model.eval()
    try:
        parts = [data.batch(torch.arange(b, min(b + chunk, len(rows))))[:2]
                 for b in range(0, len(rows), chunk)]
        k = np.concatenate([per_star_coupling(model, flux, ivar) for flux, ivar in parts])
    finally:
        model.train(was_training)
    k = np.median(k[np.isfinite(k).all(1)], axis=0) / np.asarray(model.config.label_std, np.float64)
    return LabelCoupling(float(k[0]), float(k[1]), int(rows.size))


def move_to_labels(latents: pd.DataFrame, labels: pd.DataFrame, coupling: LabelCoupling) -> np.ndarray:
    """z_fe moved from the encoder's Teff/logg to the labels (``latents`` and ``labels`` row
    by row: teff_pred/logg_pred and teff/logg); stars without both labels keep their z_fe."""
    def error(col: str) -> np.ndarray:
        label = pd.to_numeric(labels[col], errors="coerce").to_numpy(np.float64)
        return latents[f"{col}_pred"].to_numpy(np.float64) - label

    dt, dg = error("teff"), error("logg")
    shift = coupling.fe_per_kelvin * dt + coupling.fe_per_dex_logg * dg
    z = latents["z_fe"].to_numpy(np.float64)
    return np.where(np.isfinite(shift), z - shift, z).astype(latents["z_fe"].dtype)


def encode_at_labels(survey: Survey, model: DisentangledVAE, **encode_options) -> Path:
    """``encode_survey(survey, model, **encode_options)`` with z_fe moved to the catalog's
    Teff/logg labels; the coupling goes into the latents' metadata under ``at_labels``. The
    coupling is measured first, so a survey without labels fails before any encoding."""
    from chemlatent.encode.streaming import LatentsWriter, encode_survey
    from chemlatent.io.latents import latents_metadata

    coupling = measure_coupling(model, survey)
    path = encode_survey(survey, model, **encode_options)
    meta = latents_metadata(path)  # encode_survey's provenance, the file's only metadata
    df = pd.read_parquet(path)
    lab = survey.catalog[["star_id", *LABELS]].drop_duplicates("star_id")
    df["z_fe"] = move_to_labels(df, df[["star_id"]].merge(lab, on="star_id", how="left"), coupling)
    with LatentsWriter(path, {**meta, "at_labels": coupling.to_dict()}) as writer:
        writer.write(df)
        return writer.commit()
