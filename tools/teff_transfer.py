"""Does a Teff read from synthetic spectra carry over to real ones? tools/teff_transfer.py SYNTH REAL.

SYNTH: a generated survey (true Teff in its catalog); REAL: an ingested survey with literature
Teff (e.g. the MILES development half as ``tools/real_stars.py`` ingests it, WORK_DIR/survey).
Fits a gradient-boosted regressor of Teff on the first 40 principal components of the
normalised depth, once on the hydrogen lines' pixels only (H alpha to H delta, +-60 A) and once
on every pixel the real stars cover, on 16,000 synthetic stars; prints the rms error on 4,000
held-out synthetic FGK stars and on the real FGK stars (4000-7000 K), and the real stars' mean
error per Teff bin. A model-free check of the encoder's Teff on real spectra: if no regressor
trained on the generator reads real Teff, the label-free iron zero point cannot be mended by
the encoder alone.
"""
import sys

import numpy as np
from sklearn.decomposition import PCA
from sklearn.ensemble import HistGradientBoostingRegressor

from chemlatent.io.store import Survey

BALMER_VACUUM = (6564.6, 4862.7, 4341.7, 4102.9)
TEFF_BINS = [(4000, 4750), (4750, 5500), (5500, 6250), (6250, 7001)]
N_FIT, N_TEST = 16000, 4000


def depth(flux: np.ndarray, ivar: np.ndarray, pixels: np.ndarray) -> np.ndarray:
    d = 1.0 - flux[:, pixels].astype(np.float32)
    d[ivar[:, pixels] <= 0] = 0.0
    return d


def main(synth_dir: str, real_dir: str) -> None:
    synth, real = Survey(synth_dir), Survey(real_dir)
    if not synth.grid.matches(real.grid):
        sys.exit("error: the two surveys are on different wavelength grids")
    if synth.n_stars < N_FIT + N_TEST:
        sys.exit(f"error: {synth_dir} has {synth.n_stars} stars; the check fits {N_FIT} and tests {N_TEST}")
    n = N_FIT + N_TEST
    s, r = synth.read(0, n), real.read(0, real.n_stars)
    teff = synth.catalog.teff.to_numpy()[:n]
    cat = real.catalog
    fgk = ((cat.teff >= 4000) & (cat.teff <= 7000)).to_numpy()
    real_teff = cat.teff.to_numpy()[fgk]
    covered = (r.ivar[fgk] > 0).mean(0) > 0.9
    wave = synth.grid.wave
    balmer = np.zeros(len(wave), bool)
    for line in BALMER_VACUUM:
        balmer |= np.abs(wave - line) < 60
    fit, test = slice(0, N_FIT), slice(N_FIT, n)
    test_fgk = (teff[test] >= 4000) & (teff[test] <= 7000)
    print(f"{synth_dir}: {N_FIT} stars to fit; {real_dir}: {fgk.sum()} FGK stars")
    for name, pixels in (("hydrogen lines", balmer & covered), ("every covered pixel", covered)):
        x, x_real = depth(s.flux, s.ivar, pixels), depth(r.flux[fgk], r.ivar[fgk], pixels)
        pca = PCA(40, random_state=0).fit(x[fit])
        reg = HistGradientBoostingRegressor(max_iter=300, random_state=0)
        reg.fit(pca.transform(x[fit]), teff[fit])
        err_synth = (reg.predict(pca.transform(x[test])) - teff[test])[test_fgk]
        err = reg.predict(pca.transform(x_real)) - real_teff
        bias = " ".join(f"{err[(real_teff >= lo) & (real_teff < hi)].mean():+.0f}" for lo, hi in TEFF_BINS)
        print(f"  {name} ({pixels.sum()} px): synthetic rms {np.sqrt(np.mean(err_synth ** 2)):.0f} K, "
              f"real rms {np.sqrt(np.mean(err ** 2)):.0f} K, real mean error per bin "
              f"(4000-4750 / 4750-5500 / 5500-6250 / 6250-7000 K) {bias}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__.splitlines()[0])
    main(sys.argv[1], sys.argv[2])
