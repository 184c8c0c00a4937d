"""Refined training targets kept on disk while they are computed (``train``'s refinement).

Refining every training star takes about an hour on two CPU cores, and the encoder refit that
follows takes minutes: a run stopped in between, or a second refit with other settings, should
not pay the hour again. ``RefineCache`` stores the rows refined so far with a key (a hash of
the model's weights, the rows and the refinement's settings): a later run with the same key
picks up where the file ends, and any change to the model or the settings starts afresh.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file


def refine_key(model: torch.nn.Module, rows: torch.Tensor, settings: dict) -> str:
    """sha256 of the model's weights, the refined rows and the refinement's settings."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().float().contiguous().numpy().tobytes())
    h.update(rows.cpu().numpy().astype(np.int64).tobytes())
    h.update(repr(sorted(settings.items())).encode())
    return h.hexdigest()


class RefineCache:
    """The refined z (n, 3) of the first ``done`` rows, on disk at ``path`` under ``key``."""

    def __init__(self, path: str | Path, key: str, n: int) -> None:
        self.path, self.key = Path(path), key
        self.targets = np.full((n, 3), np.nan, np.float32)
        self.done = 0
        try:
            stored = load_file(str(self.path)) if self.path.is_file() else None
        except (SafetensorError, OSError, ValueError):
            stored = None  # a damaged file: refine afresh
        if stored is not None and stored.get("key") is not None and stored["key"].tobytes().decode() == key:
            k = int(stored["done"][0])
            if 0 <= k <= n and stored["targets"].shape == (n, 3):
                self.targets[:k] = stored["targets"][:k]
                self.done = k

    def store(self, start: int, z: np.ndarray) -> None:
        """Record the refined z of rows start..start + len(z) (in order) and write the file."""
        if start != self.done:
            raise ValueError(f"refined rows must be stored in order: expected row {self.done}, got {start}")
        self.targets[start:start + len(z)] = z
        self.done = start + len(z)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        save_file({"targets": self.targets, "done": np.array([self.done], np.int64),
                   "key": np.frombuffer(self.key.encode(), np.uint8).copy()}, str(tmp))
        os.replace(tmp, self.path)
