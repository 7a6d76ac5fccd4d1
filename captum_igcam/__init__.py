"""Integrated Grad-CAM for Captum.

``IntegratedLayerGradCam`` is used exactly like :class:`captum.attr.LayerGradCam`.
"""

from captum_igcam.integrated_grad_cam import IntegratedLayerGradCam

__all__ = ["IntegratedLayerGradCam"]
__version__ = "0.1.0"
