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
    "refine_epochs": 20,  # refine 20,000 training stars' latents and refit the encoder to them
    "refine_centred": True,  # refinement's prior centred on the encoder's mean z
    "refine_nuisance_sigma": 0.1,  # refinement fits Teff/logg too, within 0.1 standardised units
    "surrogate": True,  # encoding's chi2 from a fitted stand-in for the line decoders (fast)
}


def default_options(**overrides):
    """``TrainOptions`` with ``TRAIN_DEFAULTS``, then ``overrides``, applied."""
    from chemlatent.model.training import TrainOptions

    return TrainOptions(**{**TRAIN_DEFAULTS, **overrides})
