"""Rescore encoded validation latents with the current evaluate(): tools/rescore.py VAL_DIR RUN...

Prints the tools/screen.py row of RUN/val.parquet (or of RUN itself when it is a parquet
file) against VAL_DIR's truth, for runs scored before a change to the evaluation.
"""
import sys
from pathlib import Path

import pandas as pd
from screen import row, score

from chemlatent.io.store import Survey

if __name__ == "__main__":
    cat = Survey(sys.argv[1]).catalog
    for run in map(Path, sys.argv[2:]):
        lat = pd.read_parquet(run if run.suffix == ".parquet" else run / "val.parquet")
        print(row(run.stem if run.suffix == ".parquet" else run.name, score(lat, cat)), flush=True)
