"""One pipeline per flagging action, shared by ``chemlatent flag`` and the dashboard.

- preset -> rule: :func:`chemlatent.flags.presets.preset` (and :func:`resolve_rule` for the
  command line's ``--preset`` / ``--rule`` / saved presets);
- rule -> flagged stars, counts and expected by chance: :func:`truth_for` and
  :func:`flag_stars`;
- flagged -> export frame and provenance: :func:`candidate_frame` and
  :func:`provenance_extra` (passed to :func:`chemlatent.io.export.provenance`).

:func:`flag_survey` chains them for a survey directory (what the command line runs).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from chemlatent.errors import ChemlatentError
from chemlatent.flags.anomaly import Reference, compute_scores
from chemlatent.flags.engine import DEFAULT_NULL, RuleCounts, RuleEngine, null_text
from chemlatent.flags.parser import parse_rule
from chemlatent.flags.presets import PRESETS, preset
from chemlatent.flags.statistics import truth_mask
from chemlatent.flags.tree import Rule, rule_from_json
from chemlatent.model.calibration import Calibration


def truth_for(rule: Rule, catalog: pd.DataFrame | None
              ) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(truth, known) of the rule's dex definition on ``catalog`` (row-aligned with the
    stars), or (None, None) when there is no definition, no truth column or no known star."""
    if catalog is None or rule.truth_definition() is None:
        return None, None
    try:
        truth, known = truth_mask(rule, catalog)
    except ChemlatentError:
        return None, None
    if not known.any():
        return None, None
    return truth, known


def flag_stars(engine: RuleEngine, rule: Rule, *, fdr: float | None = None, null: str = DEFAULT_NULL,
               truth: np.ndarray | None = None, known: np.ndarray | None = None) -> RuleCounts:
    """The rule on the engine's stars: counts, expected by chance and the flagged mask
    (``counts.extra["mask"]``). ``null``: see :data:`chemlatent.flags.engine.NULLS`; the
    default draws each axis in its cut's frame, so the expectation matches the cut."""
    return engine.counts(rule, fdr=fdr, null=null, truth=truth, known=known)


def candidate_frame(latents: pd.DataFrame, rows: np.ndarray, reference: Reference, *,
                    catalog: pd.DataFrame | None, calibration: Calibration | None,
                    include_prior: bool = True) -> pd.DataFrame:
    """The export table of the stars at ``rows`` (positions in ``latents``): latents,
    scores, calibrated dex and catalog columns."""
    from chemlatent.io.export import build_export_frame

    chosen = latents.iloc[np.asarray(rows)].reset_index(drop=True)
    scores = compute_scores(chosen, reference, include_prior=include_prior).reset_index(drop=True)
    return build_export_frame(chosen, scores=scores, catalog=catalog, calibration=calibration)


def calibration_text(calibration: Calibration) -> str:
    """One line per axis of the calibration, for provenance."""
    return ", ".join(f"{c.target} = {c.intercept:+.4f} {c.slope:+.4f} z (scatter {c.scatter:.3f}"
                     + ("" if c.method == "regression" else f", {c.method}") + ")"
                     for c in calibration.axes.values())


def provenance_extra(counts: RuleCounts, *, calibration: Calibration | None = None,
                     requested: Rule | None = None) -> dict:
    """What the flagging did, for an export's provenance: counts, expected by chance, the
    null, FDR details, precision/recall and the calibration used."""
    extra: dict = {"n_stars": counts.n_stars, "n_flagged": counts.n_flagged,
                   "expected": round(float(counts.expected), 4), "null": counts.null,
                   "null_model": null_text(counts.null)}
    if counts.fdr is not None:
        extra.update(fdr=counts.fdr, p_threshold=counts.p_threshold)
        if requested is not None:
            extra["requested_rule"] = requested.describe()
    if counts.metrics:
        extra.update(precision=round(counts.metrics["precision"], 6),
                     recall=round(counts.metrics["recall"], 6))
    extra["calibration"] = calibration_text(calibration) if calibration is not None else "none"
    return extra


