"""What kind of error the decoders' best fit makes: tools/best_fit_structure.py MODEL [STARS] [SNR].

Regenerates STARS (default 1500) stars of the evaluation survey's seed at S/N = SNR (default
1000), refines each against MODEL's decoders at its true Teff/logg (tools/decoder_bias.py) and
prints (1) r of each axis with the truth, (2) on half the stars the truth fitted from the three
latents, linearly and with a cubic in Teff/logg and z x Teff/logg terms too, scored on the
other half (a calibration with labels: how much of the error is a smooth zero point), (3)
alpha's error per [Fe/H] bin. A diagnosis on our own generator only.
"""
import sys
import tempfile
from pathlib import Path

import numpy as np
from decoder_bias import r_with_truth, refine, survey_at_snr  # tools/ is on the path when run as a script

from chemlatent.model.modelio import load_model


def held_out_r(x: np.ndarray, y: np.ndarray, half: np.ndarray) -> float:
    """r on ~half of the least-squares fit of y from the columns of x on half."""
    b, *_ = np.linalg.lstsq(x[half], y[half], rcond=None)
    return float(np.corrcoef(x[~half] @ b, y[~half])[0, 1])


def main(model_dir: str, n: int = 1500, snr: float = 1000.0) -> None:
    model = load_model(model_dir).eval()
    with tempfile.TemporaryDirectory() as tmp:
        survey = survey_at_snr(Path(tmp) / "q", n, 424242, snr)
        z, truth, *_ = refine(model, survey)
        cat = survey.catalog
    z = z.numpy().astype(np.float64)
    print(f"{n} stars at S/N {snr:g}, best fit: r Fe / C / alpha "
          f"{' / '.join(f'{v:.3f}' for v in r_with_truth(z, truth))}")
    t, g = (cat.teff.to_numpy() - 5000) / 1000, (cat.logg.to_numpy() - 3) / 1.5
    tg = [t, g, t * t, g * g, t * g, t ** 3, g ** 3, t * t * g, t * g * g]
    half = np.random.default_rng(0).permutation(n) < n // 2
    for i, name in enumerate(("Fe", "C", "alpha")):
        zi, one = z[:, i], np.ones(n)
        linear = held_out_r(np.c_[one, z], truth[:, i], half)
        smooth = held_out_r(np.stack([one, *z.T, *tg, zi * t, zi * g, z[:, 0] * t, z[:, 0] * g,
                                      zi * zi, z[:, 0] ** 2], 1), truth[:, i], half)
        print(f"  {name}: held-out r, linear in the three latents {linear:.3f}; with a smooth zero point in "
              f"Teff/logg/z {smooth:.3f}")
    b = np.polyfit(z[:, 2], truth[:, 2], 1)
    err = np.polyval(b, z[:, 2]) - truth[:, 2]
    feh = truth[:, 0]
    for lo, hi in ((-4, -2), (-2, -1), (-1, -0.5), (-0.5, 1)):
        m = (feh >= lo) & (feh < hi)
        if m.sum() > 5:
            print(f"  alpha error at [Fe/H] {lo}..{hi}: {m.sum()} stars, mean {err[m].mean():+.3f}, "
                  f"sd {err[m].std():.3f} dex")


if __name__ == "__main__":
    main(*(kind(v) for kind, v in zip((str, int, float), sys.argv[1:])))
