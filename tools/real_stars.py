"""Check a model on real stars: tools/real_stars.py FITS_DIR PARAMS_CSV WORK_DIR [MODEL].

For the MILES development half (../shared/realstars/miles-dev): ingests the 1-D FITS files
(air wavelengths, as MILES publishes them), attaches Teff/logg/[Fe/H] from the parameter
table by file name, encodes with MODEL (default: the bundled model) and prints Pearson r of
z_fe with [Fe/H] for FGK stars (4000-7000 K), overall and per Teff bin with the fitted
zero point of each bin, which shows whether the iron signal is lost or only offset; then
the same with z_fe moved to the literature Teff/logg (``chemlatent encode --at-labels``, as a
survey with its own pipeline's Teff/logg would encode).
"""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

TEFF_BINS = [(4000, 4750), (4750, 5500), (5500, 6250), (6250, 7000)]


def cli(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "chemlatent.app.cli", *args], check=True,
                   stdout=subprocess.DEVNULL)


def main(fits_dir: Path, params: Path, work: Path, model: str | None = None) -> None:
    survey = work / "survey"
    table = work / "params_by_file.csv"
    work.mkdir(parents=True, exist_ok=True)
    p = pd.read_csv(params)
    p["source_file"] = p["miles_id"].map(lambda i: f"MILES_res2.50_star_m{int(i):04d}V.fits")
    p.to_csv(table, index=False)
    if not survey.exists():
        cli("ingest", str(survey), str(fits_dir), "--format", "wcs1d", "--medium", "air")
        cli("labels", str(survey), str(table), "--on", "source_file")
    for extra in ((), ("--at-labels",)):
        cli("encode", str(survey), "--overwrite", *(["--model", model] if model else []), *extra)
        lat = max((survey / "latents").glob("*.parquet"), key=lambda f: f.stat().st_mtime)  # just encoded
        report(survey, lat, "at the literature Teff/logg" if extra else "label-free")


def report(survey: Path, lat: Path, how: str) -> None:
    df = pd.read_parquet(lat).merge(pd.read_parquet(survey / "catalog.parquet"), on="star_id")
    fgk = df[(df.teff >= 4000) & (df.teff <= 7000) & df.fe_h.notna()]
    r = np.corrcoef(fgk.z_fe, fgk.fe_h)[0, 1]
    print(f"{lat.stem}, {how}: {len(fgk)} FGK stars, r(z_fe, [Fe/H]) = {r:.3f}")
    for lo, hi in TEFF_BINS:
        s = fgk[(fgk.teff >= lo) & (fgk.teff < hi)]
        slope, zero = np.polyfit(s.fe_h, s.z_fe, 1)
        print(f"  Teff {lo}-{hi} K: {len(s)} stars, r = {np.corrcoef(s.z_fe, s.fe_h)[0, 1]:.3f}, "
              f"dz/d[Fe/H] = {slope:.2f}, z at [Fe/H] = 0: {zero:+.2f}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4] if len(sys.argv) > 4 else None)
