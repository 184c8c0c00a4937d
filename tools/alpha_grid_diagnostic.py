"""Does a model's alpha decoder know [alpha/Fe]? tools/alpha_grid_diagnostic.py MODEL_DIR [SURVEY] [N].

For the first N stars of SURVEY (default data/val50k, 3000 stars) the spectrum's chi2 on the
element windows is computed over 81 values of z_alpha in [-4, 4], with z_fe, z_c (the
encoder's) and Teff/logg (the catalog's, as in training) held fixed. Prints how the per-star
best z_alpha, and the encoder's own z_alpha, correlate with the true [alpha/Fe] (all stars
and [Fe/H] < -1) and [Fe/H]. See docs/model.md ("Curve-of-growth decoders").
"""
import sys

import numpy as np
import torch

from chemlatent.io.store import Survey
from chemlatent.model.evaluation import pearson as r
from chemlatent.model.modelio import load_model
from chemlatent.model.training import InMemoryData


def main() -> None:
    run = sys.argv[1]
    survey = Survey(sys.argv[2] if len(sys.argv) > 2 else "data/val50k")
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 3000
    model = load_model(run).eval()
    rows = np.arange(min(n, survey.n_stars))
    flux, ivar, labels = InMemoryData(survey, rows).batch(torch.arange(rows.size))
    cat = survey.catalog.iloc[rows].reset_index(drop=True)
    grid = torch.linspace(-4, 4, 81)
    with torch.no_grad():
        mu, _, _ = model.encode(flux, ivar)
        y = (labels - torch.tensor(model.config.label_mean)) / torch.tensor(model.config.label_std)
        idx = model.win_all
        chi = []
        for g in grid:
            z = mu.clone()
            z[:, 2] = g
            chi.append((ivar[:, idx] * (flux[:, idx].float() - model.decode(z, y)) ** 2).sum(-1))
        chi = torch.stack(chi, 1)
    best = grid[chi.argmin(1)].numpy()
    enc = mu[:, 2].numpy()
    alpha, feh = cat.alpha_fe.to_numpy(), cat.fe_h.to_numpy()
    mp = feh < -1
    print(f"{run}: {rows.size} stars of {survey.path.name}")
    for name, z in (("best", best), ("encoder", enc)):
        print(f"{name} z_alpha: r with [alpha/Fe] {r(z, alpha):+.3f} "
              f"([Fe/H] < -1: {r(z[mp], alpha[mp]):+.3f}), with [Fe/H] {r(z, feh):+.3f}")
    print(f"best z_alpha on the grid's edge: {np.mean(np.abs(best) > 3.9):.3f} of the stars")
    print(f"median chi2 range over the grid {np.median((chi.max(1).values - chi.min(1).values).numpy()):.0f}")


if __name__ == "__main__":
    main()
