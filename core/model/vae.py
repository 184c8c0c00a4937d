"""The chemically disentangled VAE.

Encoder: an MLP over the whole spectrum (absorption depth with masked pixels zeroed, a
coarse coverage map and the S/N) -> diagonal Gaussian posterior over the chemical latents
z = (z_fe, z_c, z_alpha), and a deterministic nuisance w = standardised (Teff, logg).

Decoders: one per element group, each predicting absorption (1 - flux). The model flux in
the element windows is 1 minus the sum of the decoders' absorptions:

    fe:    D_fe([z_fe, w])                 on all window pixels (the metal-line background)
    c:     D_c([sg(z_fe) + z_c, w])        on the carbon windows only
    alpha: D_alpha([sg(z_fe) + z_alpha, w]) on the alpha windows only

sg is stop-gradient, so each decoder's loss trains only its own chemical axis (plus w).
Feeding the carbon and alpha decoders the *sum* z_fe + z_x (a total log abundance [X/H] in
z_fe's units) makes z_x the abundance *relative to iron*, [X/Fe]: a decoder given z_fe and
z_x separately could use [X/H] or [X/Fe] equally well, and the latent would mix them.

Experimental alternatives (docs/model.md has their numbers): decoder_mode "masked" gives
each window pixel to exactly one decoder, the group whose lines dominate it by the line list,
so that only the alpha decoder explains the alpha lines; decoder_form "logtau" makes each
pixel's absorption monotone in exp(s * input) with one slope s for all decoders, and "cog"
makes each pixel one effective line on a Voigt curve of growth whose optical depth the input
moves (CurveOfGrowthDecoder); decoder_form "lines" builds every window pixel from the line
list's lines and bands, each moved only by its own element group's input, rendered on the whole
grid and divided by the continuum the survey's normaliser would fit (core/model/lines.py).

An adversary tries to predict (Teff, logg) from z; the encoder is trained to defeat it
through a gradient-reversal layer.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn

from chemlatent.model.features import COVERAGE_BIN, LOG_SN_OFFSET
from chemlatent.model.latent_range import range_tensors
from chemlatent.model.lines import (
    LN_DAMPED,
    LN_FLAT,
    LN_SQRT_PI,
    SOFT_MAX,
    SOFT_MIN,
    LineDecoder,
    voigt_log_width,
)
from chemlatent.model.star_noise import signal_to_noise
from chemlatent.model.surrogate import ReconstructionSurrogate
from chemlatent.spectra.grid import ELEMENT_GROUPS, WavelengthGrid, window_masks


def standardised_labels(model: nn.Module, labels: torch.Tensor) -> torch.Tensor:
    """Teff/logg (B, 2) in the units of the model's nuisance w (NaN stays NaN)."""
    mean = torch.tensor(model.config.label_mean, dtype=torch.float32, device=labels.device)
    std = torch.tensor(model.config.label_std, dtype=torch.float32, device=labels.device)
    return (labels.float() - mean) / std


def noise_from_features(x: torch.Tensor) -> torch.Tensor:
    """Each star's typical noise 1 / S/N (B, 1) from encoder input rows (their last column)."""
    return torch.exp(-(x[:, -1:].float() + LOG_SN_OFFSET))


