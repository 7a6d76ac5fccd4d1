"""Both Integrated Grad-CAM classes in Captum's own test harness.

Written with ``captum.testing.helpers`` (``BaseTest``, ``assertTensorAlmostEqual``
and the models of ``basic_models``; stand-ins in ``helpers.py`` on Captum 0.7
and 0.8), on the cases of Captum's ``tests/attr/layer/test_grad_cam.py``: a
layer without spatial dimensions, a layer with a tuple of outputs, a
convolution with and without parameters that require grad, a ReLU after it,
the layer's input with and without the final ReLU, and two input tensors.
The Grad-CAM values are the ones Captum's test states. Integrated Grad-CAM
with one Gauss-Legendre point on a path that starts at the input is Grad-CAM
at the input, and with more points a quadrature of Captum's ``LayerGradCam``
along the path. Where the layer is an affine function of the input, the
layer-space path is the input path, so the two classes agree.
"""

from __future__ import annotations

import unittest
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from captum.attr import LayerGradCam
from helpers import (
    BaseTest,
    BasicModel_ConvNet_One_Conv,
    BasicModel_MultiLayer,
    assertTensorAlmostEqual,
)
from reference import quadrature
from torch import Tensor, nn

from captum_igcam import IntegratedLayerGradCam, LayerSpaceIntegratedGradCam


def _image() -> Tensor:
    return torch.arange(16).view(1, 1, 4, 4).float()


def _image_with_negative_pixel() -> Tensor:
    image = _image()
    image[0, 0, 1, 1] = -4.0
    return image


def _frozen_conv_net() -> nn.Module:
    net = BasicModel_ConvNet_One_Conv()
    for parameter in net.parameters():
        parameter.requires_grad = False
    return net


@dataclass
class Case:
    """One case of Captum's Grad-CAM test, with the map it states."""

    name: str
    model: Callable[[], nn.Module]
    layer: str
    inputs: Callable[[], Any]
    grad_cam: Callable[[Any], Any]
    options: dict[str, Any] = field(default_factory=dict)
    affine_layer: bool = True


def _masked_input(inputs: Tensor) -> Tensor:
    expected = 0.5625 * inputs
    expected[0, 0, 1, 1] = 0.0
    return expected


CASES = [
    Case(
        "linear layer",
        BasicModel_MultiLayer,
        "linear0",
        lambda: torch.tensor([[0.0, 100.0, 0.0]]),
        lambda x: torch.tensor([[400.0]]),
    ),
    Case(
        "layer with two outputs",
        lambda: BasicModel_MultiLayer(multi_input_module=True),
        "multi_relu",
        lambda: torch.tensor([[0.0, 6.0, 0.0]]),
        lambda x: (torch.tensor([[21.0]]), torch.tensor([[21.0]])),
        affine_layer=False,
    ),
    Case(
        "convolution",
        BasicModel_ConvNet_One_Conv,
        "conv1",
        _image,
        lambda x: torch.tensor([[[[11.25, 13.5], [20.25, 22.5]]]]),
    ),
    Case(
        "convolution without grad on parameters",
        _frozen_conv_net,
        "conv1",
        _image,
        lambda x: torch.tensor([[[[11.25, 13.5], [20.25, 22.5]]]]),
    ),
    Case(
        "relu after the convolution",
        BasicModel_ConvNet_One_Conv,
        "relu1",
        _image,
        lambda x: torch.tensor([[[[0.0, 4.0], [28.0, 32.5]]]]),
        affine_layer=False,
    ),
    Case(
        "layer input, no final relu",
        BasicModel_ConvNet_One_Conv,
        "conv1",
        _image_with_negative_pixel,
        lambda x: 0.5625 * x,
        {"attribute_to_layer_input": True},
    ),
    Case(
        "layer input, final relu",
        BasicModel_ConvNet_One_Conv,
        "conv1",
        _image_with_negative_pixel,
        _masked_input,
        {"attribute_to_layer_input": True, "relu_attributions": True},
    ),
    Case(
        "two input tensors",
        BasicModel_ConvNet_One_Conv,
        "conv1",
        lambda: (_image(), torch.ones(1, 1, 4, 4)),
        lambda x: torch.tensor([[[[14.5, 19.0], [32.5, 37.0]]]]),
    ),
]

