"""Benchmarks behind ``chemlatent bench``: generator, store, encoder and rule throughput.

Each function returns a dict of measured numbers; nothing here asserts a target (targets
are compared in the README with the measured figures and the machine they came from).
"""

from __future__ import annotations

import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np


def machine() -> dict:
    """What the numbers were measured on."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "python": platform.python_version()}


def bench_generate(path: Path, n_stars: int, seed: int = 0) -> dict:
    from chemlatent.synth.generator import generate_survey

    generate_survey(path.parent / "warmup", 1024, seed=seed, progress=False)  # JIT compile
    t0 = time.perf_counter()
    generate_survey(path, n_stars, seed=seed, progress=False)
    dt = time.perf_counter() - t0
    return {"stars": n_stars, "seconds": round(dt, 2), "spectra_per_s": round(n_stars / dt)}


def bench_random_access(survey, n: int = 200, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, survey.n_stars, n)
    survey.spectrum(int(idx[0]))
    t = []
    for i in idx:
        t0 = time.perf_counter()
        survey.spectrum(int(i))
        t.append(time.perf_counter() - t0)
    t = np.asarray(t) * 1e3
    return {"n": n, "median_ms": round(float(np.median(t)), 2),
            "p95_ms": round(float(np.percentile(t, 95)), 2)}


def bench_encode(survey, model_dir: str | None, device: str = "cpu", precision: str = "auto") -> dict:
    from chemlatent.encode.precision import resolve_precision
    from chemlatent.encode.streaming import encode_survey
    from chemlatent.model.modelio import load_model

    model = load_model(model_dir, device=device)
    precision = resolve_precision(precision, device)
    out = Path(tempfile.mkdtemp()) / "lat.parquet"
    encode_survey(survey, model, out_path=out, device=device, precision=precision,
                  rows=np.arange(min(survey.n_stars, 8192)))  # warm-up
    out.unlink()
    t0 = time.perf_counter()
    encode_survey(survey, model, out_path=out, device=device, precision=precision)
    dt = time.perf_counter() - t0
    out.unlink()
    return {"stars": survey.n_stars, "seconds": round(dt, 2), "spectra_per_s": round(survey.n_stars / dt),
            "device": device, "precision": precision, "model": str(getattr(model, "model_dir", ""))}


def run_benchmarks(n_stars: int = 100_000, model_dir: str | None = None, workdir: str | None = None,
                   device: str = "cpu", only: list[str] | None = None) -> dict:
    """All benchmarks on a freshly generated survey of ``n_stars``."""
    from chemlatent.bench.rules import bench_rules
    from chemlatent.io.store import Survey

    only = only or ["generate", "store", "encode", "rules", "dashboard"]
    res: dict = {"machine": machine()}
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        path = Path(tmp) / "bench"
        gen = bench_generate(path, n_stars)
        if "generate" in only:
            res["generate"] = gen
        survey = Survey(path)
        if "store" in only:
            res["random_access"] = bench_random_access(survey)
        if "encode" in only:
            res["encode"] = bench_encode(survey, model_dir, device=device)
        if "dashboard" in only:
            from chemlatent.encode.streaming import encode_survey
            from chemlatent.model.modelio import load_model

            encode_survey(survey, load_model(model_dir, device=device), device=device)
            res["dashboard"] = bench_dashboard(path)
    if "rules" in only:
        res["rules"] = {str(n): bench_rules(n) for n in (1_000_000, 10_000_000)}
    return res


def _median_ms(fn, repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return round(float(np.median(times)) * 1e3, 1)


def _rss_gb() -> dict:
    """Current and peak resident memory of this process (GB; Linux)."""
    out = {}
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    key = "rss_gb" if line.startswith("VmRSS") else "peak_rss_gb"
                    out[key] = round(int(line.split()[1]) / 1e6, 2)
    except OSError:  # pragma: no cover - not Linux
        pass
    return out


def bench_dashboard(survey_dir: str | Path, repeats: int = 5, copies: int = 1) -> dict:
    """Server-side cost of the dashboard's interactions on an encoded survey.

    Re-rasterise: :func:`chemlatent.mapraster.rasterize_map` on a zoomed 560x480 view, with
    the hover columns, exactly what the page runs on each pan/zoom. The rest drives the
    GUI-free session state as the page's callbacks do. ``copies > 1`` times a session of
    ``copies`` jittered replicas of every star (a 10M-star session from a 1M-star survey;
    taps still read real spectra).
    """
    from chemlatent.explore.mapraster import rasterize_map
    from chemlatent.explore.state import HOVER_COLUMNS, ExplorerState, SurveyData

    t0 = time.perf_counter()
    data = SurveyData(survey_dir)
    load_s = time.perf_counter() - t0
    if copies > 1:
        data = data.tiled(copies)
    state = ExplorerState(data)
    frame = data.frame
    x, y = state.xy
    x0, x1 = np.nanpercentile(x, [5, 95])
    y0, y1 = np.nanpercentile(y, [5, 95])
    hover = tuple(c for c in HOVER_COLUMNS if c in frame.columns)
    res: dict = {"stars": data.n, "load_seconds": round(load_s, 2), "copies": copies,
                 "memory_after_load": _rss_gb()}

    def raster(color="density"):
        return rasterize_map(frame, state.x_axis, state.y_axis, color, x_range=(x0, x1),
                             y_range=(y0, y1), hover=hover)

    raster()  # compile once
    res["rerasterise_ms"] = _median_ms(raster, repeats)
    if "snr" in frame.columns:
        res["rerasterise_colour_snr_ms"] = _median_ms(lambda: raster("snr"), repeats)
    box = (x0, y0, (x0 + x1) / 2, (y0 + y1) / 2)

    def select_box():
        state.select_box(box)
        state.selection_summary()
        state.selection_histograms()

    res["box_select_and_summary_ms"] = _median_ms(select_box, repeats)
    cx, cy, rx, ry = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 3, (y1 - y0) / 3
    ang = np.linspace(0, 2 * np.pi, 60)
    poly = np.column_stack([cx + rx * np.cos(ang), cy + ry * np.sin(ang)])

    def select_lasso():
        state.select_lasso(poly)
        state.selection_summary()
        state.selection_histograms()

    res["lasso_select_and_summary_ms"] = _median_ms(select_lasso, repeats)
    rng = np.random.default_rng(0)

    def tap():
        k = int(rng.integers(data.n))
        state.pick_at(float(x[k]), float(y[k]), (x0, x1), (y0, y1))
        state.picked_spectrum()

    res["tap_to_spectrum_ms"] = _median_ms(tap, repeats)
    sigmas = iter(np.linspace(2.0, 4.0, repeats * 2))

    def threshold():
        state.element_sigma = float(next(sigmas))
        state.counts_summary()
        overlay = frame.iloc[np.flatnonzero(state.flagged)][[state.x_axis, state.y_axis, "star_id"]]
        if len(overlay) > 20000:  # the page rasterises big overlays
            rasterize_map(overlay, state.x_axis, state.y_axis, x_range=(x0, x1), y_range=(y0, y1))

    res["threshold_to_counts_and_overlay_ms"] = _median_ms(threshold, repeats)
    res["memory_end"] = _rss_gb()
    return res
