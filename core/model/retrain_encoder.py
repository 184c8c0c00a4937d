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
from chemlatent.spectra.grid import ELEMENT_GROUPS

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


def train_with_second_refinement(survey_dir: str | Path, out_dir: str | Path, opts: TrainOptions, *,
                                 resume: bool = False, progress: bool = True, log=print) -> Path:
    """``train --second-refinement``: train into ``first_pass_dir(out_dir)``, then refine and
    refit that model's encoder again into ``out_dir`` with :data:`SECOND_REFINEMENT` (the same
    code as ``--from-model``). With ``resume``, a finished first pass is not trained again."""
    from chemlatent.model.training import train

    first = first_pass_dir(out_dir)
    if resume and (first / "weights.safetensors").exists() and (first / "config.json").exists():
        load_config(first)  # a damaged first pass fails here, with its path
        log(f"first pass already trained ({first}): the second refinement follows")
    else:
        train(survey_dir, first, dataclasses.replace(opts, name=first.name), resume=resume,
              progress=progress, log=log)
    shown = {k: ",".join(ELEMENT_GROUPS[a] for a in v) if k == "refine_axes" else v
             for k, v in SECOND_REFINEMENT.items()}
    log(f"second refinement of {first} ({', '.join(f'{k} {v}' for k, v in shown.items())})")
    return retrain_encoder(first, survey_dir, out_dir, overrides=SECOND_REFINEMENT, log=log)
