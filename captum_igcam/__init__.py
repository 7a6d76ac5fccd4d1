"""Integrated Grad-CAM for Captum.

``IntegratedLayerGradCam`` (the paper's method) is used exactly like
:class:`captum.attr.LayerGradCam`; ``LayerSpaceIntegratedGradCam`` is a faster
method that integrates in the layer's activation space (not the paper's).
"""

from captum_igcam.integrated_grad_cam import IntegratedLayerGradCam
from captum_igcam.layer_space_grad_cam import LayerSpaceIntegratedGradCam

__all__ = ["IntegratedLayerGradCam", "LayerSpaceIntegratedGradCam"]
__version__ = "0.1.0"
