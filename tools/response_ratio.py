"""Units per dex in the decoders' own local fit, and where they put the lines on the curve of
growth: tools/response_ratio.py MODEL_DIR [STARS [SEED]]

For STARS stars drawn like a generator survey of seed SEED (4000-6800 K, noise-free, no RV
shift), the generator's flux change per dex of [Fe/H] (every abundance with it), [C/Fe] and
[alpha/Fe] against the line model's flux change per unit of z_fe, z_c and z_alpha at the
encoder's z: the least-squares 3 x 3 matrix dz / d(label) per star (median printed, overall and
by metallicity). A model consistent with its shared slope s reads 1/s units per dex on the
diagonal and 0 elsewhere. Then each line group's centre optical depth in the model against the
generator's, and the Doppler widths: a model whose lines sit on another part of the curve of
growth than the survey's responds to abundance in other units; and the share of the absorption
the decoders give to the term no abundance moves.
"""
import sys

import numpy as np
import torch

from chemlatent.model.modelio import load_model
from chemlatent.spectra.linelist import band_templates, load_linelist
from chemlatent.spectra.physics import ELEMENT_GROUP
from chemlatent.synth.generator import Generator, species_terms

STEP = 0.2  # dex: well above float16's flux resolution
LABELS = ("fe_h", "c_fe", "alpha_fe")


def render(gen: Generator, lab) -> tuple[torch.Tensor, torch.Tensor]:
    flux, mask = gen.render(lab)
    return torch.from_numpy(flux.astype(np.float32)), torch.from_numpy(gen.ivar(lab, mask))


def pixel_classes(model, gen: Generator) -> dict[str, np.ndarray]:
    """Window pixels by their dominant feature at solar strengths (iron-group, alpha or carbon
    lines, hydrogen, bands) and those with no feature."""
    ll = load_linelist()
    npix = gen.grid.npix
    depth = {k: np.zeros(npix) for k in ("fe", "alpha", "c", "h")}
    for p, el, t in zip(gen.grid.pixel_of(ll.wave), ll.element, ll.log_tau_sun):
        if 0 <= p < npix:
            j = int(round(p))
            depth[ELEMENT_GROUP[el]][max(j - 2, 0):j + 3] += min(10.0 ** t, 3.0)
    stack = np.stack([depth["fe"], depth["alpha"], depth["c"], depth["h"],
                      0.3 * band_templates(gen.grid).sum(0)])[:, model.win_all.numpy()]
    kind, total = np.argmax(stack, 0), stack.sum(0)
    out = {n: (kind == i) & (total >= 0.02) for i, n in enumerate(("fe lines", "alpha lines", "c lines",
                                                                  "hydrogen", "bands"))}
    out["no feature"] = total < 0.02
    return out


def units_matrix(model, gen, lab, flux, ivar, mu, w) -> np.ndarray:
    """dz / d(label) per star (B, 3, 3): rows z_fe, z_c, z_alpha; columns LABELS."""
    win = model.win_all
    sigma = torch.full((len(lab), 1), 1e-3)
    survey, decoders = [], []
    for col in LABELS:
        up, dn = lab.copy(), lab.copy()
        up[col] += STEP
        dn[col] -= STEP
        survey.append((render(gen, up)[0] - render(gen, dn)[0])[:, win] / (2 * STEP))
    for axis in range(3):
        dz = torch.zeros(1, 3)
        dz[0, axis] = 0.05
        decoders.append((model.decode(mu + dz, w, selective=False, sigma=sigma)
                         - model.decode(mu - dz, w, selective=False, sigma=sigma)) / 0.1)
    weight = (torch.from_numpy(gen.ivar_profile)[win].sqrt()[None, :] * (ivar[:, win] > 0))[..., None]
    js, jm = torch.stack(survey, -1) * weight, torch.stack(decoders, -1) * weight
    return torch.linalg.lstsq(jm, js).solution.numpy()


