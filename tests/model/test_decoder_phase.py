"""Two-phase training (chemlatent.model.decoder_phase): decoders first, then the encoder alone."""

from __future__ import annotations

import json

import pytest
import torch
from test_model import TINY

from chemlatent.errors import ChemlatentError
from chemlatent.model.decoder_phase import decoder_parameters, phase_epochs, schedule_steps
from chemlatent.model.modelio import load_model
from chemlatent.model.training import TrainOptions, train


def _checkpoint_model(out):
    from safetensors.torch import load_file

    meta = json.loads((out / "checkpoint" / "state.json").read_text())
    t = load_file(str(out / "checkpoint" / meta["tensors"]))
    return {k[6:]: v for k, v in t.items() if k.startswith("model/")}


def test_phases_split_the_epochs_and_bad_splits_fail():
    assert phase_epochs(24, 0) == (24, 0)
    assert phase_epochs(24, 6) == (6, 18)
    assert schedule_steps(24, 6, 5, 10) == 60 and schedule_steps(24, 6, 6, 10) == 180
    for bad in (24, 30):
        with pytest.raises(ChemlatentError, match="--decoder-epochs"):
            phase_epochs(24, bad)


def test_decoders_stop_after_their_epochs_and_the_encoder_goes_on(tiny_survey, tmp_path):
    out = tmp_path / "m"
    opts = dict(TINY, decoder_epochs=1)
    train(tiny_survey.path, out, TrainOptions(epochs=1, **TINY), progress=False, log=lambda s: None)
    after_one = _checkpoint_model(out)
    logs = []
    train(tiny_survey.path, out, TrainOptions(epochs=3, **opts), resume=True, progress=False, log=logs.append)
    assert any("decoders frozen" in s for s in logs)
    final = load_model(out)
    names = {id(p): n for n, p in final.named_parameters()}
    dec = {names[id(p)] for p in decoder_parameters(final)}
    assert dec and all(n.startswith(("decoders.", "lines.", "log_slope")) for n in dec)
    state = final.state_dict()
    for n in dec:  # the decoders are those of the first epoch
        torch.testing.assert_close(state[n], after_one[n])
    moved = [n for n in ("mu.weight", "w_head.weight") if not torch.equal(state[n], after_one[n])]
    assert moved == ["mu.weight", "w_head.weight"]
    assert all(p.requires_grad for p in final.parameters())
    hist = json.loads((out / "config.json").read_text())["training"]["history"]
    assert [h["epoch"] for h in hist] == [1, 2, 3]


def test_a_run_stopped_in_the_encoder_phase_resumes_there(tiny_survey, tmp_path):
    out = tmp_path / "m"
    opts = dict(TINY, decoder_epochs=1)
    train(tiny_survey.path, out, TrainOptions(epochs=2, **opts), progress=False, log=lambda s: None)
    train(tiny_survey.path, out, TrainOptions(epochs=3, **opts), resume=True, progress=False,
          log=lambda s: None)
    hist = json.loads((out / "config.json").read_text())["training"]["history"]
    assert [h["epoch"] for h in hist] == [1, 2, 3]
    assert hist[-1]["lr"] < hist[1]["lr"]  # the encoder's own cycle anneals to its end
