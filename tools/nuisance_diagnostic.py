"""How much the encoder's Teff/logg costs: tools/nuisance_diagnostic.py MODEL SURVEY [STARS] [STEPS].

On the first STARS (default 2000) stars of a survey with true labels (never the training
survey): the encoder's Teff/logg error; the reduced chi2 of the decoders per Teff bin at the
encoder's z, with the nuisance w from the encoder and from the true Teff/logg (the decoders
were trained with the true ones: teacher forcing); and Pearson r of z with the true
abundances for the encoder, for z refined against the decoders at the encoder's w (held within
0.1) and at the true Teff/logg (chemlatent.model.refine, STEPS Adam steps, default 60).
docs/model.md, "Hydrogen, and the labels".
"""
import sys

import numpy as np
import torch

from chemlatent.io.store import Survey
from chemlatent.model.modelio import load_model
from chemlatent.model.refine import RefineOptions, encoder_mean, refine_latents
from chemlatent.model.star_noise import star_noise
from chemlatent.model.training import InMemoryData
from chemlatent.model.vae import standardised_labels


def pearson(z: np.ndarray, truth: np.ndarray) -> str:
    return " / ".join(f"{np.corrcoef(z[:, i], truth[:, i])[0, 1]:.3f}" for i in range(3))


def main(model_dir: str, survey_dir: str, n: int = 2000, steps: int = 60) -> None:
    sv, model = Survey(survey_dir), load_model(model_dir).eval()
    data = InMemoryData(sv, np.arange(min(n, sv.n_stars)))
    flux, ivar, labels = data.batch(torch.arange(len(data)))
    cat = sv.catalog.iloc[data.rows]
    truth = cat[["fe_h", "c_fe", "alpha_fe"]].to_numpy()
    w_true = standardised_labels(model, labels)
    with torch.no_grad():
        mu, _, w = model.encode(flux, ivar)
        sigma, idx = star_noise(ivar), model.win_all
        f, iv = flux[:, idx], ivar[:, idx]
        chi = {name: ((iv * (f - model.decode(mu, ww, selective=False, sigma=sigma)) ** 2).sum(-1)
                      / (iv > 0).sum(-1)).numpy() for name, ww in (("encoder", w), ("true", w_true))}
    err = (w - w_true).std(0) * torch.tensor(model.config.label_std)
    print(f"{len(data)} stars; encoder's Teff/logg error (rms): {err[0]:.0f} K, {err[1]:.2f} dex")
    print("reduced chi2 at the encoder's z (median), Teff bin: with the encoder's Teff/logg | the true")
    teff = cat.teff.to_numpy()
    for lo in range(4000, 7000, 500):
        m = (teff >= lo) & (teff < lo + 500)
        if m.any():
            print(f"  {lo}-{lo + 500} K ({m.sum()} stars): {np.median(chi['encoder'][m]):.2f} | "
                  f"{np.median(chi['true'][m]):.2f}")
    centre = encoder_mean(model, data.batch, torch.arange(len(data)))
    opts = RefineOptions(steps=steps, prior_mean=centre, nuisance_sigma=0.1)
    print(f"r Fe / C / alpha, encoder: {pearson(mu.numpy(), truth)}")
    at_encoder = refine_latents(model, flux, ivar, opts).numpy()
    print(f"  refined at the encoder's Teff/logg: {pearson(at_encoder, truth)}")
    at_labels = refine_latents(model, flux, ivar, opts, labels).numpy()
    print(f"  refined at the true Teff/logg: {pearson(at_labels, truth)}")


if __name__ == "__main__":
    a = sys.argv[1:]
    main(a[0], a[1], *(int(v) for v in a[2:4]))
