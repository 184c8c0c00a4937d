"""A whole survey's latents as ``chemlatent encode DIR`` writes them: the encoder's fit, moved
to the catalog's labels with ``at_labels``, then the posterior means ``posterior_mean`` asks
for (``auto``: on a survey of many faint stars). ``evaluate`` encodes through the same step."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from chemlatent.encode.at_labels import encode_at_labels
from chemlatent.encode.posterior_mean import PosteriorPrior, apply_posterior_mean, posterior_mean_choice
from chemlatent.encode.streaming import encode_survey
from chemlatent.io.store import Survey


@dataclass
class WholeEncoding:
    """What :func:`encode_whole` wrote: the latents file, the posterior-mean prior (None when
    the latents are each star's fit), why, and the seconds each step took."""

    path: Path
    prior: PosteriorPrior | None
    why: str
    encode_seconds: float
    posterior_seconds: float

    @property
    def choice(self) -> str:
        """Whether the latents are posterior means, and why, in a line ("" when nothing chose)."""
        if not self.why:
            return ""
        lead = "posterior means under the survey's population" if self.prior else "no posterior means"
        return f"{lead}: {self.why}"


def encode_whole(survey: Survey, model, *, at_labels: bool = False, posterior_mean: str = "auto",
                 **encode_options) -> WholeEncoding:
    """Encode every star of ``survey`` (``encode_options``: :func:`encode_survey`'s)."""
    use, why = posterior_mean_choice(posterior_mean, survey, model)
    t0 = time.perf_counter()
    path = (encode_at_labels if at_labels else encode_survey)(survey, model, **encode_options)
    t1 = time.perf_counter()
    prior = apply_posterior_mean(path, survey, model) if use else None
    return WholeEncoding(Path(path), prior, why, t1 - t0, time.perf_counter() - t1)
