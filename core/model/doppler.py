"""Physical Doppler widths for the line decoders (``ModelConfig.line_doppler = "physical"``).

At a survey's resolution a line's profile does not show whether it is saturated: a strong
line can be fitted as well by a weak line with a wide Doppler core as by a saturated line with
a narrow one, and the equivalent widths match either way. The two differ in how the line grows
with abundance (linear against flat part of the curve of growth), which is what sets each
latent axis's units per dex; a learned width is free to take the wrong branch, and a model
whose iron lines sit on the wrong branch reads [Fe/H] in other units than the alpha and carbon
lines read theirs (docs/model.md, "The Doppler width sets the units"). So the width is the
classical one (Gray): thermal motion of the line's atom at the line-forming temperature, and
microturbulence from the star's surface gravity,

    v_D = sqrt(2 k T / m + xi^2),  T = 0.85 Teff,  xi = 2.13 - 0.23 log g  km/s,

the microturbulence relation of Kirby et al. (2009, ApJ 705, 328), clipped to 0.5-3 km/s.
"""

from __future__ import annotations

import torch

from chemlatent.spectra.physics import AMU, K_B, LINE_FORMING_T


def microturbulence_kms(logg: torch.Tensor) -> torch.Tensor:
    """Microturbulent velocity (km/s) from log g (Kirby et al. 2009), clipped to 0.5-3."""
    return (2.13 - 0.23 * logg).clamp(0.5, 3.0)


def doppler_width_kms(teff: torch.Tensor, logg: torch.Tensor, mass_amu: torch.Tensor) -> torch.Tensor:
    """Doppler velocity width (km/s) of lines of atoms of mass ``mass_amu`` (L,) for stars of
    ``teff`` and ``logg`` (B, 1): (B, L)."""
    thermal = 2.0 * K_B * LINE_FORMING_T * teff.clamp_min(1000.0) / (mass_amu * AMU) / 1e6
    return torch.sqrt(thermal + microturbulence_kms(logg) ** 2)


def physical_labels(w: torch.Tensor, labels: tuple) -> tuple[torch.Tensor, torch.Tensor]:
    """Teff (K) and log g (B, 1 each) from the standardised labels ``w`` (B, 2) and the
    model's ``labels`` = ((Teff mean, logg mean), (Teff std, logg std))."""
    (t_mean, g_mean), (t_std, g_std) = labels
    return w[:, :1].float() * t_std + t_mean, w[:, 1:2].float() * g_std + g_mean