ONE_POINT = {"n_steps": 1, "method": "gausslegendre", "per_step_relu": False}
PATH = {"n_steps": 4, "method": "riemann_middle"}


def _peak(maps: Any) -> float:
    maps = maps if isinstance(maps, tuple) else (maps,)
    return max(m.abs().max().item() for m in maps)


class Test(BaseTest):
    def _assert_maps_equal(self, actual: Any, expected: Any) -> None:
        if isinstance(expected, tuple):
            self.assertIsInstance(actual, tuple)
            self.assertEqual(len(actual), len(expected))
            for one, other in zip(actual, expected):
                assertTensorAlmostEqual(self, one, other, delta=0.01)
        else:
            assertTensorAlmostEqual(self, actual, expected, delta=0.01)

    def _maps(self, explainer_class: type, case: Case, **options: Any) -> Any:
        model = case.model().eval()
        explainer = explainer_class(model, model.get_submodule(case.layer))
        return explainer.attribute(
            case.inputs(), target=0, **{**case.options, **options}
        )

    def test_one_point_of_a_path_from_the_input_is_grad_cam(self) -> None:
        for case in CASES:
            with self.subTest(case.name):
                maps = self._maps(
                    IntegratedLayerGradCam, case, baselines=case.inputs(), **ONE_POINT
                )
                self._assert_maps_equal(maps, case.grad_cam(case.inputs()))

    def test_input_path_is_a_quadrature_of_grad_cam_maps(self) -> None:
        alphas, weights = quadrature("riemann_middle", 4)
        for case in CASES:
            with self.subTest(case.name):
                maps = self._maps(IntegratedLayerGradCam, case, **PATH)
                model = case.model().eval()
                grad_cam = LayerGradCam(model, model.get_submodule(case.layer))
                inputs = case.inputs()
                expected = None
                for alpha, weight in zip(alphas, weights):
                    point = (
                        tuple(alpha * x for x in inputs)
                        if isinstance(inputs, tuple)
                        else alpha * inputs
                    )
                    step = grad_cam.attribute(
                        point,
                        target=0,
                        relu_attributions=True,  # the per-step ReLU
                        attribute_to_layer_input=case.options.get(
                            "attribute_to_layer_input", False
                        ),
                    )
                    step = step if isinstance(step, tuple) else (step,)
                    weighted = tuple(weight * s for s in step)
                    expected = (
                        weighted
                        if expected is None
                        else tuple(e + w for e, w in zip(expected, weighted))
                    )
                self._assert_maps_equal(
                    maps, expected if len(expected) > 1 else expected[0]
                )

    def test_layer_path_is_the_input_path_at_an_affine_layer(self) -> None:
        for case in CASES:
            if not case.affine_layer:
                continue
            with self.subTest(case.name):
                layer_path = self._maps(LayerSpaceIntegratedGradCam, case, **PATH)
                input_path = self._maps(
                    IntegratedLayerGradCam,
                    case,
                    subtract_baseline_activations=True,
                    **PATH,
                )
                self._assert_maps_equal(layer_path, input_path)
                self.assertGreater(_peak(layer_path), 0)

    def test_neither_class_uses_input_marginal_effects(self) -> None:
        net = BasicModel_ConvNet_One_Conv().eval()
        for explainer_class in (IntegratedLayerGradCam, LayerSpaceIntegratedGradCam):
            with self.subTest(explainer_class.__name__):
                explainer = explainer_class(net, net.conv1)
                self.assertFalse(explainer.has_convergence_delta())
                self.assertFalse(explainer.multiplies_by_inputs)


if __name__ == "__main__":
    unittest.main()
