"""Wavelength grids and element windows.

The survey grid is log-linear (BOSS-like, delta log10 lambda = 1e-4). Element windows are
wavelength ranges (Angstrom) per element group; each decoder of the model reconstructs only
the pixels inside its group's windows.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from chemlatent.errors import ChemlatentError

ELEMENT_GROUPS = ("fe", "c", "alpha")
WINDOW_FILES = {"fe": "iron_regions.csv", "c": "carbon_regions.csv", "alpha": "alpha_regions.csv"}
C_KMS = 299792.458


@dataclass(frozen=True)
class WavelengthGrid:
    """A log-linear grid: log10(lambda_i) = loglam0 + i * dloglam, i = 0..npix-1."""

    loglam0: float = 3.5911  # 3900.0 A
    dloglam: float = 1e-4
    npix: int = 4260  # to ~10400 A

    @property
    def wave(self) -> np.ndarray:
        """Pixel-centre wavelengths in Angstrom (float64)."""
        return 10.0 ** (self.loglam0 + self.dloglam * np.arange(self.npix))

    @property
    def velocity_per_pixel(self) -> float:
        """Width of one pixel in km/s."""
        return C_KMS * np.log(10.0) * self.dloglam

    def to_dict(self) -> dict:
        return {"loglam0": self.loglam0, "dloglam": self.dloglam, "npix": self.npix}

    @classmethod
    def from_dict(cls, d: dict) -> WavelengthGrid:
        return cls(float(d["loglam0"]), float(d["dloglam"]), int(d["npix"]))

    def matches(self, other: WavelengthGrid) -> bool:
        return (
            self.npix == other.npix
            and abs(self.loglam0 - other.loglam0) < 1e-7
            and abs(self.dloglam - other.dloglam) < 1e-10
        )

    def pixel_of(self, wavelength: np.ndarray | float) -> np.ndarray:
        """Fractional pixel index of a wavelength (Angstrom)."""
        return (np.log10(wavelength) - self.loglam0) / self.dloglam


DEFAULT_GRID = WavelengthGrid()


def _read_window_csv(path_or_text, name: str = "window file") -> list[tuple[float, float, str]]:
    """Rows (lo, hi, label) of a window CSV with columns wave_base, wave_top[, element]."""
    rows = []
    try:
        reader = csv.DictReader(path_or_text)
        if reader.fieldnames is None or not {"wave_base", "wave_top"} <= set(reader.fieldnames):
            raise ChemlatentError(f"{name}: window files need columns wave_base,wave_top[,element] "
                                  f"in a header line (found {reader.fieldnames})")
        for line, row in enumerate(reader, start=2):
            try:
                lo, hi = float(row["wave_base"]), float(row["wave_top"])
            except (TypeError, ValueError):
                raise ChemlatentError(f"{name}, line {line}: wave_base/wave_top must be numbers "
                                      f"(got {row.get('wave_base')!r}, {row.get('wave_top')!r})") from None
            if not (np.isfinite(lo) and np.isfinite(hi) and hi > lo):
                raise ChemlatentError(f"{name}, line {line}: element window {lo}-{hi} A is empty or reversed")
            rows.append((lo, hi, (row.get("element") or "").strip()))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ChemlatentError(f"{name}: not a readable CSV ({exc})") from None
    if not rows:
        raise ChemlatentError(f"{name}: no windows in it")
    return rows


def default_windows() -> dict[str, list[tuple[float, float, str]]]:
    """The reference paper's element windows (Angstrom), keyed by element group."""
    out = {}
    base = resources.files("chemlatent.assets").joinpath("windows")
    for group, name in WINDOW_FILES.items():
        with base.joinpath(name).open("r", encoding="utf-8") as fh:
            out[group] = _read_window_csv(fh)
    return out


def load_windows(directory: str | Path | None = None) -> dict[str, list[tuple[float, float, str]]]:
    """Windows from a directory holding iron/carbon/alpha_regions.csv, or the defaults."""
    if directory is None:
        return default_windows()
    out = {}
    for group, name in WINDOW_FILES.items():
        path = Path(directory) / name
        if not path.exists():
            raise ChemlatentError(f"window file {path} not found (need {', '.join(WINDOW_FILES.values())})")
        try:
            with path.open("r", encoding="utf-8") as fh:
                out[group] = _read_window_csv(fh, str(path))
        except OSError as exc:
            raise ChemlatentError(f"window file {path} cannot be read ({exc.strerror or exc})") from None
    return out


def window_masks(grid: WavelengthGrid, windows: dict) -> dict[str, np.ndarray]:
    """Boolean pixel mask per element group: True where the pixel lies in one of its windows."""
    wave = grid.wave
    masks = {}
    for group in ELEMENT_GROUPS:
        m = np.zeros(grid.npix, dtype=bool)
        for lo, hi, _ in windows[group]:
            m |= (wave >= lo) & (wave <= hi)
        masks[group] = m
    return masks
