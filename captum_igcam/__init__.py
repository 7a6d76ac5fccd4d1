"""Integrated Grad-CAM for Captum.

``IntegratedLayerGradCam`` (the paper's method) is used exactly like
:class:`captum.attr.LayerGradCam`; ``LayerSpaceIntegratedGradCam`` is a faster
method that integrates in the layer's activation space (not the paper's).
Vision transformer layers are explained with a reshape transform from
:mod:`captum_igcam.reshapes`; ``ReshapedLayerGradCam`` is Grad-CAM with the
same option.
"""

from captum_igcam.grad_cam import ReshapedLayerGradCam
from captum_igcam.integrated_grad_cam import IntegratedLayerGradCam
from captum_igcam.layer_space_grad_cam import LayerSpaceIntegratedGradCam
from captum_igcam.reshapes import channels_last_grid, vit_tokens

__all__ = [
    "IntegratedLayerGradCam",
    "LayerSpaceIntegratedGradCam",
    "ReshapedLayerGradCam",
    "channels_last_grid",
    "vit_tokens",
]
__version__ = "0.1.0"
