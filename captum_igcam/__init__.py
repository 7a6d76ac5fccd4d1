"""Integrated Grad-CAM for Captum.

``IntegratedLayerGradCam`` is used exactly like :class:`captum.attr.LayerGradCam`.
Vision transformer layers are explained with a reshape transform from
:mod:`captum_igcam.reshapes`; ``ReshapedLayerGradCam`` is Grad-CAM with the
same option.
"""

from captum_igcam.grad_cam import ReshapedLayerGradCam
from captum_igcam.integrated_grad_cam import IntegratedLayerGradCam
from captum_igcam.reshapes import channels_last_grid, vit_tokens

__all__ = [
    "IntegratedLayerGradCam",
    "ReshapedLayerGradCam",
    "channels_last_grid",
    "vit_tokens",
]
__version__ = "0.1.0"
