"""The private Captum names this package uses, listed in one place.

Captum exports its attribution classes from :mod:`captum.attr`; the helpers
below have no public name. Each is re-exported here with the reason, so that
a Captum release that moves one breaks this module only.

Supported and tested: Captum 0.7, 0.8 and 0.9 (:data:`SUPPORTED_CAPTUM`;
``.ci/run`` runs the core and interop tests against each release, and
``tests/test_captum_compat.py`` keeps this list, ``pyproject.toml`` and the
imports in step). Every helper below has the same name and signature in the
three releases except ``compute_layer_gradients_and_eval``, which gained
``grad_kwargs`` in 0.8: a shim below.
"""

from __future__ import annotations

import inspect
from typing import Any

import captum
from captum._utils.common import (
    # Repeats tensors among additional_forward_args per path point: private.
    _expand_additional_forward_args,
    # Repeats the target per path point: private.
    _expand_target,
    # Puts additional_forward_args in tuple form: private.
    _format_additional_forward_args,
    # Returns a tensor or a tuple as Captum's methods do: private.
    _format_output,
    # Puts a tensor in tuple form: private.
    _format_tensor_into_tuples,
    # Calls forward_func with inputs and additional arguments: private.
    _run_forward,
    # Selects the target's scores from the model's output: private.
    _select_targets,
    # Orders per-device tensors of a DataParallel pass: private.
    _sort_key_list,
)

# Layer activations and their gradients in one pass, as LayerGradCam runs it:
# private (ReshapedLayerGradCam). Captum 0.7 has no `grad_kwargs`; see below.
from captum._utils.gradient import (
    compute_layer_gradients_and_eval as _captum_layer_gradients_and_eval,
)

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

_HAS_GRAD_KWARGS = (
    "grad_kwargs" in inspect.signature(_captum_layer_gradients_and_eval).parameters
)


def compute_layer_gradients_and_eval(
    *args: Any, grad_kwargs: dict[str, Any] | None = None, **kwargs: Any
) -> Any:
    """Captum's ``compute_layer_gradients_and_eval`` on every supported release.

    Captum 0.8 added ``grad_kwargs`` (passed on to ``torch.autograd.grad``);
    on Captum 0.7 the call goes without it, and asking for it is an error.

    Raises:
        ValueError: If ``grad_kwargs`` is given and Captum is older than 0.8.
    """
    if _HAS_GRAD_KWARGS:
        return _captum_layer_gradients_and_eval(
            *args, grad_kwargs=grad_kwargs, **kwargs
        )
    if grad_kwargs:
        raise ValueError(
            "grad_kwargs: needs Captum >= 0.8, installed is " + captum.__version__
        )
    return _captum_layer_gradients_and_eval(*args, **kwargs)


#: The Captum releases this package is tested against, as (major, minor).
SUPPORTED_CAPTUM = ((0, 7), (0, 8), (0, 9))

__all__ = [
    "SUPPORTED_CAPTUM",
    "SUPPORTED_METHODS",
    "BaselineType",
    "TargetType",
    "_batch_attribution",
    "_expand_additional_forward_args",
    "_expand_target",
    "_format_additional_forward_args",
    "_format_output",
    "_format_tensor_into_tuples",
    "_run_forward",
    "_select_targets",
    "_sort_key_list",
    "approximation_parameters",
    "compute_layer_gradients_and_eval",
]
