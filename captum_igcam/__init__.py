"""Integrated Grad-CAM for Captum.

``IntegratedLayerGradCam`` (the paper's method) is used exactly like
:class:`captum.attr.LayerGradCam`; ``LayerSpaceIntegratedGradCam`` is a faster
method that integrates in the layer's activation space (not the paper's).
Vision transformer layers are explained with a reshape transform from
:mod:`captum_igcam.reshapes`; ``ReshapedLayerGradCam`` is Grad-CAM with the
same option.

The public names are imported on first use (PEP 562), so that importing the
package, e.g. for the command line's ``--help``, does not import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from captum_igcam.grad_cam import ReshapedLayerGradCam
    from captum_igcam.integrated_grad_cam import IntegratedLayerGradCam
    from captum_igcam.layer_space_grad_cam import LayerSpaceIntegratedGradCam
    from captum_igcam.reshapes import channels_last_grid, vit_tokens

__version__ = "0.1.0"

#: Public name -> module that defines it.
_PUBLIC = {
    "IntegratedLayerGradCam": "captum_igcam.integrated_grad_cam",
    "LayerSpaceIntegratedGradCam": "captum_igcam.layer_space_grad_cam",
    "ReshapedLayerGradCam": "captum_igcam.grad_cam",
    "channels_last_grid": "captum_igcam.reshapes",
    "vit_tokens": "captum_igcam.reshapes",
}
__all__ = [
    "IntegratedLayerGradCam",
    "LayerSpaceIntegratedGradCam",
    "ReshapedLayerGradCam",
    "channels_last_grid",
    "vit_tokens",
]


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'captum_igcam' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_PUBLIC])
