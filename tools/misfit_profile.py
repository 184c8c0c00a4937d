"""Whether the decoders' misfit is a bias common to the stars: tools/misfit_profile.py MODEL [STARS] [SNR].

Generates STARS (default 300) stars of the evaluation survey's seed (424242) at S/N = SNR
(default 1000; 0: each star's own S/N), refines each star's latents against MODEL's decoders
at its true Teff/logg (as tools/decoder_bias.py), and prints per region the rms of flux -
model and its mean over the stars (a mean near the rms: the same misfit in every star, a bias
the decoders could learn; a mean near 0: star-to-star scatter), for cool, intermediate and
warm stars.
"""
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from decoder_bias import refine, survey_at_snr  # tools/ is on the path when run as a script

from chemlatent.model.modelio import load_model
from chemlatent.model.star_noise import star_noise
from chemlatent.model.vae import standardised_labels

REGIONS = ((3900, 4000), (4000, 4100), (4200, 4300), (5100, 5200), (8500, 8700), (10000, 10100),
           (10300, 10400))
TEFF_GROUPS = (("Teff < 4800", 0, 4800), ("4800-5800", 4800, 5800), ("Teff >= 5800", 5800, 1e9))


def main(model_dir: str, n: int = 300, snr: float = 1000.0) -> None:
    model = load_model(model_dir).eval()
    with tempfile.TemporaryDirectory() as tmp:
        survey = survey_at_snr(Path(tmp) / "stars", n, 424242, snr if snr > 0 else None)
        z, _, flux, ivar, labels = refine(model, survey)
        idx = model.win_all
        with torch.no_grad():
            w = standardised_labels(model, labels)
            pred = model.decode(z, w, selective=False, sigma=star_noise(ivar))
        res, good = (flux[:, idx] - pred).numpy(), ivar[:, idx].numpy() > 0
        wave = survey.grid.wave[idx.numpy()]
        teff = survey.catalog.teff.to_numpy()
    at = "their own S/N" if snr <= 0 else f"S/N {snr:g}"
    print(f"{n} stars at {at}, flux - model: rms / mean over stars")
    print("region (A)    " + "".join(f"{name:>22}" for name, _, _ in TEFF_GROUPS))
    for lo, hi in REGIONS:
        s = (wave >= lo) & (wave < hi)
        if not s.any():
            continue
        cells = []
        for _, t0, t1 in TEFF_GROUPS:
            r, g = res[(teff >= t0) & (teff < t1)][:, s], good[(teff >= t0) & (teff < t1)][:, s]
            cells.append(f"{np.sqrt((r[g] ** 2).mean()):.4f} / {r[g].mean():+.4f}" if g.any() else "-")
        print(f"{lo}-{hi:<9}" + "".join(f"{c:>22}" for c in cells))


if __name__ == "__main__":
    main(*(kind(v) for kind, v in zip((str, int, float), sys.argv[1:])))
