"""The annotations database: verdict history, lists, presets, WAL, crash safety."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import sqlalchemy as sa

from chemlatent.errors import ChemlatentError
from chemlatent.flags.presets import preset
from chemlatent.flags.tree import Cut, Rule, rule_from_json
from chemlatent.io.annotations import DB_NAME, AnnotationStore, database_url, open_annotations


@pytest.fixture()
def store(tmp_path):
    s = open_annotations(tmp_path, who="tester")
    yield s
    s.close()


def test_default_location_and_wal(tmp_path, store):
    assert (tmp_path / DB_NAME).exists()
    assert store.url == f"sqlite:///{(tmp_path / DB_NAME).resolve()}"
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
    assert database_url("postgresql://u@h/db") == "postgresql://u@h/db"
    assert database_url(tmp_path / "x.sqlite").endswith("x.sqlite")


def test_verdict_history_latest_wins(store):
    a = store.set_verdict(101, "candidate", "looks carbon rich")
    time.sleep(0.01)
    b = store.set_verdict(101, "accepted", "strong C2 bands", who="alice")
    store.set_verdict(202, "rejected", "bad sky subtraction")
    assert b > a
    cur = store.verdicts()
    assert list(cur["star_id"]) == [101, 202]
    row = cur.set_index("star_id").loc[101]
    assert row["verdict"] == "accepted" and row["who"] == "alice" and row["note"] == "strong C2 bands"
    assert str(row["created"].tz) == "UTC"
    hist = store.history(101)
    assert list(hist["verdict"]) == ["candidate", "accepted"]
    assert list(hist["who"]) == ["tester", "alice"]
    assert hist["created"].is_monotonic_increasing
    assert list(store.verdicts([202])["verdict"]) == ["rejected"]
    with pytest.raises(ChemlatentError, match="verdict must be"):
        store.set_verdict(1, "maybe")


def test_many_verdicts_and_large_filter(store):
    ids = store.set_verdicts(np.arange(2000), "candidate", list_name="cemp")
    assert len(ids) == 2000 and len(set(ids)) == 2000
    store.set_verdicts(np.arange(0, 2000, 2), "rejected")
    cur = store.verdicts(np.arange(1000))  # > 500 ids: filtered after the query
    assert len(cur) == 1000
    assert (cur["verdict"] == np.where(cur["star_id"] % 2 == 0, "rejected", "candidate")).all()


def test_candidate_lists_keep_versions(store):
    rule = preset("cemp")
    ids = np.array([5, 3, 2**40 + 1], np.int64)
    first = store.save_list("cemp-2025", ids, rule.to_json())
    got = store.get_list("cemp-2025")
    assert got.id == first and np.array_equal(got.star_ids, ids) and got.who == "tester"
    assert rule_from_json(got.rule_json) == rule
    store.save_list("cemp-2025", ids[:1], rule.to_dict(), who="bob")
    got = store.get_list("cemp-2025")
    assert np.array_equal(got.star_ids, ids[:1]) and got.who == "bob"
    store.save_list("empty", [], "{}")
    assert store.get_list("empty").star_ids.size == 0
    summary = store.lists().set_index("name")
    assert summary.loc["cemp-2025", "versions"] == 2 and summary.loc["cemp-2025", "n_stars"] == 1
    with pytest.raises(ChemlatentError, match="no saved candidate list"):
        store.get_list("nope")
    with pytest.raises(ChemlatentError):
        store.save_list(" ", ids)


def test_presets_roundtrip(store):
    r = Rule(Cut("c", "enhanced", 3.5), Cut("fe", "depleted", -2, "dex"), "vmp-carbon")
    store.save_preset("vmp-carbon", r.to_json())
    r2 = Rule(Cut("c", "enhanced", 4.0), Cut("fe", "depleted", -2, "dex"), "vmp-carbon")
    store.save_preset("vmp-carbon", r2.to_dict())
    assert rule_from_json(store.get_preset("vmp-carbon")) == r2
    assert store.get_preset("missing") is None
    assert list(store.presets()["name"]) == ["vmp-carbon"]
    with pytest.raises(ChemlatentError, match="not valid JSON"):
        store.save_preset("bad", "{oops")


def test_any_sqlalchemy_url(tmp_path):
    url = f"sqlite:///{tmp_path / 'other.db'}"
    with AnnotationStore(url) as s:
        s.set_verdict(1, "accepted")
    with AnnotationStore(url) as s:
        assert list(s.verdicts()["verdict"]) == ["accepted"]
    with pytest.raises(ChemlatentError, match="cannot open"):
        AnnotationStore("nosuchdialect://x/y")


def test_two_writers_share_the_database(tmp_path):
    a = AnnotationStore(tmp_path, who="a")
    b = AnnotationStore(tmp_path, who="b")
    for i in range(20):
        (a if i % 2 else b).set_verdict(i, "candidate")
    assert len(a.verdicts()) == 20 and len(b.history()) == 20
    a.close()
    b.close()


WRITER = textwrap.dedent("""
    import sys, time
    from chemlatent.io.annotations import AnnotationStore
    s = AnnotationStore(sys.argv[1], who="writer")
    i = 0
    while True:
        vid = s.set_verdict(1000 + i, ("candidate", "accepted", "rejected")[i % 3], f"note {i}")
        print(vid, 1000 + i, flush=True)
        i += 1
""")


def test_sigkill_loses_nothing_committed(tmp_path):
    env = dict(os.environ)
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    reported = []
    deadline = time.monotonic() + 20
    try:
        while len(reported) < 60 and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            reported.append(tuple(int(x) for x in line.split()))
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    assert proc.returncode == -signal.SIGKILL
    assert len(reported) >= 60, proc.stderr.read()
    with AnnotationStore(tmp_path) as s:
        rows = s.verdict_rows([vid for vid, _ in reported]).set_index("id")
        assert len(rows) == len(reported)
        for i, (vid, star) in enumerate(reported):
            assert rows.loc[vid, "star_id"] == star
            assert rows.loc[vid, "verdict"] == ("candidate", "accepted", "rejected")[i % 3]
            assert rows.loc[vid, "note"] == f"note {i}"
        # the database is consistent and writable after the crash
        with s.engine.connect() as conn:
            assert conn.execute(sa.text("PRAGMA integrity_check")).scalar() == "ok"
        s.set_verdict(1, "accepted")
