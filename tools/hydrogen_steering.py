"""Whether the hydrogen lines should steer a fit of z:
tools/hydrogen_steering.py MODEL [STARS] [SNR] [SETTINGS].

Generates the first STARS (default 800) stars of the evaluation survey's seed (424242) at
S/N = SNR (default 0: each star's own S/N) and refines each star's z against MODEL's decoders
from its Teff/logg labels (chemlatent.model.refine) for every setting in SETTINGS
(semicolon-separated "steps,nuisance_sigma", default "200,0;60,0;60,0.1"), once with the
hydrogen lines steering z (chemlatent.model.lines.HYDROGEN_STEERS, the behaviour before
docs/model.md "Hydrogen steers no abundance") and once without, and once steering but with
every pixel within 10 of a hydrogen line left out of the fit; prints r of each refined latent
with the truth and the alpha error's scatter below and above [Fe/H] = -2.
"""
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from decoder_bias import r_with_truth, survey_at_snr  # tools/ is on the path when run as a script

import chemlatent.model.lines as lines
from chemlatent.model.modelio import load_model
from chemlatent.model.refine import RefineOptions, encoder_mean, refine_latents
from chemlatent.model.training import InMemoryData
from chemlatent.spectra.grid import DEFAULT_GRID
from chemlatent.spectra.linelist import load_linelist


def far_from_hydrogen(npix: int, pixels: int = 10) -> torch.Tensor:
    """1 on the grid's pixels more than ``pixels`` from every hydrogen line, else 0."""
    ll = load_linelist()
    centres = DEFAULT_GRID.pixel_of(ll.wave[np.asarray(ll.element) == "H"])
    far = np.abs(np.arange(npix)[:, None] - centres[None, :]).min(1) > pixels
    return torch.from_numpy(far.astype(np.float32))


def alpha_scatter(z: torch.Tensor, truth: np.ndarray) -> tuple[float, float]:
    """Scatter of [alpha/Fe] about its linear fit on z_alpha, below and above [Fe/H] = -2."""
    za = z[:, 2].numpy()
    res = truth[:, 2] - np.polyval(np.polyfit(za, truth[:, 2], 1), za)
    poor = truth[:, 0] < -2
    return float(res[poor].std()), float(res[~poor].std())


def main(model_dir: str, n: int = 800, snr: float = 0.0, settings: str = "200,0;60,0;60,0.1") -> None:
    model = load_model(model_dir).eval()
    with tempfile.TemporaryDirectory() as tmp:
        survey = survey_at_snr(Path(tmp) / "s", n, 424242, snr or None)
        data = InMemoryData(survey, np.arange(survey.n_stars))
        flux, ivar, labels = data.batch(torch.arange(len(data)))
        truth = survey.catalog.iloc[data.rows][["fe_h", "c_fe", "alpha_fe"]].to_numpy()
        centre = encoder_mean(model, data.batch, torch.arange(len(data)))
        for setting in settings.split(";"):
            steps, sigma = setting.split(",")
            opts = RefineOptions(steps=int(steps), nuisance_sigma=float(sigma), prior_mean=centre)
            for steers, weights, how in ((True, ivar, "steers"), (False, ivar, "detached"),
                                         (True, ivar * far_from_hydrogen(survey.grid.npix), "masked")):
                lines.HYDROGEN_STEERS = steers
                try:
                    z = refine_latents(model, flux, weights, opts, labels)
                finally:
                    lines.HYDROGEN_STEERS = False
                r = r_with_truth(z, truth)
                poor, rich = alpha_scatter(z, truth)
                print(f"S/N {snr or 'own'}, {steps} steps, nuisance sigma {sigma}, hydrogen "
                      f"{how}: r Fe / C / alpha "
                      f"{' / '.join(f'{v:.3f}' for v in r)}; alpha scatter {poor:.3f} dex below "
                      f"[Fe/H] = -2, {rich:.3f} above", flush=True)


if __name__ == "__main__":
    main(*(kind(v) for kind, v in zip((str, int, float, str), sys.argv[1:])))
