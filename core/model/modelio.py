"""Model directories: config.json + weights.safetensors (+ metrics.json, calibration.json).

Loading reads JSON and safetensors only; pickled files are refused.
"""

from __future__ import annotations

import json
import math
import os
import uuid
from importlib import resources
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from chemlatent.errors import ModelError
from chemlatent.io.store import write_json_atomic
from chemlatent.model.vae import DisentangledVAE, ModelConfig

CONFIG = "config.json"
WEIGHTS = "weights.safetensors"
METRICS = "metrics.json"
CALIBRATION = "calibration.json"
PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin")
BUNDLED_NAME = "chemvae-v7"


def bundled_model_dir() -> Path:
    """The model shipped in assets/models/."""
    return Path(str(resources.files("chemlatent.assets").joinpath("models", BUNDLED_NAME)))


def resolve_model_dir(model: str | Path | None) -> Path:
    """A model directory from a path, or the bundled model when None."""
    if model is None:
        path = bundled_model_dir()
        if not (path / WEIGHTS).exists():
            raise ModelError("the bundled model is missing from assets/models; pass --model MODEL_DIR")
        return path
    path = Path(model)
    if path.is_file() and path.suffix in PICKLE_SUFFIXES:
        raise ModelError(f"{path} is a pickle-style file; models load only from a directory with "
                         f"{CONFIG} and {WEIGHTS} (pickles can run code, so they are refused)")
    if not path.is_dir():
        raise ModelError(f"model directory {path} does not exist")
    return path


def save_model(model: DisentangledVAE, out_dir: str | Path, extra_config: dict | None = None) -> Path:
    """Write config.json and weights.safetensors (each atomically)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg = model.config.to_dict()
    cfg["format"] = "chemlatent-vae"
    cfg["format_version"] = 1
    cfg.update(extra_config or {})
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tmp = out / f".{WEIGHTS}.tmp-{uuid.uuid4().hex[:8]}"
    save_file(state, str(tmp))
    os.replace(tmp, out / WEIGHTS)
    write_json_atomic(cfg, out / CONFIG)
    return out


def load_config(model_dir: str | Path | None) -> tuple[Path, dict]:
    path = resolve_model_dir(model_dir)
    cfg_path = path / CONFIG
    if not cfg_path.exists():
        pickles = [p.name for p in path.iterdir() if p.suffix in PICKLE_SUFFIXES]
        hint = f" (found {', '.join(pickles)}: pickles are refused)" if pickles else ""
        raise ModelError(f"{path} has no {CONFIG}: not a chemlatent model directory{hint}")
    try:
        cfg = json.loads(cfg_path.read_text())
    except ValueError as exc:
        raise ModelError(f"{cfg_path} is not valid JSON ({exc})") from None
    if cfg.get("format") != "chemlatent-vae":
        raise ModelError(f"{cfg_path} is not a chemlatent model config")
    return path, cfg


def load_model(model_dir: str | Path | None, device: str = "cpu") -> DisentangledVAE:
    """Rebuild a model from JSON and safetensors (never unpickles)."""
    path, cfg = load_config(model_dir)
    weights = path / WEIGHTS
    if not weights.exists():
        raise ModelError(f"{path} has no {WEIGHTS}")
    from safetensors import SafetensorError

    try:
        if cfg.get("architecture") == "signor2025":
            from chemlatent.model.recipe_signor2025 import Signor2025Config, Signor2025VAE

            model = Signor2025VAE(Signor2025Config.from_dict(cfg))
        else:
            model = DisentangledVAE(ModelConfig.from_dict(cfg))
        state = load_file(str(weights), device="cpu")
        state.setdefault("orient", torch.ones(3))  # models saved before the orient buffer
        model.load_state_dict(state)
    except SafetensorError as exc:
        raise ModelError(f"{weights} is damaged or not a safetensors file ({str(exc)[:120]}); "
                         "copy or train the model again") from None
    except (RuntimeError, KeyError, ValueError, TypeError) as exc:
        raise ModelError(f"{path}: weights do not match config ({str(exc).splitlines()[0][:200]})") from None
    model.model_dir = path  # type: ignore[attr-defined]
    model.name = cfg.get("name") or path.name  # type: ignore[attr-defined]
    return model.to(device).eval()


def read_json(path: Path) -> dict | None:
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except ValueError as exc:
        raise ModelError(f"{path} is not valid JSON ({exc})") from None


def json_safe(obj):
    """A copy of nested dicts/lists with NaN and infinities replaced by None (strict JSON)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def write_json(obj: dict, path: Path) -> None:
    """Atomic JSON with NaN/inf written as null."""
    write_json_atomic(json_safe(obj), Path(path))


def check_grid(model: DisentangledVAE, grid) -> None:
    """Refuse to apply a model to a survey on another wavelength grid."""
    mg = model.config.wavelength_grid
    if not mg.matches(grid):
        raise ModelError(
            f"model grid (loglam0={mg.loglam0}, dloglam={mg.dloglam}, npix={mg.npix}) does not match "
            f"the survey grid (loglam0={grid.loglam0}, dloglam={grid.dloglam}, npix={grid.npix}); "
            "train a model on this grid or ingest onto the model's grid"
        )


def flatten_state(obj, prefix: str = "") -> tuple[dict[str, torch.Tensor], dict]:
    """Split a nested state (optimizer, scheduler) into tensors and a JSON-able skeleton."""
    tensors: dict[str, torch.Tensor] = {}

    def walk(o, p):
        if isinstance(o, torch.Tensor):
            tensors[p] = o.detach().cpu().contiguous()
            return {"__tensor__": p}
        if isinstance(o, dict):
            return {"__dict__": [[walk(k, f"{p}/k{i}"), walk(v, f"{p}/{i}")]
                                 for i, (k, v) in enumerate(o.items())]}
        if isinstance(o, (list, tuple)):
            return {"__list__": [walk(v, f"{p}/{i}") for i, v in enumerate(o)],
                    "tuple": isinstance(o, tuple)}
        return o

    return tensors, walk(obj, prefix or "s")


def unflatten_state(skeleton, tensors: dict[str, torch.Tensor]):
    def walk(o):
        if isinstance(o, dict):
            if "__tensor__" in o:
                return tensors[o["__tensor__"]]
            if "__dict__" in o:
                return {walk(k): walk(v) for k, v in o["__dict__"]}
            if "__list__" in o:
                vals = [walk(v) for v in o["__list__"]]
                return tuple(vals) if o.get("tuple") else vals
        return o

    return walk(skeleton)
