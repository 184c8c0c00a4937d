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
    from .synth import generate_survey

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
    from .inference import encode_survey
    from .modelio import load_model

    model = load_model(model_dir, device=device)
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
    from .rules import bench_rules
    from .store import Survey

    only = only or ["generate", "store", "encode", "rules"]
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
    if "rules" in only:
        res["rules"] = {str(n): bench_rules(n) for n in (1_000_000, 10_000_000)}
    return res
