"""Line-by-line decoders (``decoder_form="lines"``): the model spectrum built from the line list.

Every atomic line of the line list is one Voigt line on the curve of growth, with centre
optical depth (log10, dex)

    log10 tau_l = b_l(w) + s * u_g(l) + log10 f_ion(l)(R_sp(l)(w) - k_e m) - k_o m

w is (Teff, logg); u the abundance input of the line's element group (z_fe for the iron peak
and the other non-alpha metals, z_fe + z_alpha for O, Mg, Si, S, Ca and Ti, z_fe + z_c for
carbon); s one slope for every line (dex per unit of z); m = s (z_fe + w_alpha z_alpha) the
metallicity of the electron donors in dex (iron-peak and alpha elements, w_alpha learned).
The last two terms are the classical line-formation response to metallicity (Gray): more
metals give more electrons, so the H- continuous opacity rises (-k_o m) and the ionisation
balance shifts toward neutrals (Saha: R_sp = log N_II / N_I of the line's species at m = 0,
f_I = 1 / (1 + 10**R), f_II = 10**R / (1 + 10**R)); k_e and k_o are two numbers shared by
every line of every group, R_sp one function of Teff/logg per species. Molecular bands
follow their atoms (CH: carbon, C2: twice carbon, CN: carbon and iron, MgH: alpha, TiO:
twice alpha). Teff and logg alone set each line's strength at u = 0 (b_l), the Doppler width
and the damping, and a term per window pixel that no abundance moves (continuum placement,
what the line list lacks). The equivalent widths go through the Gaussian line-spread function
(its width is learned), damped lines get Lorentzian wings, and the flux is exp(-sum of the
optical depths).

So the chemistry enters only through the line list's element assignments and physics shared
by all lines: z_alpha can move the alpha lines alone, by as many dex per unit as z_fe moves
the iron lines, and a z_alpha that copied iron would deepen the alpha lines without the iron
lines. The per-line strengths, widths and the Teff/logg dependence are learned, so the line
list needs the right lines, not the right oscillator strengths (tested on surveys whose line
strengths are perturbed).

Where the lines sit on the curve of growth sets each axis's units per dex, and an unresolved
line does not show it, so three options pin it (docs/model.md, "What set the line decoders'
units"): physical Doppler widths from Teff/logg instead of a learned one
(``doppler_labels``), an abundance-free term smooth between knots instead of free per pixel
(``smooth_continuum``), and line strengths anchored to the line list's contrast
(``anchored_strengths``, measured and left off).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from chemlatent.model.doppler import doppler_width_kms, physical_labels
from chemlatent.model.line_continuum import ContinuumEmulator
from chemlatent.model.line_physics import SharedLinePhysics, line_forming_theta
from chemlatent.spectra.continuum import N_ITER
from chemlatent.spectra.grid import WavelengthGrid
from chemlatent.spectra.linelist import BANDS, MOLECULES, band_templates, load_linelist, lsf_sigma_pixels
from chemlatent.spectra.physics import ELEMENT_GROUP, MASS_AMU

LN10 = math.log(10.0)
C_KMS = 299792.458
# the closed-form Voigt curve of growth: fitted to physics.curve_of_growth_table
SOFT_MIN, SOFT_MAX = 2.3555, 2.4317
LN_SQRT_PI = 0.5723649429247001  # ln sqrt(pi)
LN_FLAT = 0.7653471805599453  # ln 2 + 0.0722 (fitted)
LN_DAMPED = 0.9793206599679245  # ln(2 pi^(1/4))
LSF_TAPS = 6  # pixels each side of a line centre for the Gaussian line-spread function
WING_TAPS = 24  # pixels each side for the Lorentzian wings of damped lines
# pixels each side for hydrogen's wings (``hydrogen=True``): Stark-broadened Balmer and Paschen
# lines of F and G stars reach ~60 pixels at R ~ 2000, and a profile cut at WING_TAPS puts
# their whole wing into its inner pixels
HYDROGEN_TAPS = 128
# ``wing_cut``: a damped line's wing is rendered out to WING_CUT Lorentzian half widths (plus
# the line-spread function), where its depth is ~1/150 of the centre's; beyond, the continuum
# normalisation absorbs it. Resonance lines this strong at the Sun (log10 tau0 + log10 a)
# reach past WING_TAPS and get HYDROGEN_TAPS (Ca II H and K)
WING_CUT = 12.0
LONG_WING_STRENGTH = 4.0
# True: the hydrogen lines' response to the electron donors' metallicity steers a fit of z
# (refinement) as every other line's does, the behaviour before "Hydrogen steers no abundance"
# (docs/model.md); kept for comparisons (tools/hydrogen_steering.py), never set in the product
HYDROGEN_STEERS = False
# element group -> index of the abundance input (0: z_fe, 1: z_fe + z_c, 2: z_fe + z_alpha)
GROUP_INPUT = {"fe": 0, "c": 1, "alpha": 2}


def voigt_log_width(x: torch.Tensor, la: torch.Tensor) -> torch.Tensor:
    """ln(W / Doppler width) of a Voigt line of centre optical depth 10**x and damping 10**la:
    a soft minimum of the weak-line law and a soft maximum of the Doppler-saturated and damped
    laws (1% rms against the tabulated curve of growth for la <= -1)."""
    y = x * LN10
    weak = LN_SQRT_PI + y
    flat = LN_FLAT + 0.5 * torch.log(nn.functional.softplus(y) + 1e-12)
    damped = LN_DAMPED + 0.5 * (la * LN10 + y)
    saturated = torch.logaddexp(SOFT_MAX * flat, SOFT_MAX * damped) / SOFT_MAX
    return -torch.logaddexp(-SOFT_MIN * weak, -SOFT_MIN * saturated) / SOFT_MIN


def donor_metallicity(line_src: torch.Tensor, z_fe: torch.Tensor, z_fe_sg: torch.Tensor,
                      z_alpha: torch.Tensor, alpha_electrons: torch.Tensor,
                      other: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """Metallicity of the electron donors in units of z (B, L), per line of source ``line_src``
    (0 iron, 1 carbon, 2 alpha, 3 hydrogen): each line's own group's latent with its gradient,
    the others' through ``other`` (detached in training: a line trains only its own group's
    axis); hydrogen's always detached unless HYDROGEN_STEERS: no fit of z follows the hydrogen
    lines (docs/model.md, "Hydrogen steers no abundance")."""
    fe_in = torch.where(line_src == 0, z_fe, z_fe_sg)
    alpha_in = torch.where(line_src == 2, z_alpha, other(z_alpha))
    if not HYDROGEN_STEERS:
        hyd = line_src == 3
        fe_in, alpha_in = (torch.where(hyd, t.detach(), t) for t in (fe_in, alpha_in))
    return fe_in + alpha_electrons * alpha_in


def softplus10(x: torch.Tensor) -> torch.Tensor:
    """log10(1 + 10**x)."""
    return nn.functional.softplus(x * LN10) / LN10


def _mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers += [nn.Linear(sizes[i], sizes[i + 1]), nn.SiLU()]
    return nn.Sequential(*layers)


def knot_weights(win_idx: np.ndarray, step: int) -> np.ndarray:
    """(n_win, n_knots) weights of linear interpolation between knots every ``step`` grid
    pixels, each window run of pixels with its own knots at its ends."""
    runs = np.split(np.arange(win_idx.size), np.nonzero(np.diff(win_idx) > 1)[0] + 1)
    cols, rows, vals, k0 = [], [], [], 0
    for r in runs:
        p = win_idx[r] - win_idx[r[0]]
        n = max(int(np.ceil(p[-1] / step)), 1)
        x = p / max(p[-1], 1) * n
        j = np.minimum(np.floor(x).astype(int), n - 1)
        t = x - j
        rows += [r, r]
        cols += [k0 + j, k0 + j + 1]
        vals += [1.0 - t, t]
        k0 += n + 1
    out = np.zeros((win_idx.size, k0), np.float32)
    np.add.at(out, (np.concatenate(rows), np.concatenate(cols)), np.concatenate(vals))
    return out


def tap_buffers(line_pix: np.ndarray, half: int, pix_width: np.ndarray,
                own_half: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The pixels around each line (taps -half + 1 .. half): their offsets from the line
    centre (dx), their grid pixels (target; npix for pixels off the grid) and 1 / pixel width
    (inv_width). ``own_half`` (per line, <= half): taps beyond it go off the grid at an offset
    too far to absorb."""
    npix = pix_width.size
    k = np.arange(-half + 1, half + 1)[None, :]
    j = np.floor(line_pix).astype(np.int64)[:, None] + k
    inside = (j >= 0) & (j < npix)
    dx = j - line_pix[:, None]
    if own_half is not None:
        used = (k > -own_half[:, None]) & (k <= own_half[:, None])
        inside &= used
        dx = np.where(used, dx, 1e4)
    jc = np.clip(j, 0, npix - 1)
    return {"dx": dx, "target": np.where(inside, jc, npix), "inv_width": 1.0 / pix_width[jc]}


