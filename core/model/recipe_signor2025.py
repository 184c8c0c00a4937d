"""The published training recipe of Signor et al. 2025 (A&A 704, A279) as a model class.

Facts carried over from the paper and its public code (docs/model.md, "The paper's recipe,
side by side"):

- encoder: a 1-D CNN (three conv layers, kernels 5/11/21, instance norm, PReLU, max-pooling
  after the first two) whose last layer is split into values and softmax attention weights
  over wavelength, then an MLP (PReLU) down to 32 features;
- a full-covariance Gaussian posterior over z = (z_fe, z_c, z_alpha) (a Cholesky factor with a
  softplus diagonal) and a deterministic nuisance w, trained to standardised (Teff, logg);
- three MLP decoders (32-64-128-pixels, Speculator activations) on disjoint regions: a window
  pixel belongs to the alpha decoder wherever an alpha window covers it; elsewhere the iron
  and carbon decoders' absorptions add where their windows overlap;
- selective gradients: Fe sees [z_fe, sg(z_c), w], alpha [sg(z_fe), sg(z_c), z_alpha, w],
  C [sg(z_fe), z_c, w];
- a KL to a correlated unit-variance Gaussian prior, rho(Fe, alpha) = -0.3, rho(Fe, C) = -0.17;
- an adversary classifying 8 x 8 (Teff, logg) bins from the posterior mean.

The model exposes what :class:`chemlatent.encode.streaming.Encoder` calls (``encoder``, ``mu``,
``logvar``, ``w_head``, ``decode``, ``orient``, ``win_all``, ``config``): ``logvar(hid)`` is the
log of the *marginal* posterior variance, the diagonal of L L^T.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn

from chemlatent.model.vae import COVERAGE_BIN, DisentangledVAE
from chemlatent.spectra.grid import ELEMENT_GROUPS, WavelengthGrid, window_masks

ARCHITECTURE = "signor2025"
N_Z = 3  # (z_fe, z_c, z_alpha), the project's axis order
AXIS = {g: i for i, g in enumerate(ELEMENT_GROUPS)}


@dataclass
class Signor2025Config:
    """Everything needed to rebuild a signor2025 model (stored as config.json)."""

    grid: dict
    windows: dict  # group -> list of [lo, hi, label]
    channels: list = field(default_factory=lambda: [128, 256, 512])  # the paper's filters
    kernels: list = field(default_factory=lambda: [5, 11, 21])
    mlp_hidden: list = field(default_factory=lambda: [128, 64, 32])  # after channels[-1] // 2
    decoder_hidden: list = field(default_factory=lambda: [32, 64, 128])
    n_w: int = 2
    rho_fe_alpha: float = -0.3
    rho_fe_c: float = -0.17
    n_bins: int = 8  # adversary: n_bins x n_bins (Teff, logg) classes
    label_mean: list = field(default_factory=lambda: [5000.0, 3.0])
    label_std: list = field(default_factory=lambda: [800.0, 1.2])
    orientation: list = field(default_factory=lambda: [1.0, 1.0, 1.0])
    name: str = "model"
    architecture: str = ARCHITECTURE

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Signor2025Config:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})

    @property
    def wavelength_grid(self) -> WavelengthGrid:
        return WavelengthGrid.from_dict(self.grid)


def prior_covariance(rho_fe_alpha: float = -0.3, rho_fe_c: float = -0.17) -> torch.Tensor:
    """The prior's correlation matrix in the project's axis order (fe, c, alpha): unit
    variances, rho(Fe, alpha) and rho(Fe, C), no C-alpha term (as in the paper's code)."""
    cov = torch.eye(N_Z)
    cov[AXIS["fe"], AXIS["alpha"]] = cov[AXIS["alpha"], AXIS["fe"]] = rho_fe_alpha
    cov[AXIS["fe"], AXIS["c"]] = cov[AXIS["c"], AXIS["fe"]] = rho_fe_c
    return cov


def kl_to_prior(mu: torch.Tensor, chol: torch.Tensor, prior_inv: torch.Tensor,
                prior_logdet: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, L L^T) || N(0, S)) per star (B,), S given by its inverse and log-determinant."""
    k = mu.shape[-1]
    logdet_q = 2.0 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)
    sigma_q = chol @ chol.transpose(-1, -2)
    trace = torch.einsum("ij,bji->b", prior_inv, sigma_q)
    quad = torch.einsum("bi,ij,bj->b", mu, prior_inv, mu)
    return 0.5 * (prior_logdet - logdet_q - k + trace + quad)


class SpeculatorActivation(nn.Module):
    """a(x) = (gamma + (1 - gamma) sigmoid(beta x)) x, per unit (Alsing et al. 2020, eq. 8)."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.beta = nn.Parameter(torch.randn(n))
        self.gamma = nn.Parameter(torch.randn(n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.gamma + (1.0 - self.gamma) * torch.sigmoid(self.beta * x)) * x


def decoder_mlp(n_in: int, hidden: list, n_out: int) -> nn.Sequential:
    """Linear layers with Speculator activations; the last layer is linear (absorption)."""
    layers: list[nn.Module] = []
    sizes = [n_in, *hidden]
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), SpeculatorActivation(b)]
    layers.append(nn.Linear(sizes[-1], n_out))
    return nn.Sequential(*layers)


