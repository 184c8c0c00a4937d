"""First-run preparation: generate and encode in a thread with progress; failures reported."""

from __future__ import annotations

import pytest

from chemlatent.errors import ChemlatentError
from chemlatent.io.store import Survey
from chemlatent.jobs.preparation import Preparation


def test_generates_encodes_and_loads_once_with_progress(tmp_path):
    loads = []
    prep = Preparation(tmp_path / "demo", 600, 3, load=lambda p: loads.append(p) or "data")
    assert prep.status().stage == "waiting" and not prep.ready
    assert prep.start().wait(300)
    st = prep.status()
    assert st.stage == "ready" and prep.data == "data" and loads == [tmp_path / "demo"]
    assert any("generating 600" in m for m in prep.log) and any("encoding 600" in m for m in prep.log)
    survey = Survey(tmp_path / "demo")
    assert survey.n_stars == 600 and list((tmp_path / "demo" / "latents").glob("*.parquet"))
    # a second run reuses both: only the load step
    again = Preparation(tmp_path / "demo", 600, 3, load=lambda p: "again")
    assert again.run() == "again"
    assert not any("generating" in m or "encoding" in m for m in again.log)


def test_progress_counts_stars_and_failures_are_reported(tiny_survey):
    seen = []

    def load(path):
        seen.append(prep.status())
        raise ChemlatentError("latents unreadable")

    prep = Preparation(tiny_survey.path, tiny_survey.n_stars, 11, load=load)
    with pytest.raises(ChemlatentError):
        prep.run()
    assert seen[0].stage in ("load",)
    st = prep.status()
    assert st.stage == "failed" and st.message == "latents unreadable" and not prep.ready
    prep2 = Preparation(tiny_survey.path, 10, 0, load=lambda p: 1)
    prep2._begin("encode", 100, "x")
    prep2._advance(40)
    s2 = prep2.status()
    assert s2.done == 40 and s2.total == 100 and abs(s2.fraction - 0.4) < 1e-9


def test_a_faint_survey_s_first_run_says_how_it_was_encoded(tiny_survey, tmp_path):
    from encode_helpers import faint_copy

    path = faint_copy(tiny_survey.path, tmp_path / "faint")
    prep = Preparation(path, tiny_survey.n_stars, 11, load=lambda p: "data")
    assert prep.run() == "data"
    st = prep.status()
    # the same words `chemlatent encode` prints, kept after the step that wrote them
    assert st.stage == "ready" and len(st.notes) == 1
    lead = "posterior means under the survey's population: 100% of the stars have S/N < 20"
    assert st.notes[0].startswith(lead)
    assert st.notes[0] in prep.log
