"""A small run of the many-users load test (benchmarks/load_test.py): three websocket sessions
make box selections, picks and threshold changes for ten seconds against one ``chemlatent
serve`` on a 3,000-star survey. No error, every action answered, each session sees only its
own selection and thresholds, and the server frees every session once they close.

Run with ``pytest -m browser tests/ui/test_load.py``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "load_test.py"


@pytest.fixture(scope="module")
def encoded_survey(ui_survey) -> Path:
    pytest.importorskip("panel")
    return ui_survey / "survey"


def test_three_sessions_for_ten_seconds(encoded_survey, tmp_path):
    log = tmp_path / "server.log"
    cmd = [sys.executable, str(SCRIPT), str(encoded_survey), "--sessions", "3", "--seconds", "10",
           "--think", "0.5", "--timeout", "120", "--no-warmup", "--server-log", str(log), "--json"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1200, cwd=ROOT)
    assert proc.stdout.strip(), proc.stderr[-3000:]
    r = json.loads(proc.stdout)
    detail = json.dumps({k: r.get(k) for k in ("client_errors", "server_error_kinds", "isolation", "sent",
                                               "answered", "alive_after")}, indent=1)
    assert r["errors"] == 0, detail
    assert r["server_alive"], detail
    # every action of every kind was made and answered
    assert all(r["sent"][k] > 0 for k in ("select", "pick", "threshold")), detail
    assert r["answered"] == r["sent_total"], detail
    assert all(r["latency"][k]["n"] == r["sent"][k] for k in ("select", "pick", "threshold")), detail
    # isolation: exact box counts, own thresholds, no unasked-for changes
    assert r["isolation"]["exact_counts"], detail
    assert r["isolation"]["checks"] >= r["sent"]["select"] + r["sent"]["threshold"], detail
    assert r["isolation"]["violations"] == 0, detail
    # the server discarded the three sessions and kept none of their state
    assert r["server_sessions_made"] == 3, detail
    assert r["sessions_discarded"], detail
    assert r["leaked_sessions"] == 0, detail
    assert r["ok"] and proc.returncode == 0, detail
