"""``chemlatent train DIR --out MODEL_DIR``: train the disentangled VAE on a survey."""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from chemlatent.app.cli.options import bounded_int, nonneg_float, positive_float
from chemlatent.model.train_defaults import TRAIN_DEFAULTS as D
from chemlatent.spectra.grid import ELEMENT_GROUPS

MAX_LAYER = 16384  # wider layers than this only exhaust memory on a spectrum-sized input
MIN_STARS = 16

HELP = "train the chemically disentangled VAE (self-supervised; Teff/logg the only labels)"


def add_arguments(p) -> None:
    p.add_argument("dir", help="survey directory")
    p.add_argument("--out", required=True, help="model directory to write")
    p.add_argument("--epochs", type=bounded_int(1, 100_000), default=None,
                   help=(f"default: as many as make about {D['target_steps']} optimiser steps (the "
                         f"line decoders' strengths drift with steps; docs/model.md)"
                         if D.get("target_steps") else "default 24 (the bundled model)"))
    p.add_argument("--batch-size", type=bounded_int(1, 65536), default=512)
    p.add_argument("--lr", type=_learning_rate, default=None,
                   help="peak learning rate (default 2e-3; 1e-3 with --recipe signor2025)")
    p.add_argument("--max-stars", type=bounded_int(MIN_STARS, 10**9), default=None,
                   help=f"train on at most this many stars (random subset; default "
                        f"{D.get('max_stars', 400_000):,}, 400,000 with --recipe signor2025)")
    p.add_argument("--hidden", default="256,256,128", help="encoder layer sizes")
    p.add_argument("--windows", default=None,
                   help="directory with iron/carbon/alpha_regions.csv (default: the paper's)")
    p.add_argument("--adv-weight", type=nonneg_float, default=0.1, help="adversary weight (0 = off)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--seed", type=bounded_int(0, 2**63 - 1), default=0)
    p.add_argument("--anchors", type=bounded_int(1, 10**9), nargs="?", const=-1, default=0, metavar="N",
                   help="anchored training (optional, never the default): pin the axes with the "
                        "reference abundances fe_h, c_fe, alpha_fe attached with `chemlatent labels`, "
                        "of at most N stars (default: all that have them)")
    p.add_argument("--anchor-columns", default="", metavar="COLS",
                   help="with --anchors: which of fe_h,c_fe,alpha_fe pin their axes (comma-separated; "
                        "default all that exist), e.g. fe_h when a cross-match gives metallicities only")
    p.add_argument("--learned-scatter", action="store_true",
                   help="learn a per-pixel scatter added to the noise in the likelihood, so pixels "
                        "the decoders cannot model weigh less (docs/model.md)")
    p.add_argument("--decoder", default=D["decoder_form"], choices=["mlp", "lines"],
                   help="lines (default): the line list's lines and bands, each moved only by its own "
                        "element group's abundance, rendered and normalised like the survey; mlp: one "
                        "network per element group (the bundled model's; docs/model.md)")
    p.add_argument("--doppler", default=D.get("line_doppler", "learned"), choices=["physical", "learned"],
                   help="line decoders' Doppler widths: from Teff/logg (physical: thermal plus a "
                        "published microturbulence relation) or learned per star (docs/model.md, "
                        "'The Doppler width sets the units')")
    p.add_argument("--line-strengths", type=nonneg_float, default=D.get("line_strength_weight", 0.0),
                   metavar="WEIGHT",
                   help="line decoders with --doppler physical: > 0 anchors the contrast between "
                        "lines to the line list (Boltzmann excitation, per-line offsets held near 0 "
                        "with this weight); 0 = one free Teff/logg term per line (docs/model.md)")
    p.add_argument("--smooth-continuum", type=bounded_int(0, 10_000), metavar="PIXELS",
                   default=D.get("line_smooth_continuum", 0),
                   help="line decoders: the optical depth no abundance moves is linear between knots "
                        "PIXELS grid pixels apart, so it cannot take over part of a line (0 = free "
                        "per pixel; docs/model.md)")
    _switch(p, "--hydrogen", "line_hydrogen", "own", "shared",
            "line decoders: hydrogen lines with their own (Stark) damping and wings out to "
            "128 pixels (own), or damped like the metals with wings cut at 24 (shared; "
            "docs/model.md, 'Hydrogen, and the labels')")
    _switch(p, "--continuum", "line_noisy_continuum", "noisy", "noiseless",
            "line decoders: emulate the survey's continuum normalisation on a noisy "
            "spectrum (noisy: its clipping keeps more upward noise, so the continuum sits "
            "higher at low S/N) or on the noiseless model flux (noiseless: models trained "
            "before; docs/model.md, 'The continuum of a noisy spectrum')")
    _switch(p, "--wings", "line_wing_cut", "cut", "taps",
            "line decoders: each damped line's wing reaches 12 Lorentzian half widths from "
            "its centre (cut; Ca II H and K out to 128 pixels), or fills a fixed number of "
            "pixels (taps: models trained before; docs/model.md, 'Wings that reach as far "
            "as the line's damping')")
    _switch(p, "--damping", "line_pressure_damping", "pressure", "labels",
            "line decoders: each line's damping also follows the pressure the metallicity "
            "sets (pressure: van der Waals ~ Pg for the metals, Stark ~ Pe for hydrogen, "
            "one learned response each), or Teff/logg alone (labels: models trained "
            "before; docs/model.md, 'Pressure damping on the current recipe')")
    _switch(p, "--line-physics", "line_shared_physics", "shared", "free",
            "line decoders: each line's strength depends on Teff/logg only through physics "
            "shared by every element group (shared: Boltzmann and Saha from the line list's "
            "excitation and ionisation potentials, one opacity and one electron pressure "
            "term), or through a free term per line (free; docs/model.md, 'Shared line physics')")
    p.add_argument("--decoder-pixels", default=None, choices=["windows", "all"],
                   help=f"line decoders: model the element windows only (windows) or every pixel of "
                        f"the grid (all: the lines outside the windows carry information too; "
                        f"docs/model.md, 'The information limit'); default "
                        f"{D.get('decoder_pixels', 'windows')} (windows with --decoder mlp)")
    p.add_argument("--adversary", default=D["adv_mode"], choices=["reverse", "confuse"],
                   help="how the Teff/logg adversary acts on the latents: 'confuse' (default: the "
                        "encoder flattens the adversary's predictions) or gradient reversal (the "
                        "bundled model's; docs/model.md)")
    p.add_argument("--prior", default=D["prior"], choices=["star", "conditional", "population", "centred"],
                   help="the latents' prior: N(m, 1) with one learned centre m (centred, default); "
                        "N(0, 1) per star (star, the bundled model's); centred on a learned function "
                        "of Teff/logg (conditional); z_c and z_alpha centred on a learned function of "
                        "z_fe (population; docs/model.md)")
    p.add_argument("--refine-encoder", type=bounded_int(0, 10_000), default=D["refine_epochs"],
                   metavar="EPOCHS",
                   help=f"after training, refine the latents of --refine-stars training stars against "
                        f"the decoders and train the encoder EPOCHS epochs to predict them (default "
                        f"{D['refine_epochs']}; 0 = off; docs/model.md, 'Refined encoder')")
    p.add_argument("--refine-stars", type=bounded_int(1, 10**9), default=D["refine_stars"],
                   help="with --refine-encoder: how many training stars to refine (about 30 ms each "
                        f"on 2 CPU cores with the line decoders; default {D['refine_stars']}, every training "
                        f"star of the default --max-stars)")
    p.add_argument("--refine-prior", default="centred" if D["refine_centred"] else "origin",
                   choices=["centred", "origin"],
                   help="with --refine-encoder: centre the refinement's prior on the encoder's mean z "
                        "over the refined stars (centred, default) or on the origin")
    p.add_argument("--refine-centred", dest="refine_prior", action="store_const", const="centred",
                   help=argparse.SUPPRESS)  # the same as --refine-prior centred (kept for old commands)
    p.add_argument("--refine-nuisance", type=nonneg_float, default=None,
                   metavar="SIGMA",
                   help=f"with --refine-encoder: refine each star's Teff/logg too, held to the "
                        f"encoder's within SIGMA (standardised units; default {D['refine_nuisance_sigma']}; "
                        f"0 = held fixed)")
    p.add_argument("--refine-start", default="labels" if D.get("refine_at_labels") else "encoder",
                   choices=["labels", "encoder"],
                   help="with --refine-encoder: start each star's Teff/logg at its labels where it has "
                        "them (labels: as the decoders saw them in training) or at the encoder's "
                        "guess (encoder; docs/model.md, 'Hydrogen, and the labels')")
    p.add_argument("--refine-axes", default=None,
                   metavar="AXES",
                   help="with --refine-encoder: the axes whose refit targets are the refined latents "
                        "(comma-separated from fe, c, alpha; default all three; the others keep the "
                        "encoder's own; "
                        "docs/model.md, 'Real stars: line depths and the refit')")
    p.add_argument("--refit-loss", default=D.get("refit_loss", "equal"), choices=["equal", "standardised"],
                   help="with --refine-encoder: the refit's squared error per axis counts alike (equal; "
                        "the widest axis, z_fe, leads) or divided by that axis's variance (standardised)")
    p.add_argument("--refine-kept-share", type=float, default=None, metavar="W",
                   help="with --refine-axes: the share (0-1) of the encoder's own z in the other axes' "
                        "refit targets, the rest their refined z (default 1; docs/model.md, "
                        "'Hydrogen steers no abundance')")
    p.add_argument("--refit-lr", default=D.get("refit_schedule", "constant"), choices=["constant", "cosine"],
                   help="with --refine-encoder: the refit's learning rate constant or falling along a "
                        "half cosine to 0 (cosine)")
    p.add_argument("--no-surrogate", action="store_true",
                   help="line decoders: do not fit the reconstruction surrogate that encoding's chi2 "
                        "uses (chi2 then comes from the line decoders themselves, at about half the "
                        "encoding speed; docs/model.md, 'Encoding a line model fast')")
    p.add_argument("--no-latent-range", action="store_true",
                   help="do not clamp encodings into the training stars' latent range (by default "
                        "a star unlike the training set cannot get latents far outside it)")
    p.add_argument("--recipe", default="default", choices=["default", "signor2025"],
                   help="training recipe: this project's (default) or the published one of "
                        "Signor et al. 2025 (CNN encoder, correlated prior; docs/model.md)")
    p.add_argument("--channels", default="128,256,512",
                   help="signor2025 only: the encoder's three conv filter counts (the paper's 128,256,512)")
    p.add_argument("--second-refinement", action="store_true",
                   help="after training, refine and refit the encoder a second time: Teff/logg held "
                        "fixed, z_alpha refitted to the refined latents, z_fe and z_c halfway (better "
                        "alpha and alpha-poor flags on every survey measured; about twice the "
                        "refinement's time); the first pass's model is kept in OUT/<name>-first-pass "
                        "(docs/model.md, 'The second refinement on the stand-ins')")
    p.add_argument("--from-model", metavar="MODEL",
                   help="keep MODEL's decoders and refine and refit its encoder again on this survey "
                        "(the one MODEL was trained on) with MODEL's own training options; every "
                        "other training option but --refine-nuisance, --refine-axes and --refine-kept-share "
                        "is ignored "
                        "(docs/model.md, 'Hydrogen steers no abundance')")
    p.add_argument("--resume", action="store_true",
                   help="continue from the last checkpoint (same options; --epochs may grow)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a model (or an interrupted run's checkpoint) already in --out")


