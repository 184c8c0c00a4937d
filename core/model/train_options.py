"""What one training run is told: every option of ``train`` (chemlatent.model.training) and
which of them the model's config.json stores."""

from __future__ import annotations

from dataclasses import dataclass

# TrainOptions fields that ModelConfig stores under the same name
DECODER_OPTIONS = ("decoder_mode", "abundance_input", "decoder_form", "ratio_decoders_see_fe",
                   "carbon_on_all_windows", "line_pressure_damping", "line_doppler",
                   "line_strength_weight", "line_smooth_continuum", "line_hydrogen", "line_wing_cut",
                   "line_noisy_continuum", "line_shared_physics",
                   "decoder_pixels")


@dataclass
class TrainOptions:
    epochs: int = 24
    # > 0: epochs is replaced by as many epochs as make about this many optimiser steps (the
    # line decoders' strengths drift with steps: docs/model.md, "Every pixel, and a short run")
    target_steps: int = 0
    batch_size: int = 512
    lr: float = 2e-3
    warmup_fraction: float = 0.15  # share of all optimiser steps spent rising to the peak lr
    weight_decay: float = 1e-5
    kl_weight: float = 1.0
    mean_weight: float | tuple = 0.0  # extra pull of the means to 0 (per axis, or one for all)
    # weight of the KL's variance part (s^2 - 1 - log s^2) per axis; 0 on an axis removes the
    # reward for wide posteriors that lets a decoder stretch that axis's units (docs/model.md)
    kl_var_weight: tuple = (1.0, 1.0, 1.0)
    # prior on the posterior means: "star" (the per-star KL, mean part 0.5 mu^2),
    # "aggregate" (on the axes in aggregate_axes, the mean part is replaced by the KL of the
    # batch's Gaussian fit of the means, N(m, v), to N(0, 1); see aggregate_kl) or
    # "conditional" (N(m(Teff, logg), 1), m learned: chemlatent.model.conditional_prior) or
    # "population" (z_c, z_alpha ~ N(m(z_fe), 1), m learned: conditional_prior.PopulationPrior)
    # or "centred" (N(m, 1), one learned centre m: conditional_prior.CentredPrior)
    prior: str = "star"
    aggregate_axes: tuple = (0, 1, 2)
    w_weight: float = 5.0
    adv_weight: float = 0.1
    adv_axis_weight: tuple = (1.0, 1.0, 1.0)  # per-axis factor on the adversary's gradient to z
    # "reverse": the encoder maximises the adversary's MSE (gradient reversal); "confuse": the
    # adversary trains on detached z and the encoder minimises the spread of its predictions
    # over the batch (the explained variance; it cannot gain by steering the adversary wrong)
    adv_mode: str = "reverse"
    teacher_forcing: bool = True
    max_stars: int = 400_000
    val_fraction: float = 0.05
    mask_prob: float = 0.5
    seed: int = 0
    device: str = "auto"
    hidden: tuple = (256, 256, 128)
    decoder_mode: str = "additive"
    abundance_input: str = "linear"
    decoder_form: str = "mlp"
    ratio_decoders_see_fe: bool = False  # see ModelConfig.ratio_decoders_see_fe
    carbon_on_all_windows: bool = False  # see ModelConfig.carbon_on_all_windows
    line_pressure_damping: bool = False  # see ModelConfig.line_pressure_damping (and line_doppler)
    line_doppler: str = "learned"
    line_strength_weight: float = 0.0
    line_smooth_continuum: int = 0
    line_hydrogen: bool = False  # see ModelConfig.line_hydrogen
    line_wing_cut: bool = False  # see ModelConfig.line_wing_cut
    line_noisy_continuum: bool = False  # see ModelConfig.line_noisy_continuum
    line_shared_physics: bool = False  # see ModelConfig.line_shared_physics
    decoder_pixels: str = "windows"  # see ModelConfig.decoder_pixels
    # the carbon and alpha decoders see z_fe's posterior mean instead of its sample, so their
    # metallicity input is not blurred by z_fe's sampling noise (z_x then has no reason to
    # amplify iron; docs/model.md "What the third latent holds")
    ratio_fe_mean: bool = False
    windows_dir: str | None = None
    name: str | None = None
    # weight of the physical-gradient term: each decoder's derivative with respect to its own
    # latent is pulled toward the line list's derivative spectrum at the star's Teff/logg
    # (chemlatent.model.physgrad; 0 = off)
    phys_weight: float = 0.0
    # weight, inside the physical-gradient term, of its units part: each decoder's derivative
    # norm relative to iron's, tied to the line list's ratio (physgrad.gradient_alignment)
    phys_units: float = 0.0
    # anchored training (never the default): pin the axes with reference abundances
    # (catalog columns fe_h, c_fe, alpha_fe) of at most this many training stars; -1 = all
    # that have them, 0 = off (label-free)
    anchor_stars: int = 0
    anchor_weight: float = 5.0
    # which reference columns pin their axes (empty = all of fe_h, c_fe, alpha_fe that exist);
    # e.g. ("fe_h",) when a cross-match gives metallicities only: the other axes stay label-free
    anchor_columns: tuple = ()
    # learned per-pixel scatter in the likelihood (Laroche & Speagle 2025): each window pixel
    # gets a variance s^2 added to the noise, learned with the model, so pixels the decoders
    # cannot model stop steering the latents (chemlatent.model.scatter; False = off)
    learned_scatter: bool = False
    # after training, refine the z of up to refine_stars training stars against the decoders
    # (refine_steps Adam steps each, chemlatent.model.refine) and train the encoder for
    # refine_epochs epochs to predict them: encoding keeps its speed and gets the refined axes
    # (0 = off)
    refine_epochs: int = 0
    refine_steps: int = 60
    refine_stars: int = 20_000
    # refinement's prior centred on the encoder's mean z over the refined stars (instead of the
    # origin): see conditional_prior.CentredPrior for why
    refine_centred: bool = False
    # > 0: refinement fits Teff/logg too, within this width (RefineOptions.nuisance_sigma)
    refine_nuisance_sigma: float = 0.0
    # refinement's nuisance from the training stars' Teff/logg labels (as the decoders saw them
    # in training), not the encoder's guess
    refine_at_labels: bool = False
    # the axes (0 z_fe, 1 z_c, 2 z_alpha) whose refit targets are the refined z; the others
    # keep the encoder's own z as their target (docs/model.md, "Real stars: line depths and the refit")
    refine_axes: tuple[int, ...] = (0, 1, 2)
    # the share of the encoder's own z in the other axes' targets (1: all of it; 0.5: halfway
    # to the refined z; docs/model.md, "Hydrogen steers no abundance")
    refine_kept_share: float = 1.0
    # the refit's loss and learning rate (chemlatent.model.refine.refit_encoder): "equal" or
    # "standardised" squared errors per axis, a "constant" or "cosine" learning rate
    refit_loss: str = "equal"
    refit_schedule: str = "constant"
    # record the training stars' latent range and clamp every encoding into it (a few stars
    # unlike the training set otherwise get latents far outside it; model.latent_range)
    latent_range: bool = True
    # line decoders: fit the reconstruction surrogate encoding's chi2 uses (model.surrogate)
    surrogate: bool = False

