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


def metal_poor_condition(calibration: Calibration | None, *, fe_sigma: float = 1.0,
                         fe_dex: float | None = None) -> Cut:
    """The metal-poor condition of the presets: [Fe/H] < ``fe_dex`` (default -1) dex when
    ``calibration`` has an fe axis, else z_fe below the survey median by ``fe_sigma`` sigma
    (see docs/flags.md)."""
    if calibration is not None and calibration.has("fe"):
        return METAL_POOR if fe_dex is None else Cut("fe", "depleted", float(fe_dex), "dex")
    return Cut("fe", "depleted", -abs(float(fe_sigma)), "sigma", "empirical")


def preset(name: str, *, sigma: float | None = None, calibration: Calibration | None = None,
           fe_sigma: float = 1.0, element_dex: float | None = None,
           fe_dex: float | None = None) -> Rule:
    """The paper's CEMP / APMP definitions as a Rule: the one place both the command line
    and the dashboard build a preset.

    Without ``sigma`` (unit dex): the element cut at ``element_dex`` (default the paper's
    +0.7 / 0.0) and [Fe/H] < ``fe_dex`` (default -1), both dex (they need a calibration to
    evaluate). With ``sigma`` S: the element cut becomes ``S`` sigma in the
    metallicity-conditional frame (enhanced: > +S, depleted: < -S) and the Fe condition is
    :func:`metal_poor_condition`: [Fe/H] < ``fe_dex`` (default -1) dex when ``calibration``
    has an fe axis, else z_fe < -``fe_sigma`` sigma in the survey frame. ``truth`` is
    always the paper's dex definition.
    """
    key = name.lower()
    if key not in PRESETS:
        raise ChemlatentError(f"unknown preset {name!r}: built in are {', '.join(PRESETS)}")
    spec = PRESETS[key]
    element: Cut = spec["element"]
    truth = All((METAL_POOR, element))
    if sigma is None:
        if element_dex is None and fe_dex is None:
            return Rule(element, METAL_POOR, key, truth, spec["description"])
        cut = element if element_dex is None else Cut(element.axis, element.direction,
                                                      float(element_dex), "dex")
        cond = METAL_POOR if fe_dex is None else Cut("fe", "depleted", float(fe_dex), "dex")
        return Rule(cut, cond, key, truth, spec["description"] + " (dex thresholds)")
    s = float(sigma)
    if not (s > 0 and np.isfinite(s)):
        raise ChemlatentError(f"--sigma must be a positive number, got {sigma}")
    cut = Cut(element.axis, element.direction, s if element.greater else -s, "sigma", "cond")
    cond = metal_poor_condition(calibration, fe_sigma=fe_sigma, fe_dex=fe_dex)
    return Rule(cut, cond, key, truth, spec["description"] + f" (element cut at {s:g} sigma)")
