"""The benchmark functions behind ``chemlatent bench`` return complete, positive timings."""

from __future__ import annotations

import shutil

from chemlatent.bench.runner import bench_dashboard, bench_random_access
from chemlatent.encode.streaming import encode_survey
from chemlatent.io.store import Survey
from chemlatent.model.modelio import load_model


def test_dashboard_and_store_benchmarks(tiny_survey, tmp_path):
    path = tmp_path / "s"
    shutil.copytree(tiny_survey.path, path, ignore=shutil.ignore_patterns("latents", "annotations*"))
    survey = Survey(path)
    encode_survey(survey, load_model(None))
    res = bench_dashboard(path, repeats=2)
    assert res["stars"] == survey.n_stars
    for key in ("rerasterise_ms", "box_select_and_summary_ms", "lasso_select_and_summary_ms",
                "tap_to_spectrum_ms", "threshold_to_counts_and_overlay_ms"):
        assert res[key] > 0
    ra = bench_random_access(survey, n=20)
    assert 0 < ra["median_ms"] <= ra["p95_ms"]
