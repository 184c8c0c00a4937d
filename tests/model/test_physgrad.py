"""Physical-gradient templates and the training term that uses them."""

from __future__ import annotations

import json

import numpy as np
import torch

from chemlatent.model.physgrad import GradientTemplates, gradient_alignment, render_derivatives
from chemlatent.model.training import TrainOptions, train
from chemlatent.model.vae import DisentangledVAE, ModelConfig
from chemlatent.spectra.grid import DEFAULT_GRID, default_windows

TINY = dict(batch_size=128, hidden=(32, 32, 16), max_stars=1000, seed=0, device="cpu")


def _in(wave: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return (wave >= lo) & (wave <= hi)


def test_templates_move_each_elements_own_lines():
    d = render_derivatives(DEFAULT_GRID, np.array([4800.0]), np.array([2.0]), n_draws=1)
    wave = DEFAULT_GRID.wave
    # more carbon deepens the CH G band (4290-4315 A) and barely touches the Mg b triplet
    c = d["c"][0]
    assert c[_in(wave, 4290, 4315)].min() < -0.05
    assert abs(c[_in(wave, 5165, 5190)]).max() < 0.2 * abs(c[_in(wave, 4290, 4315)]).max()
    # more alpha deepens Mg b (5167-5185 A, vacuum) far more than the CH band
    a = d["alpha"][0]
    assert a[_in(wave, 5165, 5190)].min() < -0.1
    assert a[_in(wave, 5165, 5190)].min() < 3 * a[_in(wave, 4290, 4315)].min()
    # more metals deepen lines on the whole: the iron template is mostly negative
    assert d["fe"][0].sum() < 0


def test_nearest_node_and_unit_norm():
    cfg = ModelConfig(grid=DEFAULT_GRID.to_dict(),
                      windows={g: [list(w) for w in ws] for g, ws in default_windows().items()},
                      hidden=[16])
    model = DisentangledVAE(cfg)
    t = GradientTemplates.build(DEFAULT_GRID, model.win_all.numpy())
    for tmpl in t.templates.values():
        torch.testing.assert_close(tmpl.norm(dim=1), torch.ones(tmpl.shape[0]))
    node = t.node_index(torch.tensor([3000.0, 3600.0, 7600.0, 5000.0]), torch.tensor([-1.0, 0.0, 5.0, 2.6]))
    i, j = node // t.logg.size, node % t.logg.size
    assert t.teff[i.numpy()].tolist() == [3600.0, 3600.0, 7600.0, 5100.0]
    assert t.logg[j.numpy()].tolist() == [0.0, 0.0, 5.0, 2.5]
    # an untrained model's decoders are not aligned; a few steps on the term align them
    z, w = torch.randn(64, 3), torch.randn(64, 2)
    nodes = torch.randint(0, t.templates["fe"].shape[0], (64,))
    opt = torch.optim.Adam(model.decoders.parameters(), lr=3e-3)
    first = float(gradient_alignment(model, z, w, nodes, t).mean().detach())
    for _ in range(60):
        loss = gradient_alignment(model, z, w, nodes, t).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss) < 0.7 * first


def test_training_with_the_physical_gradient_term(tiny_survey, tmp_path):
    out = tmp_path / "phys"
    train(tiny_survey.path, out, TrainOptions(epochs=3, phys_weight=0.5, **TINY), progress=False,
          log=lambda s: None)
    hist = json.loads((out / "config.json").read_text())["training"]["history"]
    assert all("phys" in h for h in hist)
    assert hist[-1]["phys"] < hist[0]["phys"]


def test_units_term_ties_each_derivative_norm_to_irons():
    cfg = ModelConfig(grid=DEFAULT_GRID.to_dict(),
                      windows={g: [list(w) for w in ws] for g, ws in default_windows().items()},
                      hidden=[16])
    torch.manual_seed(0)
    model = DisentangledVAE(cfg)
    t = GradientTemplates.build(DEFAULT_GRID, model.win_all.numpy())
    # the line list's alpha/iron ratio is near 1 and barely depends on the node
    ratio = t.log_ratio["alpha"].exp()
    assert float(ratio.median()) > 0.7 and float(ratio.median()) < 1.6
    assert torch.equal(t.log_ratio["fe"], torch.zeros_like(t.log_ratio["fe"]))
    z, w = torch.randn(64, 3), torch.randn(64, 2)
    nodes = torch.randint(0, t.templates["fe"].shape[0], (64,))
    shape_only = gradient_alignment(model, z, w, nodes, t)
    with_units = gradient_alignment(model, z, w, nodes, t, units_weight=1.0)
    assert bool((with_units >= shape_only).all()) and float((with_units - shape_only).mean()) > 0

    def units_error() -> float:
        return float((gradient_alignment(model, z, w, nodes, t, units_weight=1.0)
                      - gradient_alignment(model, z, w, nodes, t)).mean().detach())

    first = units_error()
    opt = torch.optim.Adam(model.decoders.parameters(), lr=3e-3)
    for _ in range(80):
        loss = gradient_alignment(model, z, w, nodes, t, units_weight=1.0).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert units_error() < 0.3 * first
