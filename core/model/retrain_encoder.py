"""Refine and refit a trained model's encoder again, its decoders unchanged.

A change to the refinement (what the per-star fit of z follows) needs no new decoders: this
takes a trained model, the survey it was trained on and its own training options, refines
the latents of its training stars against its decoders once more, refits the encoder to them
and writes a new model (``chemlatent train ... --from-model``; docs/model.md, "Hydrogen steers
no abundance").
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from chemlatent.errors import ChemlatentError
from chemlatent.model.modelio import load_config, load_model
from chemlatent.model.train_options import TrainOptions

# ``train --second-refinement``: the second pass's settings (docs/model.md, "The second
# refinement on the stand-ins"): Teff/logg held fixed, z_alpha refitted to latents refined
# against the decoders, z_fe's and z_c's targets halfway between the first refit's own and them
# (refitting z_c to them too lost CEMP recall on one stand-in: 0.822 -> 0.711 against 0.785)
SECOND_REFINEMENT = {"refine_nuisance_sigma": 0.0, "refine_axes": (2,), "refine_kept_share": 0.5}
FIRST_PASS_SUFFIX = "-first-pass"


def first_pass_dir(out_dir: str | Path) -> Path:
    """Where ``train --second-refinement`` keeps the first pass's model: inside ``out_dir``."""
    out = Path(out_dir)
    return out / f"{out.name}{FIRST_PASS_SUFFIX}"


def stored_options(cfg: dict, model_dir: str | Path) -> TrainOptions:
    """The TrainOptions the model in ``model_dir`` (config ``cfg``) was trained with."""
    stored = cfg.get("training", {}).get("options")
    if not isinstance(stored, dict):
        raise ChemlatentError(f"{model_dir}: its config has no training options "
                              "(not made by `chemlatent train`)")
    names = {f.name for f in dataclasses.fields(TrainOptions)}
    return TrainOptions(**{k: v for k, v in stored.items() if k in names})


def retrain_encoder(model_dir: str | Path, survey_dir: str | Path, out_dir: str | Path, *,
                    overrides: dict | None = None, log=print) -> Path:
    """Write to ``out_dir`` ``model_dir``'s decoders with its encoder refined and refitted on
    ``survey_dir`` (the training stars its own seed and ``max_stars`` pick); ``overrides``:
    TrainOptions fields that differ from the model's own (the refinement's settings)."""
    from chemlatent.model.training import finish_training, load_training_data

    _, cfg = load_config(model_dir)
    opts = stored_options(cfg, model_dir)
    if opts.refine_epochs <= 0:
        raise ChemlatentError(f"{model_dir} was trained without --refine-encoder: nothing to refit")
    opts = dataclasses.replace(opts, **(overrides or {}))
    out = Path(out_dir)
    if out.resolve() == Path(model_dir).resolve():
        raise ChemlatentError("--from-model: write the new model to another directory than the old one")
    survey, _, device, data, val = load_training_data(
        survey_dir, seed=opts.seed, device=opts.device, max_stars=opts.max_stars,
        val_fraction=opts.val_fraction, log=log)
    model = load_model(model_dir).to(device)
    if model.config.grid.get("npix") != survey.grid.npix:
        raise ChemlatentError(f"{survey.path} is on another wavelength grid than {model_dir}")
    model.config.name = out.name
    model.set_latent_range(None)  # the range is fitted again to the refitted encoder
    history = cfg.get("training", {}).get("history", [])
    finish_training(model.eval(), survey, data, val, opts, out, device, history, log,
                    extra={"encoder_refitted_from": str(model_dir)})
    return out
