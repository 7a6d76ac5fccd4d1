"""Metrics that score saliency maps: localisation and faithfulness.

Every function takes a batch of maps shaped ``(N, 1, h, w)`` or ``(N, h, w)``,
at the explained layer's resolution or at the input's. Maps smaller than the
input are upsampled bilinearly to the input size first
(:func:`~.resolution.to_input_size`; the protocol of Grad-CAM and of the
Integrated Grad-CAM paper), so layer maps and input-space maps are scored on
the same pixel grid. One module per family:

- :mod:`.localisation`: pointing game, energy-based pointing game, pixel
  AUROC (need ground-truth boxes);
- :mod:`.faithfulness`: Average Drop %, Increase in Confidence %, RISE's
  deletion and insertion curves (any image);
- :mod:`.captum_adapters`: layer maps as input attributions for Captum's
  ``infidelity`` and ``sensitivity_max``.

Every public name is available from this package, e.g.
``metrics.pointing_game_hits``.
"""

from __future__ import annotations

from captum_igcam.evaluation.metrics.captum_adapters import (
    input_space_attributions,
    input_space_explanation,
    noisy_perturbation,
)
from captum_igcam.evaluation.metrics.faithfulness import (
    MODES,
    RISE_BLUR_SIGMA,
    RISE_BLUR_SIZE,
    ForwardFunc,
    average_drop,
    blurred_canvas,
    class_scores,
    curve_auc,
    deletion_auc,
    increase_in_confidence,
    insertion_auc,
    masked_confidence,
    masked_inputs,
    perturbation_auc,
    perturbation_curve,
    perturbation_curves,
    pick,
    pixel_ranks,
    predicted_target,
)
from captum_igcam.evaluation.metrics.localisation import (
    POINTING_TOLERANCE,
    BoxesLike,
    box_area_fraction,
    box_mask,
    energy_pointing_game,
    localisation_auroc,
    pointing_game_accuracy,
    pointing_game_hits,
)
from captum_igcam.evaluation.metrics.resolution import spatial_size, to_input_size

__all__ = [
    "POINTING_TOLERANCE",
    "MODES",
    "RISE_BLUR_SIGMA",
    "RISE_BLUR_SIZE",
    "BoxesLike",
    "ForwardFunc",
    "average_drop",
    "blurred_canvas",
    "class_scores",
    "box_area_fraction",
    "box_mask",
    "curve_auc",
    "deletion_auc",
    "energy_pointing_game",
    "increase_in_confidence",
    "input_space_attributions",
    "input_space_explanation",
    "insertion_auc",
    "localisation_auroc",
    "masked_confidence",
    "masked_inputs",
    "noisy_perturbation",
    "perturbation_auc",
    "perturbation_curve",
    "perturbation_curves",
    "pick",
    "pixel_ranks",
    "pointing_game_accuracy",
    "pointing_game_hits",
    "predicted_target",
    "spatial_size",
    "to_input_size",
]
