"""``chemlatent train DIR --out MODEL_DIR``: train the disentangled VAE on a survey."""

from __future__ import annotations

import sys
import warnings

from .options import nonneg_int, positive_float, positive_int

HELP = "train the chemically disentangled VAE (self-supervised; Teff/logg the only labels)"


def add_arguments(p) -> None:
    p.add_argument("dir", help="survey directory")
    p.add_argument("--out", required=True, help="model directory to write")
    p.add_argument("--epochs", type=positive_int, default=24, help="default 24 (the bundled model)")
    p.add_argument("--batch-size", type=positive_int, default=512)
    p.add_argument("--lr", type=positive_float, default=2e-3)
    p.add_argument("--max-stars", type=positive_int, default=400_000,
                   help="train on at most this many stars (random subset)")
    p.add_argument("--hidden", default="256,256,128", help="encoder layer sizes")
    p.add_argument("--windows", default=None,
                   help="directory with iron/carbon/alpha_regions.csv (default: the paper's)")
    p.add_argument("--adv-weight", type=float, default=0.1, help="adversary weight (0 = off)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--seed", type=nonneg_int, default=0)
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint")


def run(args) -> int:
    from chemlatent.errors import ChemlatentError
    from chemlatent.training import TrainOptions, train

    try:
        hidden = tuple(int(h) for h in args.hidden.split(","))
    except ValueError:
        raise ChemlatentError(f"--hidden must be comma-separated layer sizes, got {args.hidden!r}") from None
    if not hidden or min(hidden) <= 0:
        raise ChemlatentError("--hidden sizes must be positive")
    opts = TrainOptions(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                        max_stars=args.max_stars, hidden=hidden, windows_dir=args.windows,
                        adv_weight=args.adv_weight, device=args.device, seed=args.seed)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = lambda msg, *a, **k: print(f"chemlatent train: warning: {msg}",
                                                           file=sys.stderr)
        out = train(args.dir, args.out, opts, resume=args.resume, progress=sys.stderr.isatty())
    print(f"model written to {out} (loss curves in {out / 'loss.png'})")
    return 0