def optical_depths(model, gen, lab, mu, w) -> None:
    """Each line group's model-minus-generator log10 centre optical depth, and Doppler widths."""
    ll = load_linelist()
    pix = gen.grid.pixel_of(ll.wave)
    groups = [ELEMENT_GROUP[e] for e in ll.element]
    on_grid = (pix >= 0) & (pix < gen.grid.npix)
    sel = np.nonzero([g in ("fe", "c", "alpha", "h") and ok for g, ok in zip(groups, on_grid)])[0]
    species, base, dtheta, _, vdop, _ = species_terms(lab, gen.seed)
    survey = (ll.log_tau_sun[None, :] + base[:, species] - ll.chi_exc[None, :] * dtheta[:, None])[:, sel]
    u, zr = model._line_inputs(mu * model.orient, None, False)
    _, log_tau, _, dld, _, _ = model.lines._optics(u.float(), zr.float(), w.float())
    grp, ion = np.array([groups[i] for i in sel]), ll.ion[sel]
    for g in ("fe", "alpha", "c", "h"):
        for i in (1, 2):
            m = (grp == g) & (ion == i)
            if m.any():
                d = log_tau.numpy()[:, m] - survey[:, m]
                slope = np.polyfit(survey[:, m].ravel(), log_tau.numpy()[:, m].ravel(), 1)[0]
                print(f"  {g} {'I' * i:2s} ({m.sum():3d} lines): model - survey log10 tau {d.mean():+.2f} "
                      f"(sd {d.std():.2f}), slope {slope:.2f}")
    ratio = dld.numpy() / (ll.wave[sel][None, :] * vdop[:, species[sel]] / 299792.458)
    print(f"  Doppler width, model / survey: median {np.median(ratio):.2f}")


def abundance_free_share(model, gen, mu, w) -> None:
    """The share of each pixel class's mean optical depth that no abundance moves."""
    dec = model.lines
    u, zr = model._line_inputs(mu * model.orient, None, False)
    free = dec.continuum_depth(dec.trunk(w.float())).numpy()
    lines = dec._render(u.float(), zr.float(), w.float(), groups=False)[1][dec.win_idx].T.numpy()
    parts = []
    for name, sel in pixel_classes(model, gen).items():
        a, b = free[:, sel].mean(), lines[:, sel].mean()
        parts.append(f"{name} {a:.4f} of {a + b:.4f}")
    print("  optical depth no abundance moves, of the total: " + "; ".join(parts))


def main() -> None:
    model = load_model(sys.argv[1]).eval()
    gen = Generator(int(sys.argv[3]) if len(sys.argv) > 3 else 424242)
    lab = gen.labels(np.arange(int(sys.argv[2]) if len(sys.argv) > 2 else 1200)).copy()
    lab["snr"], lab["rv_residual"] = 3000.0, 0.0
    lab = lab[(lab.teff > 4000) & (lab.teff < 6800)].reset_index(drop=True)
    flux, ivar = render(gen, lab)
    np.set_printoptions(precision=2, suppress=True)
    with torch.no_grad():
        mu, _, w = model.encode(flux, ivar)
        units = units_matrix(model, gen, lab, flux, ivar, mu, w)
        s = float(torch.exp(model.lines.log_slope))
        print(f"{len(lab)} stars; shared slope: 1/s = {1 / s:.2f} units per dex")
        print("dz / d(label), rows z_fe, z_c, z_alpha; columns [Fe/H], [C/Fe], [alpha/Fe] (median):")
        print(np.median(units, 0))
        fe = lab.fe_h.to_numpy()
        for lo, hi in ((-3.5, -1.5), (-1.5, -0.5), (-0.5, 0.6)):
            m = (fe >= lo) & (fe < hi)
            print(f"  [Fe/H] {lo}..{hi} ({m.sum()} stars): per dex of [Fe/H] {np.median(units[m], 0)[:, 0]}")
        optical_depths(model, gen, lab, mu, w)
        abundance_free_share(model, gen, mu, w)


if __name__ == "__main__":
    main()
