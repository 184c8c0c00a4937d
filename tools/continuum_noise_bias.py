"""How far noise moves the survey's continuum: tools/continuum_noise_bias.py [STARS] [DRAWS].

Renders the first STARS (default 60) stars of the evaluation survey's seed (424242) without
noise, adds Gaussian noise at several S/N (with the generator's noise profile) DRAWS times
(default 3), and prints the continuum chemlatent.spectra.continuum fits to the noisy spectra
over the one it fits to the noiseless spectrum with the same noise level in its clipping (what
the line decoders' emulated normalisation computes without ``--continuum noisy``): the mean,
in the bluest and reddest tenth of the grid and in the middle third.
"""
import sys

import numpy as np

from chemlatent.spectra.continuum import fit_continuum
from chemlatent.synth.generator import Generator


def main(n: int = 60, draws: int = 3) -> None:
    gen = Generator(seed=424242)
    labels = gen.labels(np.arange(n)).copy()
    labels["snr"] = np.float32(1e5)
    flux, _ = gen.render(labels)
    flux = flux.astype(np.float32)
    profile = gen.ivar_profile.astype(np.float32)
    rng = np.random.default_rng(0)
    p = profile.size
    print("S/N   continuum(noisy) / continuum(noiseless, same clipping) - 1: "
          "mean, blue 10 %, middle third, red 10 %")
    for snr in (10, 20, 40, 100, 1000):
        ivar = np.repeat((snr ** 2 * profile)[None, :], n, 0)
        clean = fit_continuum(flux.copy(), ivar)
        rel = np.mean([fit_continuum(flux + rng.standard_normal(flux.shape).astype(np.float32)
                                     / np.sqrt(ivar), ivar) / clean - 1 for _ in range(draws)], 0)
        print(f"{snr:>5}  {rel.mean():+.4f}  {rel[:, :p // 10].mean():+.4f}  "
              f"{rel[:, p // 3:2 * p // 3].mean():+.4f}  {rel[:, -(p // 10):].mean():+.4f}")


if __name__ == "__main__":
    main(*(int(v) for v in sys.argv[1:]))
