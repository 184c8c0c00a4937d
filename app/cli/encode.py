"""``chemlatent encode DIR``: latents for every star of a survey, for chosen stars (``--ids``,
a new run that replaces nothing), or on a Dask cluster (``--scheduler``)."""

from __future__ import annotations

import sys
import time

from chemlatent.app.cli.options import bounded_int, nonneg_int

HELP = "encode a survey with a model and write latents/<model>.parquet (or a run for --ids)"


def add_arguments(p) -> None:
    p.add_argument("dir", help="survey directory")
    p.add_argument("--model", default=None, help="model directory (default: the bundled model)")
    p.add_argument("--ids", default=None, metavar="FILE",
                   help="re-encode only these stars (text: one star_id per line; CSV/parquet: a star_id "
                        "column) into latents/runs/<run_id>.parquet")
    p.add_argument("--samples", type=bounded_int(0, 64), default=0,
                   help="posterior samples per star for the uncertainties (default 0: the encoder's width)")
    p.add_argument("--seed", type=nonneg_int, default=0, help="random seed of the posterior samples")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                   help="auto: CUDA when present (on each worker with --scheduler)")
    p.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"],
                   help="matrix precision (auto: bf16 on a GPU or a CPU with native bf16, else fp32)")
    p.add_argument("--chunk", type=bounded_int(1, 262_144), default=None,
                   help="stars per block (default 8192, 32768 on a GPU; with --ids: per batch, sized to the "
                        "device and samples; with --scheduler: per partition, 8192)")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="encode on a Dask cluster: a scheduler address (tcp://host:8786) or 'local'")
    p.add_argument("--workers", type=bounded_int(1, 256), default=1,
                   help="worker processes of --scheduler local (default 1)")
    p.add_argument("--overwrite", action="store_true", help="replace existing latents of this model")
    p.add_argument("--at-labels", action="store_true",
                   help="move z_fe from the encoder's Teff/logg to the catalog's Teff/logg labels where "
                        "a star has them (the survey's own pipeline values, attached with chemlatent labels; "
                        "docs/model.md, 'Encoding at the survey's labels')")
    p.add_argument("--posterior-mean", nargs="?", const="on", default="auto", choices=["auto", "on", "off"],
                   help="each star's posterior mean under the survey's own population (label-free): "
                        "faint stars' noisy fits weighed against the stars like them. auto (default): "
                        "when 10 %% or more of the stars have S/N < 20; on (the bare option); off: each "
                        "star's own fit (docs/model.md, 'A survey of faint stars')")


def run(args) -> int:
    from chemlatent.errors import ChemlatentError

    if args.ids and args.scheduler:
        raise ChemlatentError("--ids re-encodes chosen stars here; --scheduler encodes whole surveys: "
                              "use one or the other")
    if args.ids and args.overwrite:
        raise ChemlatentError("--overwrite does not apply to --ids: a re-encoding is a new run and "
                              "replaces nothing")
    for flag, on in (("--at-labels", args.at_labels), ("--posterior-mean", args.posterior_mean == "on")):
        if on and (args.ids or args.scheduler):
            raise ChemlatentError(f"{flag} encodes a whole survey here; it does not combine with "
                                  f"{'--ids' if args.ids else '--scheduler'}")
    if args.ids:
        return _subset(args)
    if args.scheduler:
        return _cluster(args)
    return _whole(args)


def _bar(total: int, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="star", disable=not sys.stderr.isatty(), desc=desc)


def _whole(args) -> int:
    from chemlatent.encode.whole import encode_whole
    from chemlatent.io.store import Survey
    from chemlatent.model.device import pick_device
    from chemlatent.model.modelio import load_model

    survey = Survey(args.dir)
    device = pick_device(args.device)
    model = load_model(args.model, device=str(device))
    bar = _bar(survey.n_stars, "encode")
    res = encode_whole(survey, model, at_labels=args.at_labels, posterior_mean=args.posterior_mean,
                       device=str(device), precision=args.precision, chunk=args.chunk,
                       overwrite=args.overwrite, progress=bar.update, samples=args.samples, seed=args.seed)
    bar.close()
    dt = res.encode_seconds
    print(f"wrote {res.path} ({survey.n_stars} stars in {dt:.1f} s, {survey.n_stars / dt:,.0f} spectra/s)")
    if args.at_labels:
        from chemlatent.io.latents import latents_metadata

        k = latents_metadata(res.path)["at_labels"]
        print(f"z_fe moved to the catalog's Teff/logg labels: {k['fe_per_kelvin'] * 1000:+.3f} per 1000 K, "
              f"{k['fe_per_dex_logg']:+.3f} per dex of logg (measured on {k['n_stars']} stars)")
    if res.prior is not None:
        print(f"posterior means under the survey's population (learned from {res.prior.n_stars} stars) "
              f"in {res.posterior_seconds:.1f} s ({res.why})")
    elif res.why and args.posterior_mean == "auto":
        print(res.choice)
    return 0


def _subset(args) -> int:
    from chemlatent.encode.runs import encode_subset, read_star_ids

    ids = read_star_ids(args.ids)
    bar = _bar(len(set(ids.tolist())), "re-encode")
    t0 = time.perf_counter()
    info = encode_subset(args.dir, ids, args.model, samples=args.samples, device=args.device,
                         precision=args.precision, batch=args.chunk, seed=args.seed,
                         progress=lambda done, total: bar.update(done - bar.n))
    bar.close()
    dt = time.perf_counter() - t0
    std = ", ".join(f"{k} {v:.3g}" for k, v in info.median_std.items())
    print(f"wrote run {info.run_id}: {info.path} ({info.n_stars} stars in {dt:.1f} s, "
          f"{info.n_stars / dt:,.0f} spectra/s; median std {std}"
          + (f" from {info.samples} samples" if info.samples else "") + ")"
          + ("; posterior means on the prior of the survey's own latents"
             if "posterior_mean" in info.meta else ""))
    return 0


def _cluster(args) -> int:
    from chemlatent.encode.distributed import encode_distributed
    from chemlatent.io.store import Survey

    bar = _bar(Survey(args.dir).n_stars, "encode")
    res = encode_distributed(args.dir, args.model, scheduler=args.scheduler, workers=args.workers,
                             device=args.device, precision=args.precision, samples=args.samples,
                             seed=args.seed, partition_stars=args.chunk or 8192,
                             overwrite=args.overwrite, progress=bar.update)
    bar.close()
    print(f"wrote {res.path} ({res.n_stars} stars in {res.seconds:.1f} s, "
          f"{res.n_stars / res.seconds:,.0f} spectra/s; {res.partitions} partitions on {res.scheduler}"
          + (f", {res.skipped} already done" if res.skipped else "") + ")")
    return 0
