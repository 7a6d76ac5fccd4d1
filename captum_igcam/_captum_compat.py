"""The private Captum names this package uses, listed in one place.

Captum exports its attribution classes from :mod:`captum.attr`; the helpers
below have no public name. Each is re-exported here (as ``import x as x``)
with the reason, so that a Captum release that moves one breaks this module
only.

Supported and tested: Captum 0.7, 0.8 and 0.9 (:data:`SUPPORTED_CAPTUM`;
``.ci/run`` runs the core and interop tests against each release, and
``tests/test_captum_compat.py`` keeps this list, ``pyproject.toml`` and the
imports in step). Every helper below has the same name and signature in the
three releases except ``compute_layer_gradients_and_eval``, which gained
``grad_kwargs`` in 0.8 (:data:`HAS_GRAD_KWARGS`).
"""

from __future__ import annotations

import inspect

# Private helpers of captum._utils.common, with no public counterpart:
# repeating additional_forward_args and the target per path point, putting
# arguments and tensors in tuple form, returning a tensor or a tuple as
# Captum's methods do, calling forward_func, selecting the target's scores,
# and ordering per-device tensors of a DataParallel pass.
from captum._utils.common import (
    _expand_additional_forward_args as _expand_additional_forward_args,
)
from captum._utils.common import _expand_target as _expand_target
from captum._utils.common import (
    _format_additional_forward_args as _format_additional_forward_args,
)
from captum._utils.common import _format_output as _format_output
from captum._utils.common import (
    _format_tensor_into_tuples as _format_tensor_into_tuples,
)
from captum._utils.common import _run_forward as _run_forward
from captum._utils.common import _select_targets as _select_targets
from captum._utils.common import _sort_key_list as _sort_key_list

# Layer activations and their gradients in one pass, as LayerGradCam runs it
# (ReshapedLayerGradCam). Captum 0.7 has no `grad_kwargs`: HAS_GRAD_KWARGS.
from captum._utils.gradient import (
    compute_layer_gradients_and_eval as compute_layer_gradients_and_eval,
)

# Type aliases of the attribute() signatures: Captum exports no typing module.
from captum._utils.typing import BaselineType as BaselineType
from captum._utils.typing import TargetType as TargetType

# Quadrature rules of IntegratedGradients: no public accessor for the points
# and weights, nor for the list of rule names.
from captum.attr._utils.approximation_methods import (
    SUPPORTED_METHODS as SUPPORTED_METHODS,
)
from captum.attr._utils.approximation_methods import (
    approximation_parameters as approximation_parameters,
)

# Splitting path points into chunks as IntegratedGradients does
# (internal_batch_size): only the private helper implements it.
from captum.attr._utils.batching import _batch_attribution as _batch_attribution

#: The Captum releases this package is tested against, as (major, minor).
SUPPORTED_CAPTUM = ((0, 7), (0, 8), (0, 9))

#: Whether ``compute_layer_gradients_and_eval`` takes ``grad_kwargs`` (0.8+).
HAS_GRAD_KWARGS = (
    "grad_kwargs" in inspect.signature(compute_layer_gradients_and_eval).parameters
)
