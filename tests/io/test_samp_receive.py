"""SAMP from TOPCAT: row selections and highlights of this survey's tables reach us as
star_ids; other tables are ignored with a note."""

from __future__ import annotations

import threading

import numpy as np
import pandas as pd
import pytest
from samp_helpers import hub_and_topcat

from chemlatent.io.export import export_table, provenance
from chemlatent.io.samp_receive import HIGHLIGHT, SELECT, SampReceiver


@pytest.fixture()
def tables(tmp_path):
    survey = tmp_path / "survey"
    survey.mkdir()
    ids = np.array([11, 22, 33, 44, 55])
    ours = export_table(pd.DataFrame({"star_id": ids, "x": np.arange(5.0)}), tmp_path / "ours.vot",
                        provenance(survey_path=survey))
    fits = export_table(pd.DataFrame({"star_id": ids[::-1]}), tmp_path / "ours.fits",
                        provenance(survey_path=survey))
    other = tmp_path / "other"
    other.mkdir()
    theirs = export_table(pd.DataFrame({"star_id": ids}), tmp_path / "theirs.vot",
                          provenance(survey_path=other))
    return survey, ours.as_uri(), fits.as_uri(), theirs.as_uri()


def test_rows_map_to_star_ids_of_this_survey_only(tables):
    survey, ours, fits, theirs = tables
    got, notes = {}, []
    r = SampReceiver(survey, lambda ids: got.setdefault("sel", ids), lambda sid: got.setdefault("pick", sid),
                     on_note=notes.append)
    r.handle(SELECT, {"url": ours, "table-id": "t1", "row-list": ["0", "3", "9"]})
    assert got["sel"].tolist() == [11, 44]
    r.handle(HIGHLIGHT, {"url": fits, "table-id": "t2", "row": "1"})
    assert got["pick"] == 44
    r.handle(SELECT, {"url": theirs, "row-list": ["0"]})
    r.handle(SELECT, {"url": "http://example.org/t.vot", "row-list": ["0"]})
    r.handle(HIGHLIGHT, {"url": ours, "row": "7"})
    assert len(notes) == 3 and "another survey" in notes[0] and "not a file" in notes[1]
    r.register("samp://sent", [7, 8])
    got.clear()
    r.handle(SELECT, {"url": "samp://sent", "row-list": ["1"]})
    assert got["sel"].tolist() == [8]


def test_topcat_messages_through_a_hub(tables, tmp_path, monkeypatch):
    survey, ours, _, _ = tables
    got, done = {}, threading.Event()

    def on_select(ids):
        got["sel"] = ids
        if "pick" in got:
            done.set()

    def on_pick(sid):  # the hub may deliver the two notifications in either order
        got["pick"] = sid
        if "sel" in got:
            done.set()

    with hub_and_topcat(tmp_path / "lock", monkeypatch) as topcat:
        r = SampReceiver(survey, on_select, on_pick)
        r.start()
        try:
            assert r.listening
            topcat.notify_all({"samp.mtype": SELECT, "samp.params": {"url": ours, "table-id": "t",
                                                                       "row-list": ["1", "2"]}})
            topcat.notify_all({"samp.mtype": HIGHLIGHT, "samp.params": {"url": ours, "table-id": "t",
                                                                          "row": "4"}})
            assert done.wait(10)
            assert got["sel"].tolist() == [22, 33] and got["pick"] == 55
        finally:
            r.stop()
        assert not r.listening


def test_no_hub_is_one_clear_error(tmp_path, monkeypatch):
    from chemlatent.errors import ChemlatentError

    monkeypatch.setenv("SAMP_HUB", f"std-lockurl:{(tmp_path / 'none').as_uri()}")
    with pytest.raises(ChemlatentError, match="no SAMP hub"):
        SampReceiver(tmp_path, print, print).start(hub_timeout=2)