@dataclass
class ModelConfig:
    """Everything needed to rebuild a model (stored as config.json)."""

    grid: dict
    windows: dict  # group -> list of [lo, hi, label]
    hidden: list = field(default_factory=lambda: [256, 256, 128])
    decoder_hidden: list = field(default_factory=lambda: [64, 128, 256])
    decoder_mode: str = "additive"  # "separate" (the reference paper's inputs), "hybrid", "masked"
    abundance_input: str = "linear"  # "exp": decoders see exp(u), an abundance, not u
    # "logtau": absorption monotone in exp(s * u), s shared by all decoders; "cog": each pixel
    # an effective line on a Voigt curve of growth in log10 tau0 = b(w) + s * u; "lines": the
    # line list's lines and bands, each moved by its own element group (core/model/lines.py)
    decoder_form: str = "mlp"
    # additive mode: the carbon and alpha decoders see sg(z_fe) besides z_fe + z_x, so each can
    # model how its windows change with metallicity without spending z_x on it
    ratio_decoders_see_fe: bool = False
    # additive mode: the carbon decoder predicts absorption on every window pixel (as iron's
    # does), so carbon bands inside the iron and alpha windows (C2 Swan under Mg b, CN, CH) are
    # carbon's to model, not a reason for z_fe or z_alpha to carry carbon
    carbon_on_all_windows: bool = False
    # line decoders: the damping of every line follows the pressure the metallicity sets
    # (lines.LineDecoder, pressure_damping)
    line_pressure_damping: bool = False
    # line decoders: "physical" Doppler widths from Teff/logg (chemlatent.model.doppler), or
    # "learned" (one width per star from the Teff/logg trunk; models trained before this option)
    line_doppler: str = "learned"
    # line decoders: hidden sizes of the reconstruction surrogate that encoding's chi2 uses
    # (chemlatent.model.surrogate), None: none (chi2 from the line decoders themselves)
    surrogate_hidden: list | None = None
    # line decoders: > 0 anchors the contrast between lines to the line list (Boltzmann
    # excitation from Teff, one Teff/logg term per species, per-line constants held near 0 with
    # this weight; needs line_doppler "physical"); 0: one free Teff/logg term per line
    line_strength_weight: float = 0.0
    # line decoders: > 0 makes the optical depth no abundance moves linear between knots this
    # many grid pixels apart (0: free per window pixel)
    line_smooth_continuum: int = 0
    # line decoders: hydrogen lines with their own damping term and wings out to
    # lines.HYDROGEN_TAPS pixels (False: damped like the metals, wings cut at WING_TAPS)
    line_hydrogen: bool = False
    # line decoders: each damped line's wing reaches lines.WING_CUT Lorentzian half widths (plus
    # the line-spread function), Ca II H and K on lines.HYDROGEN_TAPS taps (False: a wing fills
    # its fixed taps, as models trained before this option)
    line_wing_cut: bool = False
    # line decoders: the emulated continuum normalisation clips the model flux as the survey
    # clips a noisy spectrum, in expectation (line_continuum.ContinuumEmulator, noisy; False:
    # the noiseless flux, as models trained before this option)
    line_noisy_continuum: bool = False
    # line decoders: each line's Teff/logg dependence from physics shared by every element group
    # (line_physics.SharedLinePhysics; needs line_doppler "physical"); False: free per line
    line_shared_physics: bool = False
    # with line_noisy_continuum: each continuum bin's noise over the star's typical noise, from
    # the training survey (line_continuum.bin_noise_shape; None: 1 in every bin)
    line_bin_noise: list | None = None
    # which pixels the decoders model: the element windows ("windows"), or the whole grid
    # ("all", line decoders only: every line of the line list, inside the windows or not)
    decoder_pixels: str = "windows"
    pixel_groups: list | None = None  # "masked": per window pixel, the group whose lines dominate it
    n_w: int = 2
    label_mean: list = field(default_factory=lambda: [5000.0, 3.0])
    label_std: list = field(default_factory=lambda: [800.0, 1.2])
    orientation: list = field(default_factory=lambda: [1.0, 1.0, 1.0])
    # anchored training: z = (abundance - anchor_mean) / anchor_scale on anchored stars
    anchor_mean: list | None = None
    anchor_scale: float | None = None
    # per axis [lo, hi] (reported units) that encoding clamps the posterior means into: the
    # training stars' range (chemlatent.model.latent_range); None = unbounded
    latent_range: list | None = None
    name: str = "model"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        return cls(**known)

    @property
    def wavelength_grid(self) -> WavelengthGrid:
        return WavelengthGrid.from_dict(self.grid)


def _mlp(sizes: list[int], out_act: bool = False) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2 or out_act:
            layers.append(nn.SiLU())
    return nn.Sequential(*layers)


class GradReverse(torch.autograd.Function):
    """Identity forward, gradient multiplied by -scale backward."""

    @staticmethod
    def forward(ctx, x, scale):
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return -ctx.scale * grad, None


