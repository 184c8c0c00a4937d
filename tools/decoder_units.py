"""How many latent units per dex each axis takes, in the encoder and in the decoders' own best
fit: tools/decoder_units.py VAL_DIR MODEL_DIR [STARS [ABLATION]]

For STARS (default 1,500) random stars of a survey with truth labels: the encoder's z, and z
refined against the decoders (150 Adam steps, no prior, Teff/logg held at the truth), each
regressed on [Fe/H], [alpha/Fe], [C/Fe] and a quadratic in Teff/logg. A line model shares one
slope s (dex per unit) across its lines, so a decoder consistent with its own units reads
every axis at ~1/s units per dex. ABLATION (line models) switches a term of the decoders off
for the refinement: no_electrons (the Saha shift, k_e = 0), no_opacity (k_o = 0) or neither.
"""
import sys

import numpy as np
import torch

from chemlatent.io.store import Survey
from chemlatent.model.modelio import load_model
from chemlatent.model.refine import RefineOptions, refine_latents
from chemlatent.model.training import InMemoryData

if __name__ == "__main__":
    survey, model = Survey(sys.argv[1]), load_model(sys.argv[2])
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 1500
    ablation = sys.argv[4] if len(sys.argv) > 4 else ""
    cat = survey.catalog
    rows = np.sort(np.random.default_rng(0).choice(len(cat), min(n, len(cat)), replace=False))
    data = InMemoryData(survey, rows)
    flux, ivar, lab = data.batch(torch.arange(len(rows)))
    with torch.no_grad():
        mu, logvar, _ = model.encode(flux, ivar)
    mean, std = torch.tensor(model.config.label_mean), torch.tensor(model.config.label_std)
    w_true = ((lab - mean) / std).float()
    if ablation in ("no_electrons", "neither"):
        model.lines.electron_response.zero_()
    if ablation in ("no_opacity", "neither"):
        model.lines.opacity_response.zero_()
    encode = model.encode
    model.encode = lambda f, i, bounded=True: (mu, logvar, w_true)  # refine from mu at the true Teff/logg
    refined = refine_latents(model, flux, ivar, RefineOptions(steps=150, prior_weight=0.0)).numpy()
    model.encode = encode
    c = cat.iloc[rows]
    t, g = (c.teff.to_numpy() - 5000) / 800, (c.logg.to_numpy() - 3) / 1.2
    design = np.c_[np.ones(len(c)), c.fe_h, c.alpha_fe, c.c_fe, t, g, t * t, g * g, t * g]
    if getattr(model, "form", None) == "lines":
        s = float(torch.exp(model.lines.log_slope.detach()))
        print(f"shared slope s = {s:.3f} dex per unit: 1/s = {1 / s:.2f} units per dex")
    for name, z in (("encoder", mu.numpy()), ("decoders' best fit", refined)):
        for i, axis in enumerate(("z_fe", "z_c", "z_alpha")):
            coef = np.linalg.lstsq(design, z[:, i], rcond=None)[0]
            fe, al, cf = coef[1:4]
            print(f"{name:>19} {axis:>7}: {fe:+.2f} [Fe/H] {al:+.2f} [alpha/Fe] {cf:+.2f} [C/Fe]")
