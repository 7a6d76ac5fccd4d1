"""Every private Captum name the package uses, in one place.

Captum has no public API for input formatting, quadrature rules or internal
batching, so :class:`~captum_igcam.IntegratedLayerGradCam` reuses Captum's
private helpers, exactly as Captum's own attribution methods do. They are
imported here only, so that a Captum release that moves or changes one breaks
this module and nothing else. Supported and tested: Captum 0.7, 0.8 and 0.9
(``tests/test_captum_compat.py``; ``.ci/run`` runs the core tests against
each). The helpers below have the same names and signatures in all three.
"""

from __future__ import annotations

from captum._utils.common import (
    _expand_additional_forward_args,
    _expand_target,
    _format_additional_forward_args,
    _format_output,
    _run_forward,
    _select_targets,
    _sort_key_list,
)
from captum._utils.typing import BaselineType, TargetType
from captum.attr._utils.approximation_methods import (
    SUPPORTED_METHODS,
    approximation_parameters,
)
from captum.attr._utils.batching import _batch_attribution
from captum.attr._utils.common import _format_input_baseline

#: The Captum releases this package is tested against (major, minor).
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
    "_format_input_baseline",
    "_format_output",
    "_run_forward",
    "_select_targets",
    "_sort_key_list",
    "approximation_parameters",
]
