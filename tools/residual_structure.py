"""What the latents miss: tools/residual_structure.py SURVEY MODEL [OTHER_MODEL].

Reads SURVEY/latents/MODEL.parquet (encode first) and the survey's truth, and prints for
[Fe/H], [C/Fe] and [alpha/Fe]:
- the raw r of each axis and the best linear read of the abundance from (z_fe, z_c, z_alpha);
- the same read with a true nuisance parameter added (Teff and logg, microturbulence, [N/Fe]):
  a large gain means the axes carry that parameter's signal, a small one that the error is
  not any single parameter the decoders lack;
- the linear read's residual scatter (dex) per [Fe/H] bin, to set beside the Cramer-Rao
  bound of tools/information_limit.py;
- with OTHER_MODEL (e.g. a second seed): how closely the two models' axes agree and the r of
  their mean. Agreement near 1 says their errors are shared, so averaging models cannot help.
"""
import sys
from pathlib import Path

import numpy as np
import pandas as pd

AXES = {"z_fe": "fe_h", "z_c": "c_fe", "z_alpha": "alpha_fe"}
FEH_BINS = [(-4.0, -2.0), (-2.0, -1.0), (-1.0, 1.0)]


def linear_read(x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """r of the least-squares fit of y on the columns of x (plus a constant), and its residual."""
    a = np.c_[x, np.ones(len(x))]
    fit = a @ np.linalg.lstsq(a, y, rcond=None)[0]
    return float(np.corrcoef(fit, y)[0, 1]), y - fit


def load(survey: Path, model: str) -> pd.DataFrame:
    lat = pd.read_parquet(survey / "latents" / f"{model}.parquet")
    return lat.merge(pd.read_parquet(survey / "catalog.parquet"), on="star_id")


def main(survey: Path, model: str, other: str | None = None) -> None:
    df = load(survey, model)
    z = df[list(AXES)].to_numpy(np.float64)
    extras = {"Teff, logg": ["teff", "logg"], "vmicro": ["vmicro"], "[N/Fe]": ["n_fe"]}
    print(f"{model} on {survey.name}: {len(df)} stars")
    for axis, truth in AXES.items():
        y = df[truth].to_numpy(np.float64)
        r_read, res = linear_read(z, y)
        gains = ", ".join(f"+ {name} {linear_read(np.c_[z, df[cols].to_numpy(np.float64)], y)[0]:.3f}"
                          for name, cols in extras.items())
        print(f"  {truth}: raw r {np.corrcoef(df[axis], y)[0, 1]:.3f}, linear read {r_read:.3f} ({gains})")
        feh = df["fe_h"].to_numpy()
        bins = ", ".join(f"[Fe/H] {lo:+.0f}..{hi:+.0f} {res[(feh > lo) & (feh <= hi)].std():.3f}"
                         for lo, hi in FEH_BINS)
        print(f"    residual scatter (dex): {bins}")
    if other:
        b = load(survey, other).set_index("star_id").loc[df["star_id"]]
        print(f"  against {other}:")
        for axis, truth in AXES.items():
            y = df[truth].to_numpy(np.float64)
            za, zb = df[axis].to_numpy(), b[axis].to_numpy()
            print(f"    {axis}: r between the models {np.corrcoef(za, zb)[0, 1]:.3f}; r with {truth} "
                  f"{np.corrcoef(za, y)[0, 1]:.3f} / {np.corrcoef(zb, y)[0, 1]:.3f}, their mean "
                  f"{np.corrcoef(za + zb, y)[0, 1]:.3f}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None)