class LogTauDecoder(nn.Module):
    """Absorption of each pixel as a monotone function of the abundance input x = s * u:

        A(w) = c(w) + a(w) * softplus(x + b(w))

    (c, a >= 0). For weak lines this is a(w) exp(x + b(w)): the depth grows like the
    abundance (curve of growth, linear part), with the same slope for every pixel and every
    decoder; strong lines grow more slowly. c(w) holds what no abundance moves (hydrogen)."""

    def __init__(self, n_w: int, hidden: list, n_out: int) -> None:
        super().__init__()
        self.trunk = _mlp([n_w, *hidden], out_act=True)
        self.head = nn.Linear(hidden[-1], 3 * n_out)
        self.n_out = n_out
        with torch.no_grad():
            self.head.bias.view(3, n_out)[0].fill_(-3.0)  # c: small
            self.head.bias.view(3, n_out)[1].fill_(-2.0)  # a
            self.head.bias.view(3, n_out)[2].fill_(0.0)  # b

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        c, a, b = self.head(self.trunk(w)).view(-1, 3, self.n_out).unbind(1)
        sp = nn.functional.softplus
        return sp(c) + sp(a) * sp(x + b)


class CurveOfGrowthDecoder(nn.Module):
    """Absorption of each pixel as one effective line on a Voigt curve of growth:

        A(w) = c(w) + a(w) * W(b(w) + s * u, log_damping(w)) / W(0, -2)

    W is the equivalent width (in Doppler widths) of a Voigt line of centre optical depth
    10**x and damping 10**log_damping, c, a >= 0. Teff and logg (w) set each pixel's strength
    at zero abundance input, its damping and what no abundance moves (c); the abundance input
    u moves only log10 tau0, with one slope s shared by all decoders. Weak lines grow like
    10**(s u), damped strong lines like 10**(s u / 2): the growth with u has a known shape on
    saturated lines too, so one unit of u means the same abundance change to every decoder
    (z_x = u - z_fe is then a ratio to iron in z_fe's units).

    W is a closed form (``log_width``) fitted to the tabulated Voigt curve of growth
    (physics.curve_of_growth_table) to 1% rms and 5% at worst for log_damping <= -1: a soft
    minimum of the weak-line law and a soft maximum of the Doppler-saturated and damped laws,
    a dozen vectorised operations per pixel (in place at inference). Encoding with these
    decoders (the chi2 needs a reconstruction) runs at ~60% of the MLP decoders' speed."""

    def __init__(self, n_w: int, hidden: list, n_out: int) -> None:
        super().__init__()
        self.trunk = _mlp([n_w, *hidden], out_act=True)
        self.head = nn.Linear(hidden[-1], 4 * n_out)
        self.n_out = n_out
        self.ref = 0.0
        self.ref = float(self.log_width(torch.zeros(1), torch.full((1,), -2.0)))
        with torch.no_grad():
            b = self.head.bias.view(4, n_out)
            b[0].fill_(-4.0)  # c: small
            b[1].fill_(-2.5)  # a
            b[2].fill_(-0.5)  # b: log10 tau0 at u = 0
            b[3].fill_(-2.0)  # log10 damping

    def log_width(self, x: torch.Tensor, la: torch.Tensor) -> torch.Tensor:
        """ln(W / W(0, -2)) for log10 tau0 = x and log10 damping = la."""
        if not torch.is_grad_enabled():
            return self._log_width_inplace(x, la)
        return voigt_log_width(x, la) - self.ref

    def _log_width_inplace(self, x: torch.Tensor, la: torch.Tensor) -> torch.Tensor:
        """log_width without autograd, in place on temporaries (3x faster on a CPU)."""
        ln10 = 2.302585092994046
        m, n = SOFT_MAX, SOFT_MIN
        y = x * ln10
        flat = nn.functional.softplus(y).add_(1e-12).log_().mul_(0.5 * m).add_(m * LN_FLAT)
        damped = (la * (0.5 * m * ln10)).add_(y, alpha=0.5 * m).add_(m * LN_DAMPED)
        saturated = torch.logaddexp(flat, damped, out=flat).mul_(-n / m)
        weak = y.mul_(-n).add_(-n * LN_SQRT_PI)
        return torch.logaddexp(weak, saturated, out=weak).mul_(-1.0 / n).sub_(self.ref)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        c, a, b, la = self.head(self.trunk(w)).float().view(-1, 4, self.n_out).unbind(1)
        sp = nn.functional.softplus
        lw = self.log_width(x.float() + b, la.clamp(-3.5, 0.5))
        if not torch.is_grad_enabled():
            return lw.clamp_(max=8.0).exp_().mul_(sp(a)).add_(sp(c))
        return sp(c) + sp(a) * torch.exp(lw.clamp(max=8.0))