class AttentionCNNEncoder(nn.Module):
    """Conv-InstanceNorm-PReLU x 3 (max-pooled after the first two), half of the last layer's
    channels softmax-weighted over wavelength by the other half, then a PReLU MLP.

    Input: the project's encoder features (depth with masked pixels at 0, coverage, log S/N);
    only the ``npix`` depth values enter the CNN, as the paper's encoder sees the spectrum only.
    """

    def __init__(self, npix: int, channels: list, kernels: list, mlp_hidden: list) -> None:
        super().__init__()
        if len(channels) != 3 or len(kernels) != 3 or channels[-1] % 2:
            raise ValueError("the encoder needs 3 conv layers and an even last channel count")
        self.npix = npix
        blocks = []
        for i, (c, k) in enumerate(zip(channels, kernels)):
            c_in = 1 if i == 0 else channels[i - 1]
            blocks.append(nn.Sequential(nn.Conv1d(c_in, c, k, padding=k // 2),
                                        nn.InstanceNorm1d(c), nn.PReLU(c)))
        self.conv = nn.ModuleList(blocks)
        self.pool = nn.ModuleList([nn.MaxPool1d(k, padding=k // 2) for k in kernels[:2]])
        n_feat = channels[-1] // 2
        layers: list[nn.Module] = []
        for a, b in zip([n_feat, *mlp_hidden[:-1]], mlp_hidden):
            layers += [nn.Linear(a, b), nn.PReLU(b)]
        self.mlp = nn.Sequential(*layers)
        self.n_out = mlp_hidden[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x[:, :self.npix].unsqueeze(1)
        h = self.pool[0](self.conv[0](h))
        h = self.pool[1](self.conv[1](h))
        h = self.conv[2](h)
        value, key = h.chunk(2, dim=1)
        pooled = (value * torch.softmax(key, dim=-1)).sum(-1)
        return self.mlp(pooled)


class CholeskyHead(nn.Module):
    """Lower-triangular posterior factor L (softplus diagonal) from the encoder's features.

    Called as a module it returns log diag(L L^T), the log *marginal* variances, which is
    what the encoding pipeline reports as each latent's posterior std."""

    def __init__(self, n_in: int, k: int = N_Z) -> None:
        super().__init__()
        self.k = k
        self.linear = nn.Linear(n_in, k * (k + 1) // 2)
        rows, cols = torch.tril_indices(k, k)
        self.register_buffer("rows", rows, persistent=False)
        self.register_buffer("cols", cols, persistent=False)

    def cholesky(self, hid: torch.Tensor) -> torch.Tensor:
        p = self.linear(hid).float()
        chol = p.new_zeros(p.shape[0], self.k, self.k)
        chol[:, self.rows, self.cols] = p
        d = torch.arange(self.k, device=p.device)
        chol[:, d, d] = nn.functional.softplus(chol[:, d, d]) + 1e-5
        return chol

    def forward(self, hid: torch.Tensor) -> torch.Tensor:
        return torch.log((self.cholesky(hid) ** 2).sum(-1))


class Signor2025VAE(nn.Module):
    """Encoder, Cholesky posterior, nuisance head, three masked decoders and the adversary."""

    mode = ARCHITECTURE

    def __init__(self, config: Signor2025Config) -> None:
        super().__init__()
        self.config = config
        grid = config.wavelength_grid
        self.npix = grid.npix
        self.n_cov = -(-self.npix // COVERAGE_BIN)
        windows = {g: [tuple(w) for w in config.windows[g]] for g in ELEMENT_GROUPS}
        masks = window_masks(grid, windows)
        union = masks["fe"] | masks["c"] | masks["alpha"]
        own = {"fe": masks["fe"] & ~masks["alpha"], "c": masks["c"] & ~masks["alpha"],
               "alpha": masks["alpha"]}  # alpha wins overlaps; Fe and C add where they meet
        pos = np.full(self.npix, -1, np.int64)
        pos[union] = np.arange(int(union.sum()))
        self.register_buffer("win_all", torch.from_numpy(np.nonzero(union)[0]), persistent=False)
        self.register_buffer("chi2_idx", self.win_all.clone(), persistent=False)  # chi2's pixels
        self.register_buffer("chi2_pos", torch.arange(self.win_all.numel()), persistent=False)
        self._part_idx = {}
        for g in ELEMENT_GROUPS:
            if not own[g].any():
                raise ValueError(f"the {g} windows select no pixel of the grid outside the alpha windows")
            self._part_idx[g] = np.nonzero(own[g])[0]
            self.register_buffer(f"win_{g}", torch.from_numpy(self._part_idx[g]), persistent=False)
            self.register_buffer(f"pos_{g}", torch.from_numpy(pos[own[g]]), persistent=False)
        self.encoder = AttentionCNNEncoder(self.npix, list(config.channels), list(config.kernels),
                                           list(config.mlp_hidden))
        n_h = self.encoder.n_out
        self.mu = nn.Linear(n_h, N_Z)
        self.logvar = CholeskyHead(n_h, N_Z)
        self.w_head = nn.Linear(n_h, config.n_w)
        n_in = {"fe": 2, "c": 2, "alpha": 3}
        self.decoders = nn.ModuleDict({g: decoder_mlp(n_in[g] + config.n_w, list(config.decoder_hidden),
                                                      int(own[g].sum())) for g in ELEMENT_GROUPS})
        self.adversary = nn.Sequential(nn.Linear(N_Z, 64), nn.ReLU(), nn.Linear(64, 128), nn.ReLU(),
                                       nn.Linear(128, config.n_bins ** 2))
        cov = prior_covariance(config.rho_fe_alpha, config.rho_fe_c)
        self.register_buffer("prior_inv", torch.linalg.inv(cov), persistent=False)
        self.register_buffer("prior_logdet", torch.logdet(cov), persistent=False)
        self.register_buffer("orient", torch.tensor(config.orientation, dtype=torch.float32))

    # -- encoder -----------------------------------------------------------------------
    def features(self, flux: torch.Tensor, ivar: torch.Tensor) -> torch.Tensor:
        """The project's encoder input (see DisentangledVAE.features)."""
        return DisentangledVAE.features(self, flux, ivar)  # type: ignore[arg-type]

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Internal-frame posterior mean (B, 3), Cholesky factor (B, 3, 3) and w (B, n_w)."""
        hid = self.encoder(x)
        return self.mu(hid), self.logvar.cholesky(hid), self.w_head(hid)

    def encode(self, flux: torch.Tensor, ivar: torch.Tensor, bounded: bool = True):
        """Posterior mean (reported frame), log marginal variance and w, like DisentangledVAE
        (the published recipe records no latent range, so ``bounded`` changes nothing)."""
        hid = self.encoder(self.features(flux, ivar))
        return self.mu(hid) * self.orient, self.logvar(hid).clamp(-12.0, 6.0), self.w_head(hid)

    def bound(self, mu: torch.Tensor) -> torch.Tensor:
        """The recipe keeps its encoder's means as they are (no latent range)."""
        return mu

    # -- decoders ----------------------------------------------------------------------
    def absorption(self, z: torch.Tensor, w: torch.Tensor, selective: bool = True) -> dict:
        """Each decoder's absorption (1 - flux) on its own pixels; z in the reported frame.
        The stop-gradients are part of the recipe: ``selective`` is accepted for interface
        compatibility and changes nothing (without gradients they are no-ops)."""
        z = z * self.orient
        zf, zc, za = z[:, 0:1], z[:, 1:2], z[:, 2:3]
        sf, sc = zf.detach(), zc.detach()
        return {"fe": self.decoders["fe"](torch.cat([zf, sc, w], -1)),
                "c": self.decoders["c"](torch.cat([sf, zc, w], -1)),
                "alpha": self.decoders["alpha"](torch.cat([sf, sc, za, w], -1))}

    def combine(self, parts: dict) -> torch.Tensor:
        """Model flux on ``win_all``: 1 - (Fe + C) outside the alpha windows, 1 - alpha in them."""
        total = parts["fe"].float().new_zeros(parts["fe"].shape[0], self.win_all.numel())
        for g in ELEMENT_GROUPS:
            total.index_add_(1, getattr(self, f"pos_{g}"), parts[g].float())
        return 1.0 - total

    # the same on this model's windows and decoders as on the project's model
    decode = DisentangledVAE.decode
    decode_fast = DisentangledVAE.decode_fast  # no reconstruction surrogate: the decoders themselves
    surrogate = None
    reconstruct = DisentangledVAE.reconstruct

    def window(self, group: str) -> torch.Tensor:
        return getattr(self, f"win_{group}")

    def part_pixels(self, group: str) -> np.ndarray:
        """Grid pixels on which decoder ``group`` predicts absorption (its output order)."""
        return self._part_idx[group]

    def kl(self, mu: torch.Tensor, chol: torch.Tensor) -> torch.Tensor:
        """Per-star KL of the posterior to the correlated prior (internal frame)."""
        return kl_to_prior(mu.float(), chol, self.prior_inv, self.prior_logdet)


@torch.no_grad()
def orient_axes(model: Signor2025VAE, n: int = 256) -> None:
    """Orient each axis so that its own decoder's absorption deepens as it grows (label-free).
    Only the ``orient`` buffer and config.orientation change."""
    device = model.orient.device
    w = torch.randn(n, model.config.n_w, device=device)
    signs = []
    for a, g in enumerate(ELEMENT_GROUPS):
        zp = torch.zeros(n, N_Z, device=device)
        zm = zp.clone()
        zp[:, a] += 0.5
        zm[:, a] -= 0.5
        d = float((model.absorption(zp, w)[g] - model.absorption(zm, w)[g]).mean())
        signs.append(1.0 if d >= 0 else -1.0)
    model.orient.mul_(torch.tensor(signs, device=device))
    model.config.orientation = [o * s for o, s in zip(model.config.orientation, signs)]
