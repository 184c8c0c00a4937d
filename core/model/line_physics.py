"""Line strengths whose Teff/logg dependence is physics shared by every element group
(``train --line-physics shared``, off by default; docs/model.md, "Shared line physics").

With the line decoders' default, each line's strength is a free function of Teff/logg, so
adding any function f(Teff, logg) to z_alpha and taking s f from every alpha line leaves
every spectrum as it was: only the prior and the adversary place z_alpha's zero point at each
Teff/logg. Here a line's log10 optical depth at z = 0 is a constant per line (its gf value and
the like), the Boltzmann factor from its excitation potential, minus log10 of its Doppler width,
plus one continuous-opacity term of Teff/logg shared by every line; each species' ionisation
balance is Saha's, from its ionisation potential and one electron pressure of Teff/logg shared
by every species (plus a constant per species for the partition functions). No term of
Teff/logg belongs to one element group, so z_c's and z_alpha's zero points are fixed by the
line ratios themselves; z_fe's stays with the shared terms.
"""

from __future__ import annotations

import torch
from torch import nn

from chemlatent.spectra.physics import IONISATION_EV, LINE_FORMING_T, LOGG_SUN, TEFF_SUN, log_stage_fraction


def line_forming_theta(teff: torch.Tensor) -> torch.Tensor:
    """theta = 5040 / T of the line-forming layer (0.85 Teff) minus the Sun's, (B, 1)."""
    return 5040.0 / (LINE_FORMING_T * teff.clamp_min(2000.0)) - 5040.0 / (LINE_FORMING_T * TEFF_SUN)


class SharedLinePhysics(nn.Module):
    """Per-line constants and per-species Saha constants; everything else shared. The lines'
    excitation potentials and species are the line decoder's own buffers, passed per call."""

    def __init__(self, n_lines: int, species_elements: list[str]) -> None:
        super().__init__()
        self.line_offset = nn.Parameter(torch.zeros(n_lines))
        # each species' log N_II/N_I at the Sun to start from: the one-layer Saha balance of
        # chemlatent.spectra.physics (log Pe = 1 at 0.85 Teff); the level sets how steeply a
        # neutral line weakens as its element ionises, which a start at 0 would get wrong
        sun = [float(log_stage_fraction(e, 2, TEFF_SUN, LOGG_SUN, 0.0)
                     - log_stage_fraction(e, 1, TEFF_SUN, LOGG_SUN, 0.0)) for e in species_elements]
        self.species_offset = nn.Parameter(torch.tensor(sun, dtype=torch.float32))
        chi_ion = [IONISATION_EV[e] for e in species_elements]
        self.register_buffer("species_chi", torch.tensor(chi_ion, dtype=torch.float32), persistent=False)

    def strength(self, teff: torch.Tensor, opacity: torch.Tensor, doppler_kms: torch.Tensor,
                 line_chi: torch.Tensor) -> torch.Tensor:
        """Each line's log10 tau offset from its line-list strength (B, L): ``teff`` (B, 1), the
        shared opacity term ``opacity`` (B, 1), the lines' Doppler widths (B, L) and excitation
        potentials ``line_chi`` (L,)."""
        return self.line_offset - line_chi * line_forming_theta(teff) + opacity - torch.log10(doppler_kms)

    def ionisation(self, teff: torch.Tensor, log_pe: torch.Tensor,
                   line_species: torch.Tensor) -> torch.Tensor:
        """log10 N_II / N_I of each line's element (B, L), Saha relative to the Sun: 2.5 log T
        - theta chi_ion - log Pe, with the shared electron pressure term ``log_pe`` (B, 1);
        ``line_species`` (L,): each line's species index."""
        t = 2.5 * torch.log10(teff.clamp_min(2000.0) / TEFF_SUN)
        ratio = self.species_offset + t - line_forming_theta(teff) * self.species_chi - log_pe
        return ratio[:, line_species]
