"""Shared fixtures: a small synthetic survey generated once per test session."""

from __future__ import annotations

import pytest

from chemlatent.io.store import Survey
from chemlatent.synth.generator import generate_survey


@pytest.fixture(scope="session")
def tiny_survey(tmp_path_factory) -> Survey:
    """1,200 synthetic stars (seed 11)."""
    path = tmp_path_factory.mktemp("surveys") / "tiny"
    return generate_survey(path, 1200, seed=11, chunk=512, progress=False)


@pytest.fixture(scope="session")
def encoded_tiny(tiny_survey, tmp_path_factory):
    """A copy of the tiny survey encoded with the bundled model (its own directory)."""
    import shutil

    from chemlatent.encode.streaming import encode_survey
    from chemlatent.model.modelio import load_model

    path = tmp_path_factory.mktemp("encoded") / "tiny"
    shutil.copytree(tiny_survey.path, path, ignore=shutil.ignore_patterns("latents", "annotations*"))
    encode_survey(Survey(path), load_model(None))
    return path
