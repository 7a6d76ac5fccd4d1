"""The private Captum names this package uses, listed in one place.

Captum exports its attribution classes from :mod:`captum.attr`; the helpers
below have no public name. Each is re-exported here with the reason, so that
a Captum release that moves one breaks this module only.
"""

from __future__ import annotations

from captum._utils.common import (
    # Repeats tensors among additional_forward_args per path point: private.
    _expand_additional_forward_args,
    # Repeats the target per path point: private.
    _expand_target,
    # Puts additional_forward_args in tuple form: private.
    _format_additional_forward_args,
    # Returns a tensor or a tuple as Captum's methods do: private.
    _format_output,
    # Puts inputs in tuple form: private.
    _format_tensor_into_tuples,
    # Calls forward_func with inputs and additional arguments: private.
    _run_forward,
    # Selects the target's scores from the model's output: private.
    _select_targets,
    # Orders per-device tensors of a DataParallel pass: private.
    _sort_key_list,
)

# Layer activations and gradients in one pass, as LayerGradCam computes
# them (ReshapedLayerGradCam): private.
from captum._utils.gradient import compute_layer_gradients_and_eval

# Type aliases of the attribute() signatures: Captum exports no typing module.
from captum._utils.typing import BaselineType, TargetType

# Quadrature rules of IntegratedGradients: no public accessor for the points
# and weights, nor for the list of rule names.
from captum.attr._utils.approximation_methods import (
    SUPPORTED_METHODS,
    approximation_parameters,
)

# Splitting path points into chunks as IntegratedGradients does
# (internal_batch_size): only the private helper implements it.
from captum.attr._utils.batching import _batch_attribution

# Input and baseline formatting shared by Captum's path methods: private.
from captum.attr._utils.common import _format_input_baseline

__all__ = [
    "SUPPORTED_METHODS",
    "BaselineType",
    "TargetType",
    "_batch_attribution",
    "_expand_additional_forward_args",
    "_expand_target",
    "_format_additional_forward_args",
    "_format_input_baseline",
    "_format_output",
    "_format_tensor_into_tuples",
    "_run_forward",
    "_select_targets",
    "_sort_key_list",
    "approximation_parameters",
    "compute_layer_gradients_and_eval",
]
