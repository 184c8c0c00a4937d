"""Physical-gradient templates: which pixels an element group's abundance moves, and which way.

For each element group the line list predicts a derivative spectrum d flux / d [X/Fe] (for
iron d flux / d [Fe/H] with the ratios fixed, i.e. all metals together) that depends on
Teff and logg. Rendering it with the generator's line list and physics on a Teff-logg grid
gives templates; training can then tie the derivative of each decoder's output with respect
to its own latent to its template's shape (as PhDLspec, Wu et al. 2026, does), so that
z_alpha can only move what more alpha moves (docs/model.md, "Physical gradients").

Only Teff and logg select a template (the labels training already uses); the templates are
normalised, so the unknown metallicity changes their size, not their shape. What does not
depend much on metallicity is the size of one group's derivative *relative to iron's* (alpha
to iron 1.0-1.2 from [Fe/H] -2.5 to 0): the optional units term ties each decoder's
derivative norm to iron's in that ratio, so that one unit of z_alpha or z_c means as many dex
as one unit of z_fe (docs/model.md, "Units from the line list").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from chemlatent.spectra.grid import ELEMENT_GROUPS, WavelengthGrid

TEFF_NODES = np.arange(3600.0, 7601.0, 250.0)
LOGG_NODES = np.arange(0.0, 5.01, 0.5)
STEP_DEX = 0.2
REFERENCE = {"fe_h": -0.8, "alpha_fe": 0.2, "c_fe": 0.0}
DIRECTIONS = {"fe": {"fe_h": 1.0}, "c": {"c_fe": 1.0}, "alpha": {"alpha_fe": 1.0}}


def render_derivatives(grid: WavelengthGrid, teff: np.ndarray, logg: np.ndarray,
                       n_draws: int = 3) -> dict[str, np.ndarray]:
    """d flux / d dex per group at each (teff, logg) pair: (n, P) float32, averaged over a few
    noiseless stars (their per-element scatter and pseudo-continua differ)."""
    from chemlatent.synth.generator import Generator
    from chemlatent.synth.populations import sample_labels

    gen = Generator(0, grid)
    n = teff.size
    out = {g: np.zeros((n, grid.npix), np.float64) for g in ELEMENT_GROUPS}
    for d in range(n_draws):
        lab = sample_labels(0, np.arange(d * n, (d + 1) * n))
        lab["teff"] = teff.astype(np.float32)
        lab["logg"] = logg.astype(np.float32)
        lab["snr"] = np.float32(1e5)
        lab["rv_residual"] = np.float32(0.0)
        lab["vmicro"] = np.float32(1.5)
        for col, v in REFERENCE.items():
            lab[col] = np.float32(v)
        for g, direction in DIRECTIONS.items():
            fluxes = []
            for sign in (1.0, -1.0):
                moved = lab.copy()
                for col, scale in direction.items():
                    moved[col] = (moved[col] + sign * scale * STEP_DEX).astype(np.float32)
                flux, _ = gen.render(moved)
                fluxes.append(flux.astype(np.float64))
            out[g] += (fluxes[0] - fluxes[1]) / (2 * STEP_DEX)
    return {g: (v / n_draws).astype(np.float32) for g, v in out.items()}


@dataclass
class GradientTemplates:
    """Unit-norm derivative templates on a model's window pixels, one per Teff-logg node."""

    teff: np.ndarray  # node values
    logg: np.ndarray
    templates: dict[str, torch.Tensor]  # group -> (n_teff * n_logg, n_window_pixels)
    # group -> (n_nodes,) log of the group's derivative norm over iron's (0 for iron)
    log_ratio: dict[str, torch.Tensor]

    @classmethod
    def build(cls, grid: WavelengthGrid, window_pixels: np.ndarray) -> GradientTemplates:
        tt, gg = np.meshgrid(TEFF_NODES, LOGG_NODES, indexing="ij")
        der = render_derivatives(grid, tt.ravel(), gg.ravel())
        temps, norms = {}, {}
        for g in ELEMENT_GROUPS:
            t = torch.from_numpy(der[g][:, window_pixels])
            norms[g] = t.norm(dim=1).clamp_min(1e-8)
            temps[g] = t / norms[g][:, None]
        ratio = {g: torch.log(norms[g] / norms["fe"]) for g in ELEMENT_GROUPS}
        return cls(TEFF_NODES.copy(), LOGG_NODES.copy(), temps, ratio)

    def node_index(self, teff: torch.Tensor, logg: torch.Tensor) -> torch.Tensor:
        """The nearest node of each star (teff, logg in physical units)."""
        step_t = float(self.teff[1] - self.teff[0])
        step_g = float(self.logg[1] - self.logg[0])
        i = ((teff - float(self.teff[0])) / step_t).round().clamp(0, self.teff.size - 1).long()
        j = ((logg - float(self.logg[0])) / step_g).round().clamp(0, self.logg.size - 1).long()
        return i * self.logg.size + j

    def to(self, device) -> GradientTemplates:
        return GradientTemplates(self.teff, self.logg, {g: t.to(device) for g, t in self.templates.items()},
                                 {g: r.to(device) for g, r in self.log_ratio.items()})


def gradient_alignment(model, z: torch.Tensor, w: torch.Tensor, node: torch.Tensor,
                       templates: GradientTemplates, eps: float = 0.1,
                       units_weight: float = 0.0) -> torch.Tensor:
    """Per star, sum over the groups of 1 - cos(d model flux / d z_g, template_g): 0 when each
    latent moves exactly the pixels its element moves, the way it moves them. With
    ``units_weight`` > 0, plus that weight times the squared log error of each non-iron
    group's derivative norm relative to iron's (its template's ratio): 0 when a unit of every
    latent means the same number of dex. z and w are held fixed (only the decoders learn)."""
    z = z.detach()
    w = w.detach()
    base = model.decode(z, w, selective=False)
    loss = torch.zeros(z.shape[0], device=z.device)
    log_norm = {}
    for k, g in enumerate(ELEMENT_GROUPS):
        step = torch.zeros_like(z)
        step[:, k] = eps
        jac = (model.decode(z + step, w, selective=False) - base) / eps
        t = templates.templates[g][node]
        norm = jac.norm(dim=-1)
        cos = (jac * t).sum(-1) / (norm * t.norm(dim=-1)).clamp_min(1e-8)
        loss = loss + (1.0 - cos)
        log_norm[g] = torch.log(norm.clamp_min(1e-8))
    if units_weight > 0:
        for g in ELEMENT_GROUPS:
            if g != "fe":
                err = log_norm[g] - log_norm["fe"] - templates.log_ratio[g][node]
                loss = loss + units_weight * err * err
    return loss
