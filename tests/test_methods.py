"""The method registry shared by the command line and the benchmark."""

from __future__ import annotations

import pytest
import torch
from captum.attr import LayerGradCam
from conftest import TinyCNN

from captum_igcam import IntegratedLayerGradCam
from captum_igcam.app.methods import METHODS, MethodSettings, register_method


@pytest.fixture
def model() -> TinyCNN:
    return TinyCNN().double().eval()


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_gives_one_map_per_example(model, name):
    inputs = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    maps = METHODS[name].build(model, model.conv2, MethodSettings(n_steps=4))(
        inputs, [1, 3], torch.zeros_like(inputs)
    )
    assert maps.shape == (2, 1, 8, 8)
    assert torch.isfinite(maps).all()


def test_registered_variants_are_the_documented_calls(model):
    inputs = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    baselines = torch.full_like(inputs, 0.2)
    settings = MethodSettings(n_steps=6, method="riemann_middle", internal_batch_size=4)
    igcam = IntegratedLayerGradCam(model, model.conv2)

    def run(name: str) -> torch.Tensor:
        return METHODS[name].build(model, model.conv2, settings)(inputs, 2, baselines)

    common = dict(target=2, baselines=baselines, n_steps=6)
    torch.testing.assert_close(
        run("igcam"), igcam.attribute(inputs, method="riemann_middle", **common)
    )
    torch.testing.assert_close(
        run("igcam-notebook"),
        6
        * igcam.attribute(
            inputs,
            method="riemann_left",
            subtract_baseline_activations=False,
            **common,
        ),
    )
    torch.testing.assert_close(
        run("igcam-paper"),
        igcam.attribute(
            inputs,
            method="riemann_middle",
            subtract_baseline_activations=True,
            **common,
        ),
    )
    torch.testing.assert_close(
        run("igcam-layer"),
        igcam.attribute(
            inputs,
            method="riemann_middle",
            path="layer",
            subtract_baseline_activations=True,
            **common,
        ),
    )
    torch.testing.assert_close(
        run("gradcam"),
        LayerGradCam(model, model.conv2).attribute(
            inputs, target=2, relu_attributions=True
        ),
    )


def test_a_name_is_registered_once():
    with pytest.raises(ValueError, match="name: method 'igcam' is already registered"):
        register_method("igcam", "again", "again")