class LineDecoder(nn.Module):
    """Optical depth per element group on the window pixels, from the line list."""

    def __init__(self, grid: WavelengthGrid, win_idx: np.ndarray, n_w: int, hidden: list,
                 pressure_damping: bool = False, doppler_labels: tuple | None = None,
                 anchored_strengths: bool = False, smooth_continuum: int = 0,
                 hydrogen: bool = False, wing_cut: bool = False, noisy_continuum: bool = False,
                 bin_noise: list | None = None, shared_physics: bool = False) -> None:
        super().__init__()
        ll = load_linelist()
        npix = grid.npix
        line_pix = grid.pixel_of(ll.wave)
        groups = [ELEMENT_GROUP[e] for e in ll.element]
        # every line on the grid: the lines outside the windows still lower the continuum the
        # survey's normalisation finds in their bins
        keep = np.array([g in ("fe", "c", "alpha", "h") and 0 <= p < npix for g, p in zip(groups, line_pix)])
        sel = np.nonzero(keep)[0]
        if sel.size == 0:
            raise ValueError("no line of the line list falls on the survey's wavelength grid")
        self.n_lines = int(sel.size)
        self.npix = npix
        self.n_win = int(win_idx.size)
        self._const("win_idx", np.asarray(win_idx, np.int64))
        self.normaliser = ContinuumEmulator(npix, np.asarray(win_idx), noisy=noisy_continuum,
                                            bin_noise=bin_noise)
        pix_width = grid.wave * LN10 * grid.dloglam
        grp = [groups[i] for i in sel]
        # abundance input of each line: 0 z_fe, 1 carbon, 2 alpha, 3 none (hydrogen)
        src = np.array([GROUP_INPUT.get(g, 3) for g in grp], np.int64)
        self._const("line_src", src)
        self._const("line_ion", ll.ion[sel].astype(np.int64) - 1)
        self._const("line_tau0", ll.log_tau_sun[sel])
        self._const("line_la0", ll.log_a_sun[sel])
        self._const("line_wave", ll.wave[sel])
        self._const("line_mass", np.array([MASS_AMU[ll.element[i]] for i in sel], np.float32))
        self._const("line_chi", ll.chi_exc[sel])
        # physical Doppler widths (chemlatent.model.doppler) from Teff/logg: w's mean and std,
        # or None for one learned width per star
        self.doppler_labels = doppler_labels
        species = sorted({ll.species[i] for i in sel})
        self._const("line_species", np.array([species.index(ll.species[i]) for i in sel]))
        self.n_species = len(species)
        lp = line_pix[sel]
        for key, v in tap_buffers(lp, LSF_TAPS, pix_width).items():
            self._const(f"core_{key}", v)
        wing = np.nonzero(ll.wings[sel])[0]
        self._const("wing_lines", wing)
        # hydrogen: its own damping (Stark, ~ Pe, where the metals' van der Waals goes ~ Pg)
        # and wings out to HYDROGEN_TAPS pixels (the other damped lines' extra taps inert)
        self.hydrogen = hydrogen
        is_h = src[wing] == 3
        half = np.where(is_h, HYDROGEN_TAPS, WING_TAPS) if hydrogen else np.full(wing.size, WING_TAPS)
        self.wing_cut = wing_cut
        if wing_cut:
            strong = ll.log_tau_sun[sel][wing] + ll.log_a_sun[sel][wing] >= LONG_WING_STRENGTH
            half = np.where(strong, HYDROGEN_TAPS, half)
        top = int(half.max(initial=WING_TAPS))
        for key, v in tap_buffers(lp[wing], top, pix_width, half).items():
            self._const(f"wing_{key}", v)
        self._const("wing_k", np.arange(-top + 1, top + 1))  # each tap's offset from the centre pixel
        self._const("wing_centre", self.wing_inv_width[:, top - 1].numpy())  # 1 / width at the centre
        # the torch path renders each wing length on its own taps only: (damped lines, columns)
        self._wing_sets = [(f"wing_rows_{k}", slice(top - k, top + k)) for k in sorted(set(half.tolist()))]
        for k in sorted(set(half.tolist())):
            self._const(f"wing_rows_{k}", np.nonzero(half == k)[0])
        if hydrogen:
            self._const("line_is_hydrogen", (src == 3).astype(np.float32))
        self._band_lo = self._band_hi = None  # the bands' pixel ranges (compiled renderer)
        # the line-to-group scatter: each line's depth goes to its group's output
        gidx = np.array([{"fe": 0, "h": 0, "c": 1, "alpha": 2}[g] for g in grp], np.int64)
        self._const("line_group", gidx)
        # molecular bands: templates on the grid, atoms per abundance input
        self._const("band_tmpl", band_templates(grid))
        counts = np.zeros((len(BANDS), 4), np.float32)  # atoms: free C, N (iron), Mg or Ti, free O
        bgroup = np.zeros(len(BANDS), np.int64)
        channel = {"C": 0, "N": 1, "Mg": 2, "Ti": 2, "O": 3}
        for b, band in enumerate(BANDS):
            for atom in MOLECULES[band.molecule][:2]:
                if atom in channel:
                    counts[b, channel[atom]] += 1.0
            bgroup[b] = 1 if counts[b, 0] > 0 else 2 if counts[b, 2:].sum() > 0 else 0
        self._const("band_atoms", counts)
        self._const("band_group", bgroup)
        self._const("band_tau0", [b.log_tau_sun for b in BANDS])
        n_band = len(BANDS)
        self.trunk = _mlp([n_w, *hidden])
        # per line log tau offset, per species log N_II/N_I, per band log tau offset, the
        # logit of the share of min(C, O) locked in CO, log10 Doppler width, log10 damping
        # anchored strengths: the line list's contrast between lines, one learned constant per
        # line (held near 0 by strength_penalty), the Boltzmann excitation from Teff and one
        # Teff/logg term per species; otherwise one free Teff/logg term per line
        self.anchored = anchored_strengths
        if (anchored_strengths or shared_physics) and doppler_labels is None:
            raise ValueError("anchored or shared line physics needs the physical Doppler widths (Teff/logg)")
        self.n_line_terms = 1 if shared_physics else self.n_species if anchored_strengths else self.n_lines
        if anchored_strengths:
            self.line_offset = nn.Parameter(torch.zeros(self.n_lines))
        # shared physics (line_physics.SharedLinePhysics): one opacity and one electron-pressure
        # term of Teff/logg for every line instead of per-line strengths and per-species ratios
        self.physics = (SharedLinePhysics(self.n_lines, [sp.split()[0] for sp in species])
                        if shared_physics else None)
        self.n_ratio_terms = 1 if shared_physics else self.n_species
        self.head = nn.Linear(hidden[-1], self.n_line_terms + self.n_ratio_terms + n_band + 3)
        # what no abundance moves: per window pixel, or (smooth_continuum = K > 0) linear between
        # knots K grid pixels apart, too smooth to take over any part of a line's depth
        self.smooth_continuum = int(smooth_continuum)
        n_cont = self.n_win
        if self.smooth_continuum > 0:
            knots = knot_weights(np.asarray(win_idx), self.smooth_continuum)
            n_cont = knots.shape[1]
            self._const("continuum_knots", knots)
        self.continuum = nn.Linear(hidden[-1], n_cont)
        # hydrogen's damping relative to the metals' (log10, from Teff/logg), 0 at the start
        self.hydrogen_damping = nn.Linear(hidden[-1], 1) if hydrogen else None
        for lin in (self.head, self.continuum, *([self.hydrogen_damping] if hydrogen else [])):
            nn.init.zeros_(lin.weight)
            nn.init.zeros_(lin.bias)
        with torch.no_grad():
            self.head.bias[-2] = math.log10(2.0)  # ~2 km/s Doppler width
        self.log_slope = nn.Parameter(torch.tensor(math.log(0.8)))  # dex per unit of z
        # grey-atmosphere scalings, Pe ~ (g A)^(1/3) and kappa(H-) ~ Pe (Gray): fixed, not
        # learned, because a learned pair would let the iron lines' response to z_fe and the
        # alpha lines' response to z_alpha take different units (which mixes the axes)
        self.register_buffer("electron_response", torch.tensor(1.0 / 3.0), persistent=False)  # k_e
        self.register_buffer("opacity_response", torch.tensor(1.0 / 3.0), persistent=False)  # k_o
        self.co_offset = nn.Parameter(torch.tensor(-0.5))  # log10 C/O at z_c = z_alpha
        # the alpha elements' share of the electron donors: m = [Fe/H] + w_alpha [alpha/Fe]
        self.alpha_electrons = nn.Parameter(torch.tensor(0.5))
        self.log_lsf = nn.Parameter(torch.tensor(math.log(lsf_sigma_pixels(grid))))
        # pressure damping: log10 of each line's damping moves by c * m, with one learned c for
        # the metal lines (van der Waals broadening by neutral hydrogen, ~ Pg, which falls as
        # metallicity rises) and one for hydrogen (Stark broadening, ~ Pe, which rises with it);
        # both start at 0 (no pressure dependence beyond Teff/logg)
        self.pressure_damping = pressure_damping
        if pressure_damping:
            self.damping_response = nn.Parameter(torch.zeros(2))
            self._const("line_is_h", (src == 3).astype(np.int64))

    def continuum_depth(self, h: torch.Tensor) -> torch.Tensor:
        """The optical depth no abundance moves, per window pixel (B, n_win)."""
        c = self.continuum(h)
        return c @ self.continuum_knots.T if self.smooth_continuum > 0 else c

    def _const(self, name: str, values: np.ndarray) -> None:
        """A non-persistent buffer (rebuilt from the line list on load): int64 or float32."""
        v = np.asarray(values)
        t = torch.from_numpy(v.astype(np.int64 if v.dtype.kind in "iu" else np.float32))
        self.register_buffer(name, t, persistent=False)

    def _band_atoms(self, u: torch.Tensor, z_fe_sg: torch.Tensor, co_logit: torch.Tensor,
                    s: torch.Tensor, other: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """sum over a band's atoms of log10 (free abundance), dex (B, n_band). Carbon and
        oxygen first pair up into CO (a share f(Teff, logg) of min(C, O) in cool atmospheres),
        so carbon bands grow faster than carbon once C > O and oxygen's partner abundance
        enters them; each band trains only its own group's axis (``other``: how the other
        groups' inputs enter, see _optics)."""
        lc = s * u[:, 1]  # log C, up to the zero point
        lo = s * u[:, 2]  # log O (an alpha element)
        f = torch.sigmoid(co_logit)
        c_over_o = (s * (u[:, 1] - other(u[:, 2])) + self.co_offset).clamp(-3.0, 3.0)
        o_over_c = -(s * (other(u[:, 1]) - u[:, 2]) + self.co_offset).clamp(-3.0, 3.0)
        one = torch.ones_like(f)
        free_c = (1.0 - f * torch.minimum(one, 0.98 * torch.pow(10.0, -c_over_o))).clamp_min(0.02)
        free_o = (1.0 - f * torch.minimum(torch.pow(10.0, -o_over_c), 0.98 * one)).clamp_min(0.02)
        atoms = torch.stack([lc + torch.log10(free_c), s * z_fe_sg[:, 0], lo,
                             lo + torch.log10(free_o)], -1)
        return atoms @ self.band_atoms.T

    def _scatter(self, depth: torch.Tensor, target: torch.Tensor, lines: torch.Tensor | None,
                 into: torch.Tensor | None = None) -> torch.Tensor:
        """Sum per-line, per-tap optical depths (L, T, B) of ``lines`` (None: all) into a
        pixel-major (npix + 1, B) array, new or ``into`` (row npix collects the taps off the
        grid)."""
        if lines is not None:
            depth, target = depth[lines], target[lines]
        if into is None:
            into = torch.zeros(self.npix + 1, depth.shape[-1], dtype=depth.dtype, device=depth.device)
        return into.index_add_(0, target.reshape(-1), depth.reshape(-1, depth.shape[-1]))

    def log_continuum(self, flux: torch.Tensor, sigma: torch.Tensor | None) -> torch.Tensor:
        """log of the continuum that chemlatent.spectra.continuum would fit to the model's
        unnormalised ``flux`` (B, npix), at the window pixels (B, n_win): per bin the mean,
        then N_ITER asymmetrically clipped means (the clipping from the values, not their
        gradients), ``sigma`` (B, 1) the star's typical noise (None: noiseless)."""
        return self.normaliser(torch.cat([flux.T, torch.ones_like(flux[:, :1]).T]), sigma).T

    def _optics(self, u: torch.Tensor, z_fe_sg: torch.Tensor, w: torch.Tensor, selective: bool = True):
        """Per-star line optical depths and widths, band optical depths and the Teff/logg
        trunk's output (see the module docstring). ``selective``: another group's abundance
        input reaches a line or band detached, so each trains only its own group's axis (the
        decoders' training); False: with its gradient, as a fit of z to the decoders needs
        (chemlatent.model.refine: its steps must follow the whole chi2)."""
        other = (lambda t: t.detach()) if selective else (lambda t: t)
        h = self.trunk(w)
        head = self.head(h).float()
        nl, ns = self.n_line_terms, self.n_ratio_terms
        s = self.log_slope.exp()
        u4 = torch.cat([u, torch.zeros_like(u[:, :1])], -1)
        z_alpha = u[:, 2:3] - z_fe_sg
        m = s * donor_metallicity(self.line_src, u[:, :1], z_fe_sg, z_alpha, self.alpha_electrons, other)
        dop = self._doppler_kms(w, head[:, -2:-1])  # Doppler width, km/s
        if self.physics is None:
            ratio, strength = head[:, nl:nl + ns][:, self.line_species], self._strength_terms(head[:, :nl], w)
        else:
            teff = physical_labels(w, self.doppler_labels)[0]
            ratio = self.physics.ionisation(teff, head[:, nl:nl + 1], self.line_species)
            strength = self.physics.strength(teff, head[:, :1], dop, self.line_chi)
        ratio = ratio - self.electron_response * m  # log N_II/N_I
        log_frac = torch.where(self.line_ion == 1, ratio, torch.zeros_like(ratio)) - softplus10(ratio)
        log_tau = self.line_tau0 + strength + s * u4[:, self.line_src] + log_frac - self.opacity_response * m
        la = self.line_la0 + head[:, -1:]
        if self.hydrogen:
            la = la + self.line_is_hydrogen * self.hydrogen_damping(h).float()
        if self.pressure_damping:
            la = la + self.damping_response[self.line_is_h] * m
        la = la.clamp(-3.5, 0.5)
        dld = self.line_wave / C_KMS * dop  # Doppler width, Angstrom
        width = dld * torch.exp(voigt_log_width(log_tau, la).clamp(max=12.0))  # equivalent width
        # molecules ~ Pg^2 / kappa: metallicity lowers them at fixed abundances like ~2 k_o m
        band = (self.band_tau0 + head[:, nl + ns:-3] + self._band_atoms(u, z_fe_sg, head[:, -3], s, other)
                - 2.0 * self.opacity_response * s * (z_fe_sg + self.alpha_electrons * other(z_alpha)))
        band_tau = torch.log1p(torch.pow(10.0, band.clamp(-8.0, 3.0)))
        return h, log_tau, la, dld, width, band_tau

    def _strength_terms(self, terms: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """Each line's log10 tau offset from its line-list strength (B, L): the trunk's per-line
        terms, or (anchored) its constant offset, its species' term and the Boltzmann factor
        -chi theta relative to the Sun (theta = 5040 / (0.85 Teff))."""
        if not self.anchored:
            return terms
        dtheta = line_forming_theta(physical_labels(w, self.doppler_labels)[0])
        return self.line_offset + terms[:, self.line_species] - self.line_chi * dtheta

    def strength_penalty(self) -> torch.Tensor:
        """Mean square of the anchored lines' constant offsets (dex^2; 0 when not anchored)."""
        if not self.anchored:
            return torch.zeros(())
        return self.line_offset.pow(2).mean()

    def _doppler_kms(self, w: torch.Tensor, learned_log10: torch.Tensor) -> torch.Tensor:
        """Doppler velocity width (km/s): from Teff/logg (thermal per line's atom and
        microturbulence) when ``doppler_labels`` is set, else 10**(the trunk's output) (B, 1)."""
        if self.doppler_labels is None:
            return torch.pow(10.0, learned_log10)
        return doppler_width_kms(*physical_labels(w, self.doppler_labels), self.line_mass)

    def _widths(self, u, z_fe_sg, w, selective: bool = True):
        """What rendering needs: the trunk's output, each line's core equivalent width (B, L),
        the damped lines' wing widths and Lorentzian half widths in pixels (B, Lw), the band
        optical depths (B, nb), the line-spread kernel (L, T) and its sigma (pixels)."""
        h, log_tau, la, dld, width, band_tau = self._optics(u, z_fe_sg, w, selective)
        sig = self.log_lsf.exp()
        norm = self.core_inv_width / (math.sqrt(2 * math.pi) * sig)  # per unit equivalent width
        kern = torch.exp(-0.5 * (self.core_dx / sig) ** 2) * norm  # (L, T)
        wl = self.wing_lines
        core_w, wing_w, g = width, width[:, :0], width[:, :0]
        if wl.numel():  # damped lines: the Doppler core on the taps, the rest in the wings
            wcore = dld[:, wl] * torch.exp(voigt_log_width(log_tau[:, wl], torch.full_like(la[:, wl], -3.5)))
            wcore = torch.minimum(wcore, width[:, wl])
            wing_w = width[:, wl] - wcore
            core_w = width.index_copy(1, wl, wcore)
            # Lorentzian wings: half width g (pixels) from the damping constant and optical depth
            g = torch.sqrt(torch.pow(10.0, log_tau[:, wl] + la[:, wl]) / math.sqrt(math.pi)) * dld[:, wl]
            g = g / (self.line_wave[wl] * LN10 * 1e-4)
        return h, core_w, wing_w, g, band_tau, kern, sig

    def _render(self, u, z_fe_sg, w, groups: bool, selective: bool = True):
        """Pixel-major optical depths (npix + 1, B): the total, or one per group (a list)."""
        h, core_w, wing_w, g, band_tau, kern, sig = self._widths(u, z_fe_sg, w, selective)
        wl = self.wing_lines
        wings = []  # per wing length: (damped lines, their optical depths (Lk, Tk, B), targets)
        for name, cols in self._wing_sets if wl.numel() else []:
            rows = getattr(self, name)
            gk = g.T[rows][:, None, :]  # (Lk, 1, B)
            prof = gk * gk / (self.wing_dx[rows][:, cols, None] ** 2 + sig * sig)
            prof = prof / (1.0 + prof)
            if self.wing_cut:
                reach = torch.floor(WING_CUT * gk.detach() + 5.0 * sig.detach()) + 1.0
                prof = prof * (self.wing_k[cols].abs()[None, :, None] <= reach)
            area = prof.sum(1, keepdim=True).clamp_min(1e-12)
            scale = wing_w.T[rows][:, None, :] / area * self.wing_centre[rows][:, None, None]
            d = (scale * prof).clamp(max=0.95)
            wings.append((rows, -torch.log1p(-d), self.wing_target[rows][:, cols]))
        depth = core_w.T[:, None, :] * kern[:, :, None]  # (L, T, B)
        sel = [None] if not groups else [self.line_group == k for k in range(3)]
        out = []
        for k, lines in enumerate(sel):
            tau = self._scatter(depth, self.core_target, lines)
            for rows, wing_depth, target in wings:
                wsel = None if lines is None else lines[wl][rows]
                tau = self._scatter(wing_depth, target, wsel, into=tau)
            bands = slice(None) if lines is None else self.band_group == k
            tau = tau + torch.nn.functional.pad(self.band_tmpl[bands].T @ band_tau[:, bands].T, (0, 0, 0, 1))
            out.append(tau)
        return h, (out if groups else out[0])

    def forward(self, u: torch.Tensor, z_fe_sg: torch.Tensor, w: torch.Tensor,
                sigma: torch.Tensor | None = None,
                selective: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """Optical depth (B, 3, n_win) of the iron (with hydrogen and the term no abundance
        moves), carbon and alpha groups at the window pixels, and the log of the continuum the
        survey's normalisation divides by there (B, n_win): normalised flux = exp(-sum of the
        depths - log continuum). ``u`` (B, 3): the abundance inputs z_fe, z_fe + z_c,
        z_fe + z_alpha; ``z_fe_sg`` (B, 1): z_fe as the carbon and alpha lines see it (detached
        in training) in the metallicity response shared by all lines; ``sigma`` (B, 1): each
        star's typical noise (the normalisation's clipping; None: noiseless); ``selective``:
        see _optics (the values do not depend on it, only the gradients)."""
        u, z_fe_sg, w = u.float(), z_fe_sg.float(), w.float()
        h, taus = self._render(u, z_fe_sg, w, groups=True, selective=selective)
        log_cont = self.normaliser(torch.exp(-(taus[0] + taus[1] + taus[2])), sigma).T
        tau = torch.stack([t[self.win_idx].T for t in taus], 1)
        tau[:, 0] = tau[:, 0] + self.continuum_depth(h).float()
        return tau, log_cont

    def flux(self, u: torch.Tensor, z_fe_sg: torch.Tensor, w: torch.Tensor,
             sigma: torch.Tensor | None = None, selective: bool = True) -> torch.Tensor:
        """Normalised model flux at the window pixels (B, n_win): the fast path of forward
        (one total optical depth instead of one per group); without gradients on a CPU the
        compiled renderer (chemlatent.model.line_render)."""
        u, z_fe_sg, w = u.float(), z_fe_sg.float(), w.float()
        if torch.is_grad_enabled() or u.device.type != "cpu":
            h, tau = self._render(u, z_fe_sg, w, groups=False, selective=selective)
            log_cont = self.normaliser(torch.exp(-tau), sigma)
            return torch.exp(-(tau[self.win_idx] + log_cont).T - self.continuum_depth(h).float())
        return self._compiled_flux(u, z_fe_sg, w, sigma)

    def _compiled_flux(self, u, z_fe_sg, w, sigma) -> torch.Tensor:
        from chemlatent.model.line_render import band_ranges, render_window_flux

        h, core_w, wing_w, g, band_tau, kern, sig = self._widths(u, z_fe_sg, w)
        if self._band_lo is None:
            self._band_lo, self._band_hi = band_ranges(self.band_tmpl.numpy())
        extra = self.continuum_depth(h).float()
        b = u.shape[0]
        out = np.empty((b, self.n_win), np.float32)
        noise = np.zeros(b, np.float32) if sigma is None else sigma.float().reshape(-1).numpy()
        arr = lambda t: np.ascontiguousarray(t.numpy())  # noqa: E731
        nm = self.normaliser
        render_window_flux(arr(core_w), self.core_target.numpy(), arr(kern), arr(wing_w), arr(g),
                           self.wing_target.numpy(), self.wing_dx.numpy(), self.wing_centre.numpy(),
                           self.wing_k.numpy(), WING_CUT if self.wing_cut else 0.0,
                           float(sig), arr(band_tau), self.band_tmpl.numpy(), self._band_lo, self._band_hi,
                           noise, N_ITER, nm.bin_pix.numpy(), nm.bin_count.numpy(), self.win_idx.numpy(),
                           nm.win_bin.numpy(), nm.win_bin_t.numpy(), arr(extra), nm.noisy,
                           nm.bin_noise.numpy(), out)
        return torch.from_numpy(out)
