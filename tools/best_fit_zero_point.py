"""Where each axis's zero point sits against Teff in the decoders' best fit:
tools/best_fit_zero_point.py MODEL SURVEY [SURVEY ...]

Refines every star of each SURVEY (a synthetic one: it needs the true abundances) against
MODEL's decoders at its true Teff/logg (tools/decoder_bias.py's refine, 200 steps) and prints r
with the truth and z_fe's offset from a line through the truth per 500 K of Teff (in dex of
[Fe/H]). An offset that runs with Teff in this fit, on a nearly noiseless survey too, lies in
the decoders' per-line Teff/logg terms, not in the encoder (docs/model.md, "A third physics")."""

import sys

import numpy as np
from decoder_bias import r_with_truth, refine  # tools/ is on the path when run as a script

from chemlatent.io.store import Survey
from chemlatent.model.modelio import load_model

if __name__ == "__main__":
    model = load_model(sys.argv[1]).eval()
    for path in sys.argv[2:]:
        survey = Survey(path)
        z, truth, *_ = refine(model, survey)
        r = r_with_truth(z, truth)
        z = z.numpy().astype(np.float64)
        slope, icept = np.polyfit(truth[:, 0], z[:, 0], 1)
        offset = (z[:, 0] - (slope * truth[:, 0] + icept)) / slope
        teff = survey.catalog.teff.to_numpy()
        bins = [(lo, offset[(teff >= lo) & (teff < lo + 500)]) for lo in range(3500, 7500, 500)]
        print(f"{path}: r Fe / C / alpha {' / '.join(f'{v:.3f}' for v in r)}; z_fe offset by Teff: "
              + ", ".join(f"{lo}-{lo + 500} K {v.mean():+.2f}" for lo, v in bins if v.size > 20))