def resolve_rule(*, preset_name: str | None = None, rule_text: str | None = None,
                 sigma: float | None = None, fe_sigma: float = 1.0,
                 calibration: Calibration | None = None, store=None) -> Rule:
    """The rule the command line asks for: an expression or JSON (``rule_text``), a
    built-in preset, or a preset saved in the annotations ``store``."""
    if rule_text:
        if sigma is not None:
            raise ChemlatentError("--sigma applies to the built-in presets (cemp, apmp)")
        return parse_rule(rule_text)
    if preset_name.lower() in PRESETS:
        return preset(preset_name, sigma=sigma, calibration=calibration, fe_sigma=fe_sigma)
    text = store.get_preset(preset_name)
    if text is None:
        saved = store.presets()["name"].tolist()
        raise ChemlatentError(
            f"unknown preset {preset_name!r}: built in are {', '.join(PRESETS)}"
            + (f"; saved: {', '.join(saved)}" if saved else ""))
    if sigma is not None:
        raise ChemlatentError("--sigma applies to the built-in presets (cemp, apmp)")
    return rule_from_json(text)


@dataclass
class SurveyFlags:
    """The result of :func:`flag_survey`."""

    rule: Rule
    counts: RuleCounts
    frame: pd.DataFrame
    meta: dict

    @property
    def applied(self) -> Rule:
        """The rule actually applied (the FDR-adjusted one under ``fdr``)."""
        return self.counts.effective_rule or self.rule


@dataclass
class FlagRequest:
    """What to flag in a survey directory (the command line's options)."""

    survey: Path
    preset: str | None = None
    rule: str | None = None
    sigma: float | None = None
    fe_sigma: float = 1.0
    fdr: float | None = None
    null: str = DEFAULT_NULL
    model: str | None = None
    calibrate: bool = False
    calibrate_columns: dict[str, str] | None = None
    calibrate_method: str = "regression"  # chemlatent.model.calibration.METHODS
    db: str | None = None
    save_list: str | None = None


def _read_catalog(path: Path) -> pd.DataFrame | None:
    if not path.exists():
        return None
    try:
        return pd.read_parquet(path)
    except Exception as exc:
        raise ChemlatentError(f"{path} is unreadable ({exc})") from None


def flag_survey(req: FlagRequest, note: Callable[[str], None] = lambda text: None,
                store_opener: Callable | None = None) -> tuple[SurveyFlags, object | None]:
    """Latents -> calibration -> rule -> truth -> counts -> export frame -> provenance.

    ``note`` receives one-line notes as they happen. Returns the result and the opened
    annotations store (None when not needed; the caller closes it).
    """
    from chemlatent.io.annotations import DB_NAME, open_annotations
    from chemlatent.io.export import provenance
    from chemlatent.io.latents import find_latents, read_latents
    from chemlatent.model.calibration import fit_calibration, load_calibration

    survey = Path(req.survey)
    info = find_latents(survey, req.model)
    if info.note:
        note(info.note)
    latents = read_latents(info.path)
    cat_path = survey / "catalog.parquet"
    catalog = _read_catalog(cat_path)
    calibration = load_calibration(info.model_dir)
    if req.calibrate:
        if catalog is None:
            raise ChemlatentError(f"--calibrate needs {cat_path} with reference abundances")
        calibration = fit_calibration(latents, catalog, req.calibrate_columns, source=f"{cat_path}",
                                      method=req.calibrate_method)
        if info.model_dir is not None:
            note(f"calibration saved to {calibration.save(info.model_dir)}")
        else:
            note("model directory unknown: calibration used for this run only "
                 "(pass --model MODEL_DIR to keep it)")

    store = None
    saved_preset = req.preset and req.preset.lower() not in PRESETS
    if saved_preset and not (req.db or req.save_list) and not (survey / DB_NAME).exists():
        raise ChemlatentError(f"unknown preset {req.preset!r}: built in are {', '.join(PRESETS)} "
                              "(this survey has no saved presets)")
    if req.db or req.save_list or saved_preset:
        store = (store_opener or open_annotations)(req.db or survey)
    rule = resolve_rule(preset_name=req.preset, rule_text=req.rule, sigma=req.sigma,
                        fe_sigma=req.fe_sigma, calibration=calibration, store=store)

    engine = RuleEngine.from_latents(latents, calibration=calibration)
    aligned = (latents[["star_id"]].merge(catalog, on="star_id", how="left")
               if catalog is not None else None)
    truth, known = truth_for(rule, aligned)
    counts = flag_stars(engine, rule, fdr=req.fdr, null=req.null, truth=truth, known=known)
    frame = candidate_frame(latents, np.flatnonzero(counts.extra["mask"]), engine.ref,
                            catalog=catalog, calibration=calibration)
    extra = provenance_extra(counts, calibration=calibration, requested=rule)
    meta = provenance(survey_path=survey, model_name=info.model_name,
                      model_dir=str(info.model_dir) if info.model_dir else None,
                      rule=counts.effective_rule or rule, extra=extra, latents_path=info.path)
    return SurveyFlags(rule, counts, frame, meta), store
