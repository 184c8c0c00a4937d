"""What `chemlatent train` uses unless told otherwise.

``TrainOptions()`` is the bare model (MLP decoders, gradient-reversal adversary, N(0, 1)
prior, no refinement; the latent range is recorded either way): the building block tests and
screens start from, and the bundled model's recipe. A user training on their own survey gets
these instead, chosen by measurement on our generator and two stand-in surveys with other
physics, several seeds (docs/model.md, "Train's defaults"). This module holds data only, so
the command line can read it without importing torch.
"""

from __future__ import annotations

TRAIN_DEFAULTS: dict = {
    "decoder_form": "lines",  # the line list's lines and bands (chemlatent.model.lines)
    "adv_mode": "confuse",  # the encoder flattens the Teff/logg adversary's predictions
    "prior": "centred",  # N(m, 1) with one learned centre (conditional_prior.CentredPrior)
    "refine_epochs": 20,  # refine training stars' latents and refit the encoder to them ...
    "refine_stars": 60_000,  # ... every training star up to 60,000 ("Real stars: line depths and the refit")
    "refine_centred": True,  # refinement's prior centred on the encoder's mean z
    "refine_nuisance_sigma": 0.1,  # refinement fits Teff/logg too, within 0.1 standardised units
    "refine_at_labels": True,  # ... around each training star's Teff/logg labels ("Hydrogen, and the labels")
    "surrogate": True,  # encoding's chi2 from a fitted stand-in for the line decoders (fast)
    # where the lines sit on the curve of growth (docs/model.md, "What set the line decoders'
    # units"), every pixel and a short run ("The information limit", "Every pixel, and a short run")
    "line_doppler": "physical",  # Doppler widths from Teff/logg (chemlatent.model.doppler)
    "line_smooth_continuum": 16,  # the abundance-free term linear between knots 16 pixels apart
    "decoder_pixels": "all",  # the line decoders model every pixel, not only the element windows
    "line_hydrogen": True,  # hydrogen's own damping and long wings ("Hydrogen, and the labels")
    "target_steps": 666,  # ~670 optimiser steps (the line strengths drift with steps)
    "max_stars": 60_000,  # a random 60,000 stars: 6 epochs at that budget
}


def default_options(**overrides):
    """``TrainOptions`` with ``TRAIN_DEFAULTS``, then ``overrides``, applied."""
    from chemlatent.model.training import TrainOptions

    return TrainOptions(**{**TRAIN_DEFAULTS, **overrides})
