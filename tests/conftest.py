"""Shared fixtures: a small synthetic survey generated once per test session."""

from __future__ import annotations

import pytest

from chemlatent.store import Survey
from chemlatent.synth import generate_survey


@pytest.fixture(scope="session")
def tiny_survey(tmp_path_factory) -> Survey:
    """1,200 synthetic stars (seed 11)."""
    path = tmp_path_factory.mktemp("surveys") / "tiny"
    return generate_survey(path, 1200, seed=11, chunk=512, progress=False)
