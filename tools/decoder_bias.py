"""How far the decoders alone are from the survey: tools/decoder_bias.py MODEL [STARS] [SNR] [SEED].

Generates STARS (default 1000) stars of our generator at S/N = SNR (default 1000, nearly
noiseless; seed SEED, default 424242, the evaluation survey's stars) in a temporary
directory, and refines each star's latents against MODEL's decoders at its true Teff/logg
(chemlatent.model.refine, 200 steps). With the noise gone, what is left between the refined z
and the true abundances is the decoders' own misfit of the generator's physics (and the
latent prior, which such S/N makes negligible): r near 1 says the decoders can represent
the survey and the noise is what limits the axes; r well below 1 says the decoders do. Also
prints the same at the survey's own S/N for the same stars, and at S/N SNR with only the
element windows' pixels in the fit (the others' weight set to 0): a gain there says pixels
outside the windows are where the decoders misfit. Last, where the decoders' best fit misses
at S/N SNR, per 100 A.
"""
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from residual_structure import linear_read  # tools/ is on the path when run as a script

import chemlatent.synth.generator as generator
from chemlatent.model.modelio import load_model
from chemlatent.model.refine import RefineOptions, encoder_mean, refine_latents
from chemlatent.model.star_noise import star_noise
from chemlatent.model.training import InMemoryData
from chemlatent.model.vae import standardised_labels
from chemlatent.spectra.grid import window_masks


def survey_at_snr(path: Path, n: int, seed: int, snr: float | None):
    """The first ``n`` stars of seed ``seed``, at their own S/N (None) or every one at ``snr``."""
    sample = generator.sample_labels

    def fixed_snr(*args, **kwargs):
        labels = sample(*args, **kwargs)
        if snr is not None:
            labels["snr"] = np.float32(snr)
        return labels

    generator.sample_labels = fixed_snr
    try:
        return generator.generate_survey(path, n, seed, progress=False)
    finally:
        generator.sample_labels = sample


def refine(model, survey, steps: int = 200, windows_only: bool = False):
    """Each star's z refined at its true Teff/logg; returns (z, truth, flux, ivar, labels)."""
    data = InMemoryData(survey, np.arange(survey.n_stars))
    flux, ivar, labels = data.batch(torch.arange(len(data)))
    if windows_only:
        masks = window_masks(survey.grid, model.config.windows)
        inside = torch.from_numpy(np.logical_or.reduce(list(masks.values())))
        ivar = ivar * inside
    truth = survey.catalog.iloc[data.rows][["fe_h", "c_fe", "alpha_fe"]].to_numpy()
    centre = encoder_mean(model, data.batch, torch.arange(len(data)))
    z = refine_latents(model, flux, ivar, RefineOptions(steps=steps, prior_mean=centre), labels)
    return z, truth, flux, ivar, labels


def r_with_truth(z: torch.Tensor, truth: np.ndarray) -> np.ndarray:
    return np.array([np.corrcoef(z[:, i], truth[:, i])[0, 1] for i in range(3)])


def misfit_by_region(model, survey, refined: tuple, top: int = 15) -> None:
    """Where the decoders' best fit misses: the rms of flux - model (good pixels) per 100 A,
    largest first, and how it follows each star's alpha error (z_alpha off its linear
    relation with the true [alpha/Fe]), also with Teff, logg and [Fe/H] regressed out of both
    (what is left is not just the same stars being hard for both). ``refined``: what
    refine() returned for ``survey``."""
    z, truth, flux, ivar, labels = refined
    idx = model.win_all
    with torch.no_grad():
        pred = model.decode(z, standardised_labels(model, labels), selective=False, sigma=star_noise(ivar))
    res, iv = (flux[:, idx] - pred).numpy(), ivar[:, idx].numpy()
    wave = survey.grid.wave[idx.numpy()]
    alpha_error = np.abs(linear_read(truth[:, 2:3], z[:, 2].numpy().astype(np.float64))[1])
    cat = survey.catalog
    params = np.c_[cat.teff, cat.logg, cat.fe_h, cat.teff ** 2 / 1e6, cat.teff * cat.fe_h / 1e3]

    def without_params(y: np.ndarray) -> np.ndarray:  # y with Teff, logg and [Fe/H] regressed out
        return linear_read(params, y)[1]

    print(f"  misfit rms {np.sqrt((res ** 2)[iv > 0].mean()):.4f} (flux); per 100 A, largest first:")
    rows = []
    for lo in range(int(wave.min()) // 100 * 100, int(wave.max()) + 1, 100):
        s = (wave >= lo) & (wave < lo + 100)
        if s.any() and (iv[:, s] > 0).any():
            per_star = np.sqrt((iv[:, s] * res[:, s] ** 2).sum(1))
            rows.append((np.sqrt((res[:, s] ** 2)[iv[:, s] > 0].mean()), lo,
                         np.corrcoef(per_star, alpha_error)[0, 1],
                         np.corrcoef(without_params(per_star), without_params(alpha_error))[0, 1]))
    for rms, lo, corr, partial in sorted(rows, reverse=True)[:top]:
        print(f"    {lo}-{lo + 100} A: rms {rms:.4f}, r with the star's alpha error {corr:+.2f} "
              f"({partial:+.2f} at fixed Teff, logg, [Fe/H])")


def main(model_dir: str, n: int = 1000, snr: float = 1000.0, seed: int = 424242) -> None:
    model = load_model(model_dir).eval()
    with tempfile.TemporaryDirectory() as tmp:
        quiet = survey_at_snr(Path(tmp) / "fixed", n, seed, snr)
        own = survey_at_snr(Path(tmp) / "own", n, seed, None)
        runs = ((f"S/N {snr:g}", quiet, False), ("the survey's own S/N", own, False),
                (f"S/N {snr:g}, element windows only", quiet, True))
        refined = {label: refine(model, survey, windows_only=windows_only)
                   for label, survey, windows_only in runs}
        for label, (z, truth, *_) in refined.items():
            print(f"{n} stars at {label}, refined at the true Teff/logg: r Fe / C / alpha "
                  f"{' / '.join(f'{v:.3f}' for v in r_with_truth(z, truth))}")
        print(f"where the decoders miss at S/N {snr:g}:")
        misfit_by_region(model, quiet, refined[runs[0][0]])


if __name__ == "__main__":
    main(*(kind(v) for kind, v in zip((str, int, float, int), sys.argv[1:])))
