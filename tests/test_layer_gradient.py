"""Telling a layer where Integrated Grad-CAM equals path-averaged CAM."""

from __future__ import annotations

import pytest
import torch
from helpers import TinyCNN, assert_same_state, model_state, small_vit

from captum_igcam.app.layer_gradient import (
    constant_gradient_note,
    gradient_is_constant_over_positions,
)
from captum_igcam.reshapes import vit_tokens


@pytest.fixture
def model():
    return TinyCNN(channels=5).double().eval()


def test_the_layer_before_pooling_and_linear_has_a_constant_gradient(model):
    inputs = torch.randn(3, 3, 8, 8, dtype=torch.float64)
    assert gradient_is_constant_over_positions(model, model.relu2, inputs, 1)
    note = constant_gradient_note(model, model.relu2, "relu2", inputs, 1)
    assert note is not None and note.startswith("at layer relu2 ")


@pytest.mark.parametrize("layer", ["conv2", "relu1", "conv1"])
def test_earlier_layers_have_a_varying_gradient(model, layer):
    inputs = torch.randn(3, 3, 8, 8, dtype=torch.float64)
    module = getattr(model, layer)
    assert not gradient_is_constant_over_positions(model, module, inputs, 1)
    assert constant_gradient_note(model, module, layer, inputs, 1) is None


def test_one_target_per_example_and_a_score_per_example(model):
    inputs = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    targets = torch.tensor([0, 3])
    assert gradient_is_constant_over_positions(model, model.relu2, inputs, targets)

    class FirstScore(torch.nn.Module):
        def forward(self, x):
            return model(x)[:, 0]

    assert gradient_is_constant_over_positions(FirstScore(), model.relu2, inputs, None)


def test_a_vit_block_norm_has_a_varying_gradient():
    vit = small_vit()
    inputs = torch.randn(1, 3, 32, 32, dtype=torch.float64)
    layer = vit.encoder.layers[-1].ln_1
    assert not gradient_is_constant_over_positions(
        vit, layer, inputs, 2, reshape_transform=vit_tokens()
    )


def test_the_model_is_left_as_it_was(model):
    inputs = (torch.randn(2, 3, 8, 8, dtype=torch.float64),)
    before = model_state(model, inputs)
    gradient_is_constant_over_positions(model, model.relu2, inputs[0], 1)
    assert_same_state(before, model_state(model, inputs))


def test_the_embedded_models_default_layer_and_a_middle_block():
    from captum_igcam.app.models import resolve_layer
    from captum_igcam.app.settings import MethodSettings

    bundle = MethodSettings().load_model()
    inputs = torch.rand(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    inputs = (inputs - 0.5) / 0.25
    head = resolve_layer(bundle.model, "_head_activation")
    middle = resolve_layer(bundle.model, "_blocks.10")
    assert gradient_is_constant_over_positions(bundle.model, head, inputs, 281)
    assert not gradient_is_constant_over_positions(bundle.model, middle, inputs, 281)
