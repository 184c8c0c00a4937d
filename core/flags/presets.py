"""The built-in presets (the paper's CEMP and APMP definitions) as rules."""

from __future__ import annotations

import numpy as np

from chemlatent.errors import ChemlatentError
from chemlatent.flags.tree import All, Cut, Rule
from chemlatent.model.calibration import Calibration

PRESETS: dict[str, dict] = {
    "cemp": {
        "element": Cut("c", "enhanced", 0.7, "dex"),
        "description": "carbon-enhanced metal-poor: [Fe/H] < -1 and [C/Fe] > +0.7",
    },
    "apmp": {
        "element": Cut("alpha", "depleted", 0.0, "dex"),
        "description": "alpha-poor metal-poor: [Fe/H] < -1 and [alpha/Fe] < 0",
    },
}
METAL_POOR = Cut("fe", "depleted", -1.0, "dex")


def preset(name: str, *, sigma: float | None = None, calibration: Calibration | None = None,
           fe_sigma: float = 1.0) -> Rule:
    """The paper's CEMP / APMP definitions as a Rule.

    Without ``sigma``: the dex cuts (need a calibration to evaluate). With ``sigma`` S:
    the element cut becomes ``S`` sigma in the metallicity-conditional frame (enhanced: >
    +S, depleted: < -S); the Fe condition stays [Fe/H] < -1 dex when ``calibration`` has an
    fe axis, else becomes z_fe < -``fe_sigma`` sigma in the survey frame. ``truth`` is
    always the dex definition.
    """
    key = name.lower()
    if key not in PRESETS:
        raise ChemlatentError(f"unknown preset {name!r}: built in are {', '.join(PRESETS)}")
    spec = PRESETS[key]
    element: Cut = spec["element"]
    truth = All((METAL_POOR, element))
    if sigma is None:
        return Rule(element, METAL_POOR, key, truth, spec["description"])
    s = float(sigma)
    if not (s > 0 and np.isfinite(s)):
        raise ChemlatentError(f"--sigma must be a positive number, got {sigma}")
    cut = Cut(element.axis, element.direction, s if element.greater else -s, "sigma", "cond")
    if calibration is not None and calibration.has("fe"):
        cond = METAL_POOR
    else:
        cond = Cut("fe", "depleted", -abs(float(fe_sigma)), "sigma", "empirical")
    return Rule(cut, cond, key, truth, spec["description"] + f" (element cut at {s:g} sigma)")
