"""A prior on the chemical latents conditioned on the known Teff and logg (``prior="conditional"``).

    p(z | w) = N(m(w), 1),   KL = 0.5 * sum (s^2 + (mu - m(w))^2 - 1 - log s^2)

with m a small network of the standardised (Teff, logg) learned with the model. A real
population's abundances depend on where a star sits in the Kiel diagram (metal-poor giants,
the red clump, the thin disc's dwarfs): the standard N(0, 1) prior charges the part of [Fe/H]
that Teff and logg predict, so the latents are pushed to drop it (a z_fe independent of Teff
and logg), and the physics of the decoders must then bend to a wrong metallicity. With the
prior's centre following Teff and logg that part costs nothing; the latents stay the
abundances. Conditioning the prior on an observed variable is what makes a VAE's latents
identifiable (Khemakhem et al. 2020, iVAE). It is a training device, not part of the saved
model (the decoders and encoder do not use it).
"""

from __future__ import annotations

import torch
from torch import nn


class CentredPrior(nn.Module):
    """``prior="centred"``: z ~ N(m, 1) per star with one learned centre m (3,).

    The line decoders' physics (ionisation balance, continuous opacity) fixes where z = 0 is,
    so a survey's stars can sit away from the origin (z_fe near -2.3 on our generator). A
    N(0, 1) prior then pulls every star toward the origin, the weakly measured ones (metal-poor,
    low S/N) the most, and that pull reappears in the other axes: z_fe pulled toward solar makes
    the alpha lines too strong for the fit, so z_alpha drops for exactly those stars (an iron
    share in z_alpha). A learned centre (the empirical-Bayes prior) keeps the per-star shrinkage
    without the offset."""

    def __init__(self) -> None:
        super().__init__()
        self.centre = nn.Parameter(torch.zeros(3))

    def forward(self, mu: torch.Tensor) -> torch.Tensor:
        """Prior centres (B, 3) for posterior means ``mu`` (B, 3)."""
        return self.centre.expand(mu.shape[0], 3)


class PopulationPrior(nn.Module):
    """``prior="population"``: z_fe ~ N(0, 1); z_c and z_alpha ~ N(m(z_fe), 1), m learned.

    A population's ratios follow its metallicity ([alpha/Fe] falls from the halo's plateau to
    the thin disc, carbon-enhanced stars are metal-poor). Under N(0, 1) for every axis the
    cheapest z_alpha mixes in some z_fe to cancel that trend (its batch variance falls), which
    is an [alpha/Fe] axis that follows iron; with the centre of z_c and z_alpha a learned
    function of z_fe (detached: the prior never moves iron) the trend costs nothing. The
    paper's prior fixes the correlation (rho(Fe, alpha) = -0.3); here the curve is learned."""

    def __init__(self, hidden: int = 16) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(1, hidden), nn.SiLU(), nn.Linear(hidden, 2))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, mu: torch.Tensor) -> torch.Tensor:
        """Prior centres (B, 3) for posterior means ``mu`` (B, 3)."""
        m = self.net(mu[:, :1].detach().float())
        return torch.cat([torch.zeros_like(m[:, :1]), m], -1)


class ConditionalPrior(nn.Module):
    """m(w): the prior's centre for each chemical axis, from standardised (Teff, logg)."""

    def __init__(self, n_w: int = 2, hidden: int = 32) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(n_w, hidden), nn.SiLU(), nn.Linear(hidden, hidden),
                                 nn.SiLU(), nn.Linear(hidden, 3))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, w: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
        """Prior centres (B, 3): m(w) where Teff/logg are known (``known``), 0 elsewhere."""
        return torch.where(known[:, None], self.net(w.float()), torch.zeros((), device=w.device))
