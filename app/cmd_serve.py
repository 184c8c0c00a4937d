"""``chemlatent serve DIR [--port P] [--address 127.0.0.1] [--model MODEL_DIR] [--no-show]``."""

from __future__ import annotations

import sys

from .options import positive_int

HELP = "serve the interactive explorer (latent map, spectra, thresholds, candidates) for a survey"


def add_arguments(p) -> None:
    p.add_argument("dir", help="survey directory (with latents/ from chemlatent encode)")
    p.add_argument("--port", type=positive_int, default=5006, help="port (default 5006)")
    p.add_argument("--address", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--model", default=None,
                   help="model directory or name (default: the one named by the latents file)")
    p.add_argument("--db", default=None,
                   help="annotations database (SQLAlchemy URL; default DIR/annotations.sqlite)")
    p.add_argument("--who", default=None, help="name recorded with verdicts (default: login name)")
    p.add_argument("--no-show", action="store_true", help="do not open a browser")
    p.add_argument("--out-of-core", action="store_true",
                   help="read the latents lazily with Dask (surveys larger than memory): map, box "
                        "summaries and spectra only")


def run(args, source=None) -> int:
    """Serve ``args.dir``; ``source``: an already started first-run preparation
    (:class:`chemlatent.preparation.Preparation`) to serve while it works."""
    from chemlatent.session import SurveyData

    address = getattr(args, "address", None) or "127.0.0.1"
    port = getattr(args, "port", None) or 5006
    if source is None and getattr(args, "out_of_core", False):
        from .overview import OverviewSource

        source = OverviewSource(args.dir, getattr(args, "model", None))
        print(f"chemlatent serve: {source.n:,} stars, read lazily; open http://{address}:{port}/ "
              "(Ctrl-C stops)", file=sys.stderr)
    if source is None:
        print(f"chemlatent serve: loading {args.dir} ...", file=sys.stderr)
        data = SurveyData(args.dir, getattr(args, "model", None), db=getattr(args, "db", None),
                          who=getattr(args, "who", None))
        for note in data.notes:
            print(f"chemlatent serve: note: {note}", file=sys.stderr)
        print(f"chemlatent serve: {data.n:,} stars loaded in {data.load_seconds:.1f} s; "
              f"open http://{address}:{port}/ (Ctrl-C stops)", file=sys.stderr)
        source = data
    else:
        print(f"chemlatent serve: open http://{address}:{port}/ now: the page shows the progress "
              "and then the explorer (Ctrl-C stops)", file=sys.stderr)
    from .dashboard import serve

    serve(source, port=port, address=address, show=not getattr(args, "no_show", False))
    return 0
