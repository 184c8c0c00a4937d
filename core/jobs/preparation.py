"""First-run work behind ``chemlatent demo``, in a background thread with progress.

Generating and encoding a million-star survey takes minutes. :class:`Preparation` runs the
steps (generate if the survey is missing, encode if its latents are missing, then load the
explorer's shared data) in a thread, and anyone (the terminal, the waiting page of every
browser session) reads :meth:`Preparation.status` for the stage, stars done, rate and ETA.
Each step writes atomically, so an interrupted first run leaves nothing half-written and
the next run picks up from the last finished step.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chemlatent.errors import ChemlatentError


@dataclass
class PreparationStatus:
    """A snapshot of the work: stage is generate, encode, load, ready or failed."""

    stage: str
    done: int
    total: int
    rate: float
    eta_s: float | None
    message: str
    elapsed_s: float
    notes: tuple[str, ...] = ()  # remarks that outlast their step (e.g. how the survey was encoded)

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 0.0


class Preparation:
    """Make ``path`` a served-ready survey: generate, encode, load (each step only if needed).

    ``load``: builds the served object from the survey path (e.g. ``SurveyData``); its
    result is :attr:`data` once :attr:`ready`.
    """

    def __init__(self, path: str | Path, stars: int, seed: int, load: Callable[[Path], Any],
                 model_dir: str | None = None) -> None:
        self.path = Path(path)
        self.stars = int(stars)
        self.seed = int(seed)
        self.model_dir = model_dir
        self._load = load
        self._lock = threading.Lock()
        self._stage, self._done, self._total = "waiting", 0, 0
        self._stage_t0 = self._t0 = time.perf_counter()
        self.data: Any = None
        self.error: str | None = None
        self.log: list[str] = []
        self.notes: list[str] = []
        self._thread: threading.Thread | None = None

    # -- state ---------------------------------------------------------------
    @property
    def ready(self) -> bool:
        return self.data is not None

    def _begin(self, stage: str, total: int, message: str) -> None:
        with self._lock:
            self._stage, self._done, self._total = stage, 0, int(total)
            self._stage_t0 = time.perf_counter()
            self.log.append(message)

    def _advance(self, n: int) -> None:
        with self._lock:
            self._done += int(n)

    def status(self) -> PreparationStatus:
        with self._lock:
            stage, done, total = self._stage, self._done, self._total
            dt = time.perf_counter() - self._stage_t0
            elapsed = time.perf_counter() - self._t0
            message = self.error or (self.log[-1] if self.log else "")
            notes = tuple(self.notes)
        rate = done / dt if dt > 0 and done else 0.0
        eta = (total - done) / rate if rate > 0 and total else None
        return PreparationStatus(stage, done, total, rate, eta, message, elapsed, notes)

    # -- work ----------------------------------------------------------------
    def run(self) -> Any:
        """Do the steps in this thread; returns the loaded data (raises ChemlatentError)."""
        from chemlatent.encode.whole import encode_whole
        from chemlatent.io.store import Survey
        from chemlatent.model.modelio import load_model
        from chemlatent.synth.generator import generate_survey

        try:
            if not (self.path / "survey.json").exists():
                self._begin("generate", self.stars,
                            f"generating {self.stars:,} synthetic stars into {self.path} (first run only)")
                generate_survey(self.path, self.stars, seed=self.seed, progress=False,
                                on_progress=self._advance)
            survey = Survey(self.path)
            model = load_model(self.model_dir)
            if not survey.latents_path(model.name).exists():
                self._begin("encode", survey.n_stars,
                            f"encoding {survey.n_stars:,} stars with the model {model.name}")
                res = encode_whole(survey, model, progress=self._advance)  # as `chemlatent encode DIR`
                if res.choice:  # what `encode` prints: why the posterior means are on, or why not
                    with self._lock:
                        self.log.append(res.choice)
                        self.notes.append(res.choice)
            self._begin("load", 0, f"loading {survey.n_stars:,} stars for the explorer")
            data = self._load(self.path)
        except ChemlatentError as exc:
            with self._lock:
                self._stage, self.error = "failed", str(exc)
            raise
        except Exception as exc:  # shown on the waiting page, never a silent hang
            with self._lock:
                self._stage, self.error = "failed", f"{type(exc).__name__}: {exc}"
            raise
        with self._lock:
            self.data = data
            self._stage = "ready"
            self.log.append(f"ready in {time.perf_counter() - self._t0:.0f} s")
        return data

    def start(self) -> Preparation:
        """Run in a daemon thread (errors end up in :attr:`error`)."""

        def target() -> None:
            try:
                self.run()
            except Exception:  # recorded in self.error by run()
                pass

        self._thread = threading.Thread(target=target, name="chemlatent-prepare", daemon=True)
        self._thread.start()
        return self

    def wait(self, timeout: float | None = None) -> bool:
        """Block until done; True when ready."""
        if self._thread is not None:
            self._thread.join(timeout)
        return self.ready
