"""``chemlatent generate DIR --stars N [--seed S]``: write a synthetic survey."""

from __future__ import annotations

import sys
import time

from chemlatent.app.cli.options import nonneg_int, positive_int

HELP = "generate a synthetic survey with true labels (deterministic from the seed)"


def add_arguments(p) -> None:
    p.add_argument("dir", help="survey directory to create")
    p.add_argument("--stars", type=positive_int, required=True, help="number of stars")
    p.add_argument("--seed", type=nonneg_int, default=0, help="random seed (default 0)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing survey")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    s = p.add_argument_group("stand-in surveys (other physics, to test that defaults generalise)")
    s.add_argument("--line-scatter", type=float, default=0.0, metavar="DEX",
                   help="shift every atomic line's strength by its own random offset of this sd")
    s.add_argument("--band-scatter", type=float, default=0.0, metavar="DEX",
                   help="likewise for every molecular band")
    s.add_argument("--resolution", type=float, default=2000.0, help="resolving power (default 2000)")
    s.add_argument("--wave-range", default=None, metavar="LO,HI",
                   help="wavelength range in Angstrom (default 3900,10400; e.g. 3700,9000 LAMOST-like)")
    s.add_argument("--mix", default=None, metavar="THIN,THICK,HALO",
                   help="fractions of thin disc, thick disc and halo (default 0.42,0.25,0.33)")
    s.add_argument("--teff-tilt", type=float, default=0.0, metavar="DEX",
                   help="atomic lines weaker by this much per 1000 K above the Sun's Teff "
                        "(stronger below it): another temperature response")
    s.add_argument("--weak-lines", type=nonneg_int, default=0, metavar="N",
                   help="add N weak Fe I lines at random wavelengths (a forest of weak lines)")
    s.add_argument("--snr-range", default=None, metavar="LO,HI",
                   help="the stars' S/N range (default 10,90)")
    s.add_argument("--snr-shape", default="beta", choices=["beta", "uniform", "log"],
                   help="beta: peaked mid-range (default); uniform: flat; log: uniform in log S/N, "
                        "most stars faint (a magnitude-limited survey)")
    s.add_argument("--physics-seed", type=nonneg_int, default=1, help="draws the line and band offsets")


def _floats(text: str, n: int, flag: str) -> tuple[float, ...]:
    from chemlatent.errors import ChemlatentError

    try:
        vals = tuple(float(v) for v in text.split(","))
    except ValueError:
        vals = ()
    if len(vals) != n:
        raise ChemlatentError(f"{flag} needs {n} comma-separated numbers, got {text!r}")
    return vals


def standin_from(args):
    """The stand-in options of ``generate`` (None when all are default) and the grid."""
    from chemlatent.spectra.grid import DEFAULT_GRID
    from chemlatent.synth.standins import DEFAULT_MIX, DEFAULT_SNR_RANGE, StandIn, grid_for_range

    grid = DEFAULT_GRID
    if args.wave_range:
        grid = grid_for_range(*_floats(args.wave_range, 2, "--wave-range"))
    mix = _floats(args.mix, 3, "--mix") if args.mix else DEFAULT_MIX
    snr_range = _floats(args.snr_range, 2, "--snr-range") if args.snr_range else DEFAULT_SNR_RANGE
    standin = StandIn(args.line_scatter, args.band_scatter, args.resolution, mix, args.physics_seed,
                      args.teff_tilt, args.weak_lines, snr_range, args.snr_shape)
    return (None if standin.is_default else standin), grid


def run(args) -> int:
    from chemlatent.synth.generator import generate_survey

    if args.stars > 200_000_000:
        from chemlatent.errors import ChemlatentError

        raise ChemlatentError(f"--stars {args.stars} is beyond what one survey directory supports (200M)")
    standin, grid = standin_from(args)
    t0 = time.perf_counter()
    survey = generate_survey(args.dir, args.stars, args.seed, overwrite=args.overwrite,
                             progress=not args.quiet and sys.stderr.isatty(), grid=grid, standin=standin)
    dt = time.perf_counter() - t0
    print(f"wrote {survey.n_stars} stars to {survey.path} in {dt:.1f} s "
          f"({survey.n_stars / dt:,.0f} spectra/s)")
    return 0
