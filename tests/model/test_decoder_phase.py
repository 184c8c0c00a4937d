"""Two-phase training (chemlatent.model.decoder_phase): decoders first, then the encoder alone."""

from __future__ import annotations

import json

import pytest
import torch
from test_model import TINY

from chemlatent.errors import ChemlatentError
from chemlatent.model.decoder_phase import decoder_parameters, in_encoder_phase, joint_steps, schedule_steps
from chemlatent.model.modelio import load_model
from chemlatent.model.training import TrainOptions, train

STEPS_PER_EPOCH = int(1200 * (1 - TINY["val_fraction"])) // TINY["batch_size"]


def _checkpoint_model(out):
    from safetensors.torch import load_file

    meta = json.loads((out / "checkpoint" / "state.json").read_text())
    t = load_file(str(out / "checkpoint" / meta["tensors"]))
    return {k[6:]: v for k, v in t.items() if k.startswith("model/")}


def test_phases_split_the_steps_and_a_short_run_has_one_phase():
    assert joint_steps(240, 0) == 240 and joint_steps(240, 60) == 60 and joint_steps(240, 500) == 240
    assert schedule_steps(59, 240, 60) == 60 and schedule_steps(60, 240, 60) == 180
    assert not in_encoder_phase(59, 240, 60) and in_encoder_phase(60, 240, 60)
    assert not in_encoder_phase(239, 240, 500)
    with pytest.raises(ChemlatentError, match="decoder_steps"):
        joint_steps(240, -1)


def test_decoders_stop_after_their_epochs_and_the_encoder_goes_on(tiny_survey, tmp_path):
    out = tmp_path / "m"
    opts = dict(TINY, decoder_steps=STEPS_PER_EPOCH)  # the first epoch
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
    opts = dict(TINY, decoder_steps=STEPS_PER_EPOCH // 2)  # the switch falls inside the first epoch
    logs = []
    train(tiny_survey.path, out, TrainOptions(epochs=2, **opts), progress=False, log=logs.append)
    assert any(f"step {STEPS_PER_EPOCH // 2}: decoders frozen" in s for s in logs)
    train(tiny_survey.path, out, TrainOptions(epochs=3, **opts), resume=True, progress=False,
          log=lambda s: None)
    hist = json.loads((out / "config.json").read_text())["training"]["history"]
    assert [h["epoch"] for h in hist] == [1, 2, 3]
    assert hist[-1]["lr"] < hist[1]["lr"]  # the encoder's own cycle anneals to its end
