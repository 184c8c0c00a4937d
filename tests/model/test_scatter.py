"""The learned per-pixel scatter: its likelihood, that it learns large scatter only where the
decoders cannot model the pixels, and that training with it saves a model without it."""

from __future__ import annotations

import json

import torch

from chemlatent.model.scatter import PixelScatter


def test_no_scatter_is_the_plain_chi2():
    torch.manual_seed(0)
    r, ivar = torch.randn(4, 10), torch.rand(4, 10) + 0.5
    ivar[0, 3] = 0.0
    sc = PixelScatter(10, initial=1e-8)
    plain = 0.5 * (ivar * r * r).sum(-1)
    assert torch.allclose(sc.nll(r, ivar), plain, rtol=1e-5)


def test_scatter_grows_only_where_residuals_exceed_the_noise():
    torch.manual_seed(1)
    n, p = 4000, 6
    ivar = torch.full((n, p), 1e4)  # noise 0.01
    r = torch.randn(n, p) * 0.01
    r[:, 2] += torch.randn(n) * 0.05  # a pixel the model misses by 0.05 rms
    sc = PixelScatter(p)
    opt = torch.optim.Adam(sc.parameters(), lr=0.05)
    for _ in range(400):
        opt.zero_grad()
        sc.nll(r, ivar).mean().backward()
        opt.step()
    s = torch.exp(sc.log_s).detach()
    assert abs(float(s[2]) - 0.05) < 0.005
    assert float(torch.cat([s[:2], s[3:]]).max()) < 0.01


def test_training_with_learned_scatter(tiny_survey, tmp_path):
    from chemlatent.model.modelio import load_model
    from chemlatent.model.training import TrainOptions, train

    out = train(tiny_survey.path, tmp_path / "m", TrainOptions(epochs=1, batch_size=64, hidden=(32, 32),
                                                               learned_scatter=True, device="cpu"),
                progress=False, log=lambda *_: None)
    cfg = json.loads((out / "config.json").read_text())
    summary = cfg["training"]["learned_scatter"]
    assert 0 < summary["median"] <= summary["p90"] <= summary["max"]
    model = load_model(out)  # the scatter trains the model; it is not part of the saved model
    assert not hasattr(model, "pixel_scatter")
