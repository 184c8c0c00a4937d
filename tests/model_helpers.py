"""Small models shared by the model tests."""

from __future__ import annotations

import torch

from chemlatent.model.vae import DisentangledVAE, ModelConfig
from chemlatent.spectra.grid import DEFAULT_GRID, default_windows


def default_windows_config() -> dict:
    """The default element windows as a ModelConfig stores them."""
    return {g: [list(w) for w in ws] for g, ws in default_windows().items()}


def small_model() -> DisentangledVAE:
    """An untrained small MLP-decoder model on the default grid."""
    return DisentangledVAE(ModelConfig(grid=DEFAULT_GRID.to_dict(), hidden=[32, 32, 16],
                                       windows=default_windows_config()))


def line_model(seed: int = 0, **config) -> DisentangledVAE:
    """An untrained line-decoder model on the default grid with small random perturbations
    (a non-trivial Teff/logg dependence and metallicity response); ``config``: more
    ModelConfig fields."""
    torch.manual_seed(seed)
    cfg = ModelConfig(grid=DEFAULT_GRID.to_dict(), hidden=[32, 32, 16], decoder_hidden=[16, 16],
                      windows=default_windows_config(), decoder_form="lines", **config)
    model = DisentangledVAE(cfg)
    with torch.no_grad():
        for p in model.lines.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model