class DisentangledVAE(nn.Module):
    """Encoder, three element decoders, and the Teff/logg adversary."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        grid = config.wavelength_grid
        self.npix = grid.npix
        if self.npix % COVERAGE_BIN:
            self.n_cov = self.npix // COVERAGE_BIN + 1
        else:
            self.n_cov = self.npix // COVERAGE_BIN
        windows = {g: [tuple(w) for w in config.windows[g]] for g in ELEMENT_GROUPS}
        masks = window_masks(grid, windows)
        for g in ELEMENT_GROUPS:
            idx = torch.from_numpy(np.nonzero(masks[g])[0].astype(np.int64))
            if idx.numel() == 0:
                raise ValueError(f"the {g} windows select no pixel of the grid")
            self.register_buffer(f"win_{g}", idx, persistent=False)
        n_in = self.npix + self.n_cov + 1
        h = list(config.hidden)
        self.encoder = _mlp([n_in, *h], out_act=True)
        self.mu = nn.Linear(h[-1], 3)
        self.logvar = nn.Linear(h[-1], 3)
        self.w_head = nn.Linear(h[-1], config.n_w)
        dh = list(config.decoder_hidden)
        nw = config.n_w
        union = masks["fe"] | masks["c"] | masks["alpha"]
        # encoding's chi2 is over the element windows whatever the decoders model: chi2_idx
        # (grid pixels) and chi2_pos (their places among the decoders' pixels)
        self.register_buffer("chi2_idx", torch.from_numpy(np.nonzero(union)[0].astype(np.int64)),
                             persistent=False)
        n_chi2 = int(union.sum())
        if config.decoder_pixels == "all":
            if config.decoder_form != "lines":
                raise ValueError("decoder_pixels 'all' needs decoder_form 'lines'")
            union = np.ones(self.npix, bool)
        elif config.decoder_pixels != "windows":
            raise ValueError(f"decoder_pixels must be 'windows' or 'all', not {config.decoder_pixels!r}")
        self.register_buffer("win_all", torch.from_numpy(np.nonzero(union)[0].astype(np.int64)),
                             persistent=False)
        pos = np.full(self.npix, -1, np.int64)
        pos[union] = np.arange(int(union.sum()))
        self.register_buffer("chi2_pos", torch.from_numpy(pos[self.chi2_idx.numpy()]), persistent=False)
        for g in ELEMENT_GROUPS:
            self.register_buffer(f"pos_{g}", torch.from_numpy(pos[masks[g]]), persistent=False)
        self.mode = config.decoder_mode
        if self.mode not in ("additive", "separate", "hybrid", "masked"):
            raise ValueError(f"unknown decoder_mode {self.mode!r}")
        n_out = {g: int(masks[g].sum()) for g in ELEMENT_GROUPS}
        win_idx = np.nonzero(union)[0]
        self._part_idx = {"fe": win_idx, "c": np.nonzero(masks["c"])[0],
                          "alpha": np.nonzero(masks["alpha"])[0]}
        if self.mode == "masked":  # each window pixel belongs to exactly one decoder
            if config.pixel_groups is None or len(config.pixel_groups) != win_idx.size:
                raise ValueError("decoder_mode 'masked' needs pixel_groups, one per window pixel")
            pg = np.asarray(config.pixel_groups, np.int64)
            n_in = {"fe": 1, "c": 1, "alpha": 1}
            for k, g in enumerate(ELEMENT_GROUPS):
                sel = np.nonzero(pg == k)[0]
                if sel.size == 0:
                    raise ValueError(f"no window pixel is assigned to the {g} decoder")
                self.register_buffer(f"pos_{g}", torch.from_numpy(sel), persistent=False)
                n_out[g] = int(sel.size)
                self._part_idx[g] = win_idx[sel]
        elif self.mode == "additive":
            two = 2 if config.ratio_decoders_see_fe else 1
            n_in = {"fe": 1, "c": two, "alpha": two}
            n_out["fe"] = int(union.sum())
            if config.carbon_on_all_windows:
                n_out["c"] = int(union.sum())
                self._part_idx["c"] = win_idx
                self.register_buffer("pos_c", torch.arange(int(union.sum())), persistent=False)
        elif self.mode == "hybrid":  # iron covers Fe+C windows; alpha its own, seeing z_fe too
            n_in = {"fe": 1, "c": 1, "alpha": 2}
            fe_c = masks["fe"] | masks["c"]
            n_out["fe"] = int(fe_c.sum())
            self._part_idx["fe"] = np.nonzero(fe_c)[0]
            self.register_buffer("pos_fec", torch.from_numpy(pos[fe_c]), persistent=False)
            self.register_buffer("pos_c_in_fec", torch.from_numpy(
                np.cumsum(fe_c)[masks["c"]] - 1), persistent=False)
        else:
            n_in = {"fe": 1, "c": 2, "alpha": 3}
            self._part_idx["fe"] = np.nonzero(masks["fe"])[0]
        self.form = config.decoder_form
        if self.form == "lines":  # one line-by-line model of every window pixel (core/model/lines.py)
            if self.mode != "additive":
                raise ValueError("decoder_form 'lines' needs decoder_mode 'additive'")
            if config.line_doppler not in ("learned", "physical"):
                raise ValueError(f"line_doppler must be 'learned' or 'physical', not {config.line_doppler!r}")
            doppler = (config.label_mean, config.label_std) if config.line_doppler == "physical" else None
            self.lines = LineDecoder(grid, win_idx, nw, dh, pressure_damping=config.line_pressure_damping,
                                     doppler_labels=doppler,
                                     anchored_strengths=config.line_strength_weight > 0,
                                     smooth_continuum=config.line_smooth_continuum,
                                     hydrogen=config.line_hydrogen, wing_cut=config.line_wing_cut,
                                     noisy_continuum=config.line_noisy_continuum,
                                     bin_noise=config.line_bin_noise,
                                     shared_physics=config.line_shared_physics)
            self.decoders = nn.ModuleDict()
            self._part_idx = {g: win_idx for g in ELEMENT_GROUPS}
        elif self.form == "mlp":
            self.decoders = nn.ModuleDict({g: _mlp([n_in[g] + nw, *dh, n_out[g]]) for g in ELEMENT_GROUPS})
        elif self.form in ("logtau", "cog"):
            if set(n_in.values()) != {1}:
                raise ValueError(f"decoder_form {self.form!r} needs one abundance input per decoder")
            cls = LogTauDecoder if self.form == "logtau" else CurveOfGrowthDecoder
            self.decoders = nn.ModuleDict({g: cls(nw, dh, n_out[g]) for g in ELEMENT_GROUPS})
            # one slope d ln(tau) / du for all decoders: a unit of z_fe and a unit of
            # z_fe + z_x change the line optical depths alike, so z_x is in z_fe's units
            # cog: u ~ N(0, 1) and [Fe/H] spreads ~0.8 dex, so start at 0.8 dex per unit
            self.log_slope = nn.Parameter(torch.tensor(0.5 if self.form == "logtau" else -0.22))
        else:
            raise ValueError(f"unknown decoder_form {self.form!r}")
        self.adversary = _mlp([3, 64, 64, 2])
        self.surrogate = None
        if config.surrogate_hidden:
            self.surrogate = ReconstructionSurrogate(n_chi2, list(config.surrogate_hidden))
        # +-1 per chemical axis: reported z = orient * internal z (see training.orient_axes)
        self.register_buffer("orient", torch.ones(3))
        lo, hi = range_tensors(config.latent_range)
        self.register_buffer("z_lo", lo, persistent=False)
        self.register_buffer("z_hi", hi, persistent=False)
        nn.init.zeros_(self.logvar.weight)
        nn.init.constant_(self.logvar.bias, -2.0)

    def window(self, group: str) -> torch.Tensor:
        return getattr(self, f"win_{group}")

    def part_pixels(self, group: str) -> np.ndarray:
        """Grid pixels on which decoder ``group`` predicts absorption (its output order)."""
        return self._part_idx[group]

    # -- encoder -----------------------------------------------------------------------
    def features(self, flux: torch.Tensor, ivar: torch.Tensor) -> torch.Tensor:
        """Encoder input: depth (0 where ivar = 0), coverage per 30-pixel bin, log S/N."""
        valid = ivar > 0
        depth = torch.where(valid, (1.0 - flux.float()).clamp(-1.0, 1.5), torch.zeros((), device=flux.device))
        b = flux.shape[0]
        pad = self.n_cov * COVERAGE_BIN - self.npix
        v = valid.float()
        if pad:
            v = torch.nn.functional.pad(v, (0, pad))
        cov = v.view(b, self.n_cov, COVERAGE_BIN).mean(-1)
        lsn = (torch.log(signal_to_noise(ivar)) - LOG_SN_OFFSET).unsqueeze(-1)
        return torch.cat([depth, cov, lsn], dim=-1)

    def encode(self, flux: torch.Tensor, ivar: torch.Tensor, bounded: bool = True):
        """Posterior mean (clamped into the trained latent range unless ``bounded`` is False)
        and log-variance of z (B, 3), and w (B, n_w)."""
        hid = self.encoder(self.features(flux, ivar))
        mu = self.mu(hid) * self.orient
        return (self.bound(mu) if bounded else mu), self.logvar(hid).clamp(-12.0, 6.0), self.w_head(hid)

    def bound(self, mu: torch.Tensor) -> torch.Tensor:
        """Posterior means clamped into the trained latent range (chemlatent.model.latent_range)."""
        if self.config.latent_range is None:
            return mu
        return torch.maximum(torch.minimum(mu, self.z_hi.to(mu.dtype)), self.z_lo.to(mu.dtype))

    def set_latent_range(self, latent_range: list | None) -> None:
        """Record the range encoding clamps into (None: unbounded)."""
        lo, hi = range_tensors(latent_range)
        self.z_lo.copy_(lo)
        self.z_hi.copy_(hi)
        self.config.latent_range = latent_range

    # -- decoders ----------------------------------------------------------------------
    def absorption(self, z: torch.Tensor, w: torch.Tensor, selective: bool = True,
                   fe_for_ratios: torch.Tensor | None = None, sigma: torch.Tensor | None = None) -> dict:
        """Each decoder's absorption (1 - flux) on its pixels (see the module docstring).
        ``fe_for_ratios`` (B, 1), when given, is the z_fe the carbon and alpha decoders see
        instead of z's (training passes the posterior mean: see TrainOptions.ratio_fe_mean)."""
        z = z * self.orient
        zf, zc, za = z[:, 0:1], z[:, 1:2], z[:, 2:3]
        zr = zf if fe_for_ratios is None else fe_for_ratios * self.orient[0]
        sg = (lambda t: t.detach()) if selective else (lambda t: t)
        if self.form == "lines":  # optical depths, not absorptions (combine takes exp(-sum))
            tau, log_cont = self.lines(*self._line_inputs(z, fe_for_ratios, selective), w, sigma, selective)
            return {**{g: tau[:, k] for k, g in enumerate(ELEMENT_GROUPS)}, "normalisation": log_cont}
        if self.form in ("logtau", "cog"):
            s = self.log_slope.exp()
            return {
                "fe": self.decoders["fe"](s * zf, w),
                "c": self.decoders["c"](s * (sg(zr) + zc), w),
                "alpha": self.decoders["alpha"](s * (sg(zr) + za), w),
            }
        if self.mode in ("additive", "masked"):
            f = self._abundance
            see_fe = self.mode == "additive" and self.config.ratio_decoders_see_fe
            fe = [f(sg(zr))] if see_fe else []  # z_fe beside the sum (ratio_decoders_see_fe)
            return {
                "fe": self.decoders["fe"](torch.cat([f(zf), w], -1)),
                "c": self.decoders["c"](torch.cat([*fe, f(sg(zr) + zc), w], -1)),
                "alpha": self.decoders["alpha"](torch.cat([*fe, f(sg(zr) + za), w], -1)),
            }
        if self.mode == "hybrid":
            return {
                "fe": self.decoders["fe"](torch.cat([zf, w], -1)),
                "c": self.decoders["c"](torch.cat([sg(zr) + zc, w], -1)),
                "alpha": self.decoders["alpha"](torch.cat([sg(zr), sg(zr) + za, w], -1)),
            }
        return {
            "fe": self.decoders["fe"](torch.cat([zf, w], -1)),
            "c": self.decoders["c"](torch.cat([sg(zr), zc, w], -1)),
            "alpha": self.decoders["alpha"](torch.cat([sg(zr), sg(zc), za, w], -1)),
        }

    def _abundance(self, u: torch.Tensor) -> torch.Tensor:
        """Decoder input for a log-abundance-like latent: u itself, or exp(u) (so that line
        strengths, which grow like the abundance, are simple functions of it and z stays
        linear in dex)."""
        if self.config.abundance_input == "exp":
            return torch.exp(u.clamp(-8.0, 8.0))
        return u

    def combine(self, parts: dict) -> torch.Tensor:
        """Model flux on the window pixels (B, n_windows).

        additive: 1 - the sum of the absorptions; masked: 1 - the absorption of the pixel's
        own decoder; separate: each decoder's flux on its own windows, averaged where windows
        overlap."""
        if self.form == "lines":
            return torch.exp(-(parts["fe"] + parts["c"] + parts["alpha"] + parts["normalisation"]))
        if self.mode == "masked":
            b = parts["fe"].shape[0]
            total = torch.zeros(b, self.win_all.numel(), device=parts["fe"].device)
            for g in ELEMENT_GROUPS:
                total[:, getattr(self, f"pos_{g}")] = parts[g].float()
            return 1.0 - total
        if self.mode == "additive":
            total = parts["fe"].float().clone()
            total.index_add_(1, self.pos_c, parts["c"].float())
            total.index_add_(1, self.pos_alpha, parts["alpha"].float())
            return 1.0 - total
        if self.mode == "hybrid":
            fec = parts["fe"].float().clone()
            fec.index_add_(1, self.pos_c_in_fec, parts["c"].float())
            b = fec.shape[0]
            total = torch.zeros(b, self.win_all.numel(), device=fec.device)
            count = torch.zeros(self.win_all.numel(), device=fec.device)
            total.index_add_(1, self.pos_fec, fec)
            count.index_add_(0, self.pos_fec, torch.ones_like(self.pos_fec, dtype=count.dtype))
            total.index_add_(1, self.pos_alpha, parts["alpha"].float())
            count.index_add_(0, self.pos_alpha, torch.ones_like(self.pos_alpha, dtype=count.dtype))
            return 1.0 - total / count.clamp_min(1)
        b = parts["fe"].shape[0]
        total = torch.zeros(b, self.win_all.numel(), device=parts["fe"].device)
        count = torch.zeros(self.win_all.numel(), device=parts["fe"].device)
        for g in ELEMENT_GROUPS:
            pos = getattr(self, f"pos_{g}")
            total.index_add_(1, pos, parts[g].float())
            count.index_add_(0, pos, torch.ones_like(pos, dtype=count.dtype))
        return 1.0 - total / count.clamp_min(1)

    def decode(self, z: torch.Tensor, w: torch.Tensor, selective: bool = True,
               sigma: torch.Tensor | None = None, fe_for_ratios: torch.Tensor | None = None) -> torch.Tensor:
        """Model flux on the union of the element windows (pixels ``win_all``): combine of
        absorption, or for line decoders a faster path that never splits the optical depth by
        group. ``sigma`` (B, 1), each star's typical noise, matters to line decoders only (the
        continuum normalisation clips by it); ``fe_for_ratios`` as in absorption."""
        if getattr(self, "form", None) == "lines":  # (the signor2025 recipe borrows this method)
            return self.lines.flux(*self._line_inputs(z * self.orient, fe_for_ratios, selective), w, sigma,
                                   selective)
        if fe_for_ratios is None:
            return self.combine(self.absorption(z, w, selective))
        return self.combine(self.absorption(z, w, selective, fe_for_ratios))

    def _line_inputs(self, z: torch.Tensor, fe_for_ratios: torch.Tensor | None,
                     selective: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """The line decoders' abundance inputs (z_fe, z_fe + z_c, z_fe + z_alpha) and the z_fe
        the carbon and alpha lines see (detached when ``selective``), from internal-frame z."""
        zf = z[:, 0:1]
        zr = zf if fe_for_ratios is None else fe_for_ratios * self.orient[0]
        zr = zr.detach() if selective else zr
        return torch.cat([zf, zr + z[:, 1:2], zr + z[:, 2:3]], -1), zr

    def decode_fast(self, z: torch.Tensor, w: torch.Tensor,
                    sigma: torch.Tensor | None = None) -> torch.Tensor:
        """decode(z, w, selective=False, sigma) on encoding's chi2 pixels (``chi2_idx``, the
        element windows): through the reconstruction surrogate when the model has one
        (chemlatent.model.surrogate)."""
        if self.surrogate is not None and sigma is not None:
            return self.surrogate(z, w, sigma)
        return self.decode(z, w, selective=False, sigma=sigma)[:, self.chi2_pos]

    def set_surrogate(self, surrogate: nn.Module | None, hidden: list | None) -> None:
        """Attach (or with None remove) a reconstruction surrogate and record it in the config."""
        self.surrogate = surrogate
        self.config.surrogate_hidden = list(hidden) if surrogate is not None and hidden else None

    def reconstruct(self, z: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """Full-length reconstruction (B, P), NaN outside the decoders' pixels (``win_all``)."""
        rec = torch.full((z.shape[0], self.npix), float("nan"), device=z.device)
        rec[:, self.win_all] = self.decode(z, w, selective=False)
        return rec

    def adversary_predict(self, z: torch.Tensor, reverse_scale: float) -> torch.Tensor:
        return self.adversary(GradReverse.apply(z, reverse_scale))


def pixel_groups_from_linelist(grid: WavelengthGrid, windows: dict, threshold: float = 0.6) -> list[int]:
    """For each window pixel (the union of the element windows, in grid order), the index in
    ELEMENT_GROUPS of the group whose lines dominate it: alpha (O, Mg, Si, S, Ca, Ti and the
    MgH/TiO bands) or carbon (C and the CH/C2/CN bands) where that group makes at least
    ``threshold`` of the expected line absorption, iron (every other line, hydrogen, blends
    and continuum) elsewhere. Built from the line list's solar strengths, no star's labels."""
    from chemlatent.spectra.linelist import BANDS, MOLECULES, band_templates, load_linelist, lsf_sigma_pixels
    from chemlatent.spectra.physics import ELEMENT_GROUP, equivalent_width_ratio

    ll = load_linelist()
    sig = lsf_sigma_pixels(grid)
    pix = np.arange(grid.npix, dtype=np.float64)
    line_pix = grid.pixel_of(ll.wave)
    acc = np.zeros((len(ELEMENT_GROUPS), grid.npix))
    gi = {g: k for k, g in enumerate(ELEMENT_GROUPS)}
    templates = band_templates(grid)
    for boost in (0.0, 1.0):  # a solar-like and a cooler, stronger-lined atmosphere
        ew = equivalent_width_ratio(ll.log_tau_sun + boost, ll.log_a_sun)
        for k in range(len(ll)):
            g = ELEMENT_GROUP[ll.element[k]]
            if g in gi:
                lo, hi = int(line_pix[k]) - 6, int(line_pix[k]) + 7
                sl = slice(max(lo, 0), max(min(hi, grid.npix), 0))
                acc[gi[g], sl] += ew[k] * np.exp(-0.5 * ((pix[sl] - line_pix[k]) / sig) ** 2)
        for b, band in enumerate(BANDS):
            atoms = MOLECULES[band.molecule][:2]
            g = "c" if "C" in atoms else "alpha" if band.molecule in ("MgH", "TiO") else None
            if g is not None:
                acc[gi[g]] += 3.0 * np.log1p(10.0 ** (band.log_tau_sun + 1.5 + boost)) * templates[b]
    masks = window_masks(grid, windows)
    union = masks["fe"] | masks["c"] | masks["alpha"]
    share = acc[:, union] / (acc[:, union].sum(0) + 1e-9)
    out = np.zeros(int(union.sum()), np.int64)
    for g in ("c", "alpha"):
        out[share[gi[g]] >= threshold] = gi[g]
    return out.tolist()


def build_model(config: ModelConfig) -> DisentangledVAE:
    return DisentangledVAE(config)
