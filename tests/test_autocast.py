"""Mixed precision: both classes run under autocast and stay close to float32."""

from __future__ import annotations

import pytest
import torch
import torchvision
from tolerances import relative_error

from captum_igcam import IntegratedLayerGradCam, LayerSpaceIntegratedGradCam


@pytest.mark.parametrize(
    "explainer_class", [IntegratedLayerGradCam, LayerSpaceIntegratedGradCam]
)
def test_cpu_autocast_bfloat16_is_finite_and_close_to_float32(explainer_class):
    model = torchvision.models.resnet18(weights=None).eval()
    inputs = torch.randn(2, 3, 64, 64)
    explainer = explainer_class(model, model.layer4)
    reference = explainer.attribute(inputs, target=[1, 2], n_steps=8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = explainer.attribute(inputs, target=[1, 2], n_steps=8)
    # The layer runs in bfloat16; the integral is accumulated in float32.
    assert mixed.dtype == torch.float32
    assert torch.isfinite(mixed).all()
    assert reference.abs().max() > 0  # not a vacuous comparison
    assert relative_error(mixed, reference) < 0.05
