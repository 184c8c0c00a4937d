"""How well the refit's targets read the abundances: tools/refine_targets.py MODEL SURVEY [STARS].

For the first STARS (default 1000) stars of SURVEY (a generated survey, or any survey whose
catalog has fe_h, c_fe and alpha_fe), prints r(z, truth) for Fe / C / alpha of the encoder's
mean and of the latents refined against MODEL's decoders with `train`'s refinement settings
(chemlatent.model.train_defaults.default_options: 60 Adam steps from the encoder's guess, the
prior centred on the encoder's mean, Teff/logg within 0.1 standardised units of the stars'
labels). These refined latents are what `train` refits the encoder to, so they bound what
the refit can learn. DETACHED=1 in the environment reproduces the refinement before "Refinement follows the
whole chi2" (docs/model.md): inside the line decoders another group's abundance input reaches
a line detached, as in training, so z_alpha's steps ignore what it does to the iron,
hydrogen and carbon lines.
"""
import os
import sys
import time

import numpy as np
import torch
from decoder_bias import r_with_truth  # tools/ is on the path when run as a script

from chemlatent.io.store import Survey
from chemlatent.model.latent_range import encoded_means
from chemlatent.model.lines import LineDecoder
from chemlatent.model.modelio import load_model
from chemlatent.model.refine import RefineOptions, encoder_mean, refine_rows
from chemlatent.model.train_defaults import default_options
from chemlatent.model.training import InMemoryData


def read(z: np.ndarray, truth: np.ndarray) -> str:
    """' / '-joined r of each latent with its abundance (decoder_bias.r_with_truth), three decimals."""
    return " / ".join(f"{r:.3f}" for r in r_with_truth(z, truth))


def detach_other_groups() -> None:
    """Every line decoder's optics as in training, whatever the caller asks."""
    optics = LineDecoder._optics
    LineDecoder._optics = lambda self, u, z_fe_sg, w, selective=True: optics(self, u, z_fe_sg, w, True)


def main(model_dir: str, survey_dir: str, stars: int = 1000) -> None:
    model = load_model(model_dir).eval()
    survey = Survey(survey_dir)
    data = InMemoryData(survey, np.arange(min(stars, survey.n_stars)))
    rows = torch.arange(len(data))
    truth = survey.catalog.iloc[data.rows][["fe_h", "c_fe", "alpha_fe"]].to_numpy()
    centre = encoder_mean(model, data.batch, rows)
    mu = encoded_means(model, data.batch, rows)
    t0 = time.perf_counter()
    train = default_options()
    opts = RefineOptions(steps=train.refine_steps, prior_mean=centre if train.refine_centred else None,
                         nuisance_sigma=train.refine_nuisance_sigma)
    z = refine_rows(model, data.batch, rows, opts, at_labels=train.refine_at_labels)
    print(f"{len(data)} stars of {survey_dir}, r Fe / C / alpha: encoder {read(mu, truth)}, "
          f"refined {read(z, truth)} ({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    if os.environ.get("DETACHED") == "1":
        detach_other_groups()
    main(*(kind(v) for kind, v in zip((str, str, int), sys.argv[1:])))
