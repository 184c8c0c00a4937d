"""``chemlatent encode DIR [--model MODEL_DIR]``: latents for every star of a survey."""

from __future__ import annotations

import sys
import time

from .options import positive_int

HELP = "encode a survey with a model and write latents/<model>.parquet"


def add_arguments(p) -> None:
    p.add_argument("dir", help="survey directory")
    p.add_argument("--model", default=None, help="model directory (default: the bundled model)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"],
                   help="matrix precision (auto: bf16)")
    p.add_argument("--chunk", type=positive_int, default=8192, help="stars per block")
    p.add_argument("--overwrite", action="store_true", help="replace existing latents of this model")


def run(args) -> int:
    from tqdm.auto import tqdm

    from chemlatent.inference import encode_survey
    from chemlatent.modelio import load_model
    from chemlatent.store import Survey
    from chemlatent.training import pick_device

    survey = Survey(args.dir)
    device = pick_device(args.device)
    model = load_model(args.model, device=str(device))
    bar = tqdm(total=survey.n_stars, unit="star", disable=not sys.stderr.isatty(), desc="encode")
    t0 = time.perf_counter()
    path = encode_survey(survey, model, device=str(device), precision=args.precision,
                         chunk=args.chunk, overwrite=args.overwrite, progress=bar.update)
    bar.close()
    dt = time.perf_counter() - t0
    print(f"wrote {path} ({survey.n_stars} stars in {dt:.1f} s, {survey.n_stars / dt:,.0f} spectra/s)")
    return 0
