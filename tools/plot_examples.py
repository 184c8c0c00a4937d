"""Plot noiseless-ish example spectra of typical stars (a check of the generator's physics)."""

import sys

import matplotlib
import numpy as np
import pandas as pd

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from chemlatent.synth.generator import Generator  # noqa: E402

CASES = [
    ("Sun", dict(teff=5777, logg=4.44, fe_h=0, c_fe=0, alpha_fe=0, vmicro=1.0)),
    ("K giant", dict(teff=4500, logg=2.0, fe_h=0, c_fe=0, alpha_fe=0, vmicro=1.6)),
    ("MP giant -2.5", dict(teff=4800, logg=1.8, fe_h=-2.5, c_fe=0, alpha_fe=0.4, vmicro=1.8)),
    ("CEMP giant -2.5 C+2", dict(teff=4800, logg=1.8, fe_h=-2.5, c_fe=2.0, alpha_fe=0.4, vmicro=1.8)),
    ("M giant 3850", dict(teff=3850, logg=0.8, fe_h=0, c_fe=0, alpha_fe=0, vmicro=2.0)),
    ("F dwarf 6600", dict(teff=6600, logg=4.2, fe_h=-0.5, c_fe=0, alpha_fe=0.2, vmicro=1.4)),
]


def main(out: str = "examples.png") -> None:
    g = Generator(3)
    base = g.labels(np.arange(1))
    rows = []
    for _, kw in CASES:
        d = base.copy()
        for k, v in kw.items():
            d[k] = v
        d["snr"] = np.float32(1000)
        d["rv_residual"] = np.float32(0)
        rows.append(d)
    labs = pd.concat(rows, ignore_index=True)
    f, _ = g.render(labs)
    f = f.astype(np.float32)
    w = g.grid.wave
    fig, ax = plt.subplots(len(CASES) + 1, 1, figsize=(16, 20))
    for i, (name, _) in enumerate(CASES):
        ax[i].plot(w, f[i], lw=0.5)
        ax[i].set_title(name)
        ax[i].set_ylim(0, 1.2)
    for i in range(4):
        s = (w > 4200) & (w < 4400)
        ax[-1].plot(w[s], f[i][s], lw=0.8, label=CASES[i][0])
    ax[-1].legend()
    plt.tight_layout()
    plt.savefig(out, dpi=55)


if __name__ == "__main__":
    main(*sys.argv[1:])
