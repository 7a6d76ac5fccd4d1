"""Integrated Grad-CAM for Captum.

``IntegratedLayerGradCam`` is used exactly like :class:`captum.attr.LayerGradCam`.
The public classes are imported on first use (PEP 562), so that importing
the package, e.g. for the command line's ``--help``, does not import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from captum_igcam.integrated_grad_cam import IntegratedLayerGradCam

__version__ = "0.1.0"

__all__ = ["IntegratedLayerGradCam"]
#: Public name -> module that defines it.
_PUBLIC = {"IntegratedLayerGradCam": "captum_igcam.integrated_grad_cam"}


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'captum_igcam' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_PUBLIC])