def _switch(p, flag: str, key: str, on: str, off: str, help: str) -> None:
    """A two-way option whose default is ``on`` where TRAIN_DEFAULTS[key] is set, else ``off``."""
    p.add_argument(flag, default=on if D.get(key) else off, choices=[on, off], help=help)


def _learning_rate(text: str) -> float:
    value = positive_float(text)
    if value > 1.0:
        raise argparse.ArgumentTypeError(f"must be at most 1 (training diverges), got {text}")
    return value


def refine_axes(text: str) -> tuple[int, ...]:
    """``--refine-axes fe,c,alpha`` as axis numbers."""
    from chemlatent.errors import ChemlatentError

    names = [t.strip() for t in text.split(",") if t.strip()]
    bad = [n for n in names if n not in ELEMENT_GROUPS]
    if bad or not names:
        raise ChemlatentError(f"--refine-axes takes axes from fe, c, alpha, got {text!r}")
    return tuple(sorted({ELEMENT_GROUPS.index(n) for n in names}))


def check_out(survey: Path, out: Path, *, resume: bool, overwrite: bool) -> None:
    """Refuse an --out that would overwrite a survey, a file or a model nobody asked to replace."""
    from chemlatent.errors import ChemlatentError
    from chemlatent.model.training import CHECKPOINT

    if out.exists() and not out.is_dir():
        raise ChemlatentError(f"--out {out} is a file; give a directory for the model")
    if (out / "survey.json").exists() or (out / "spectra.zarr").exists():
        raise ChemlatentError(f"--out {out} is a survey directory; give a separate model directory")
    if out.resolve() == survey.resolve():
        raise ChemlatentError("--out must not be the survey directory itself")
    if resume or overwrite or not out.is_dir():
        return
    if (out / "weights.safetensors").exists() or (out / "config.json").exists():
        raise ChemlatentError(f"{out} already holds a model; choose another --out or pass --overwrite")
    if (out / CHECKPOINT / "state.json").exists():
        raise ChemlatentError(f"{out} holds the checkpoint of an interrupted run: pass --resume to "
                              "continue it or --overwrite to start again")


