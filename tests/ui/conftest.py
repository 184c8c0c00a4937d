"""A 3,000-star survey encoded with a tiny model, built once for all browser tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def ui_survey(tmp_path_factory) -> Path:
    """Root directory holding ``survey/`` (encoded) and ``model/`` (one-epoch tiny model)."""
    from chemlatent.encode.streaming import encode_survey
    from chemlatent.model.modelio import load_model
    from chemlatent.model.training import TrainOptions, train
    from chemlatent.synth.generator import generate_survey

    root = tmp_path_factory.mktemp("ui")
    survey = generate_survey(root / "survey", 3000, seed=5, chunk=512, progress=False)
    train(survey.path, root / "model", TrainOptions(epochs=1, hidden=(32, 32, 16), device="cpu",
                                                    batch_size=256), progress=False)
    encode_survey(survey, load_model(root / "model"))
    return root