def check_windows(survey_dir: Path, windows_dir: str | None) -> None:
    """Refuse element windows that cannot be read or that miss the survey's wavelength grid."""
    from chemlatent.errors import ChemlatentError
    from chemlatent.io.store import Survey
    from chemlatent.spectra.grid import ELEMENT_GROUPS, load_windows, window_masks

    grid = Survey(survey_dir).grid
    windows = load_windows(windows_dir)  # clean one-line errors for missing or malformed files
    masks = window_masks(grid, windows)
    names = {"fe": "iron", "c": "carbon", "alpha": "alpha"}
    thin = [names.get(g, g) for g in ELEMENT_GROUPS if masks[g].sum() < 5]
    if thin:
        wave = grid.wave
        raise ChemlatentError(f"{'--windows ' + windows_dir if windows_dir else 'the element windows'}: "
                              f"the {', '.join(thin)} windows cover fewer than 5 pixels of the survey "
                              f"grid ({wave[0]:.0f}-{wave[-1]:.0f} A)")


def run(args) -> int:
    from chemlatent.errors import ChemlatentError
    from chemlatent.model.training import TrainOptions, train

    try:
        hidden = tuple(int(h) for h in args.hidden.split(","))
    except ValueError:
        raise ChemlatentError(f"--hidden must be comma-separated layer sizes, got {args.hidden!r}") from None
    if not hidden or min(hidden) <= 0 or max(hidden) > MAX_LAYER or len(hidden) > 16:
        raise ChemlatentError(f"--hidden sizes must be 1 to {MAX_LAYER} (at most 16 layers), "
                              f"got {args.hidden!r}")
    if args.decoder_pixels == "all" and args.decoder != "lines":
        raise ChemlatentError("--decoder-pixels all needs the line decoders (--decoder lines)")
    if args.decoder_pixels is None:
        args.decoder_pixels = D.get("decoder_pixels", "windows") if args.decoder == "lines" else "windows"
    if args.refine_kept_share is not None:  # before any work, not after the epochs
        from chemlatent.model.refine import check_kept_share

        check_kept_share(args.refine_kept_share)
    check_out(Path(args.dir), Path(args.out), resume=args.resume, overwrite=args.overwrite)
    if args.second_refinement:
        from chemlatent.model.retrain_encoder import first_pass_dir

        if args.from_model or args.refine_encoder <= 0 or getattr(args, "recipe", "default") != "default":
            raise ChemlatentError("--second-refinement follows a refined encoder: it needs --refine-encoder "
                                  "above 0 and the default recipe, and cannot be combined with --from-model")
        # an interrupted first pass is refused (or resumed) the same way as a plain run
        check_out(Path(args.dir), first_pass_dir(args.out), resume=args.resume, overwrite=args.overwrite)
    check_windows(Path(args.dir), args.windows)
    if args.from_model:
        from chemlatent.model.retrain_encoder import retrain_encoder

        given = {} if args.refine_nuisance is None else {"refine_nuisance_sigma": args.refine_nuisance}
        if args.refine_axes is not None:
            given["refine_axes"] = refine_axes(args.refine_axes)
        if args.refine_kept_share is not None:
            given["refine_kept_share"] = args.refine_kept_share
        out = retrain_encoder(args.from_model, args.dir, args.out, overrides=given)
        print(f"model written to {out}")
        return 0
    if args.refine_nuisance is None:  # None only to tell --from-model whether it was given
        args.refine_nuisance = D["refine_nuisance_sigma"]
    if args.refine_axes is None:  # likewise
        args.refine_axes = ",".join(ELEMENT_GROUPS)
    if args.refine_kept_share is None:
        args.refine_kept_share = TrainOptions.refine_kept_share
    # no --epochs: the defaults' step budget (the same on --resume: same survey, same epochs)
    target = D.get("target_steps", 0) if args.epochs is None else 0
    if args.epochs is None:
        args.epochs = 24
    if args.max_stars is None:
        signor = getattr(args, "recipe", "default") == "signor2025"
        args.max_stars = 400_000 if signor else D.get("max_stars", 400_000)
    if getattr(args, "recipe", "default") == "signor2025":
        return _run_signor2025(args)
    if args.lr is None:
        args.lr = 2e-3
    opts = TrainOptions(epochs=args.epochs, target_steps=target, batch_size=args.batch_size,
                        lr=args.lr, max_stars=args.max_stars, hidden=hidden, windows_dir=args.windows,
                        adv_weight=args.adv_weight, device=args.device, seed=args.seed,
                        anchor_stars=args.anchors, learned_scatter=args.learned_scatter,
                        decoder_form=args.decoder, line_doppler=args.doppler,
                        line_strength_weight=args.line_strengths,
                        line_smooth_continuum=args.smooth_continuum, decoder_pixels=args.decoder_pixels,
                        line_hydrogen=args.hydrogen == "own" and args.decoder == "lines",
                        line_wing_cut=args.wings == "cut" and args.decoder == "lines",
                        line_pressure_damping=args.damping == "pressure" and args.decoder == "lines",
                        line_shared_physics=args.line_physics == "shared" and args.decoder == "lines",
                        line_noisy_continuum=args.continuum == "noisy" and args.decoder == "lines",
                        adv_mode=args.adversary, prior=args.prior,
                        refine_epochs=args.refine_encoder, refine_stars=args.refine_stars,
                        refine_centred=args.refine_prior == "centred",
                        refine_nuisance_sigma=args.refine_nuisance,
                        refine_at_labels=args.refine_start == "labels",
                        refine_axes=refine_axes(args.refine_axes), refine_kept_share=args.refine_kept_share,
                        refit_loss=args.refit_loss, refit_schedule=args.refit_lr,
                        latent_range=not args.no_latent_range, surrogate=not args.no_surrogate,
                        anchor_columns=tuple(c.strip() for c in args.anchor_columns.split(",") if c.strip()))
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = lambda msg, *a, **k: print(f"chemlatent train: warning: {msg}",
                                                           file=sys.stderr)
        if args.second_refinement:
            from chemlatent.model.retrain_encoder import train_with_second_refinement

            out = train_with_second_refinement(args.dir, args.out, opts, resume=args.resume,
                                               progress=sys.stderr.isatty())
        else:
            out = train(args.dir, args.out, opts, resume=args.resume, progress=sys.stderr.isatty())
    print(f"model written to {out} (loss curves in {out / 'loss.png'})")
    return 0


def _run_signor2025(args) -> int:
    """``--recipe signor2025``: the published recipe (chemlatent.model.train_signor2025)."""
    from chemlatent.errors import ChemlatentError
    from chemlatent.model.train_signor2025 import Signor2025Options, train_signor2025

    if args.resume:
        raise ChemlatentError("--resume is not available with --recipe signor2025")
    try:
        channels = tuple(int(c) for c in args.channels.split(","))
    except ValueError:
        raise ChemlatentError(f"--channels must be three comma-separated counts, "
                              f"got {args.channels!r}") from None
    if len(channels) != 3 or min(channels) <= 0 or max(channels) > 4096 or channels[-1] % 2:
        raise ChemlatentError(f"--channels needs three counts of 1 to 4096, the last even; "
                              f"got {args.channels!r}")
    opts = Signor2025Options(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr or 1e-3,
                             max_stars=args.max_stars, adv_weight=args.adv_weight, device=args.device,
                             seed=args.seed, channels=channels, windows_dir=args.windows)
    out = train_signor2025(args.dir, args.out, opts, progress=sys.stderr.isatty())
    print(f"model written to {out} (loss history in {out / 'history.json'})")
    return 0
