"""The prefix-free graph, its fallback, DataParallel and the layer-space path."""

from __future__ import annotations

import pytest
import torch
import torchvision
from conftest import TinyCNN
from reference import naive_integrated_grad_cam, naive_layer_path_grad_cam
from tolerances import assert_close_to
from torch import nn

from captum_igcam import IntegratedLayerGradCam


class _ForwardCounter:
    def __init__(self, module: nn.Module) -> None:
        self.calls = 0
        self.handle = module.register_forward_hook(self._count)

    def _count(self, *args: object) -> None:
        self.calls += 1


class RestoresCallersGradMode(TinyCNN):
    """Runs its head in the grad mode it was called in, a common pattern."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        callers_mode = torch.is_grad_enabled()
        x = self.relu2(self.conv2(self.relu1(self.conv1(x))))
        with torch.set_grad_enabled(callers_mode):
            return self.fc(self.pool(x).flatten(1))


class SharedBlockNet(TinyCNN):
    """Applies conv2 twice: the layer is called twice per forward pass."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu1(self.conv1(x))
        x = self.relu2(self.conv2(self.relu2(self.conv2(x))))
        return self.fc(self.pool(x).flatten(1))


def _forward_passes(model: nn.Module, **kwargs: object) -> tuple[torch.Tensor, int]:
    counter = _ForwardCounter(model)
    try:
        result = IntegratedLayerGradCam(model, model.conv2).attribute(**kwargs)
    finally:
        counter.handle.remove()
    return result, counter.calls


def test_prefix_free_graph_takes_one_pass_per_chunk():
    model = TinyCNN().double().eval()
    inputs = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    _, passes = _forward_passes(
        model,
        inputs=inputs,
        target=1,
        n_steps=6,
        internal_batch_size=6,
        subtract_baseline_activations=True,  # the figure's formula
    )
    # One pass for the baseline, then 6 steps x 2 examples in chunks of 3 steps.
    assert passes == 1 + 2


def test_model_that_switches_grad_mode_falls_back_and_stays_exact():
    model = RestoresCallersGradMode().double().eval()
    inputs = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    result, passes = _forward_passes(
        model,
        inputs=inputs,
        target=[1, 2],
        n_steps=6,
        internal_batch_size=6,
        subtract_baseline_activations=True,
    )
    # The first chunk is run again with the whole graph; later chunks keep it.
    assert passes == 1 + 1 + 2
    expected = naive_integrated_grad_cam(
        model,
        model.conv2,
        (inputs,),
        (torch.zeros_like(inputs),),
        [1, 2],
        "gausslegendre",
        6,
        subtract_baseline_activations=True,
    )
    assert_close_to(result, expected)


def test_layer_called_twice_falls_back_and_attributes_the_last_call():
    model = SharedBlockNet().double().eval()
    inputs = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    with pytest.warns(UserWarning, match="called 2 times"):
        result, passes = _forward_passes(
            model,
            inputs=inputs,
            target=[0, 3],
            n_steps=4,
            subtract_baseline_activations=True,
        )
    assert passes == 1 + 1 + 1
    expected = naive_integrated_grad_cam(
        model,
        model.conv2,
        (inputs,),
        (torch.zeros_like(inputs),),
        [0, 3],
        "gausslegendre",
        4,
        subtract_baseline_activations=True,
    )
    assert_close_to(result, expected)


def test_data_parallel_wrapper_gives_the_same_maps():
    model = TinyCNN().double().eval()
    inputs = torch.randn(3, 3, 8, 8, dtype=torch.float64)
    plain = IntegratedLayerGradCam(model, model.conv2).attribute(
        inputs, target=2, n_steps=5
    )
    parallel = nn.DataParallel(model).eval()
    wrapped = IntegratedLayerGradCam(parallel, model.conv2).attribute(
        inputs, target=2, n_steps=5, internal_batch_size=4
    )
    assert_close_to(wrapped, plain)


@pytest.mark.parametrize("method", ["gausslegendre", "riemann_right"])
def test_layer_path_matches_its_naive_reference(method):
    model = torchvision.models.resnet18(weights=None).double().eval()
    inputs = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    baselines = torch.full_like(inputs, 0.1)
    result = IntegratedLayerGradCam(model, model.layer4).attribute(
        inputs,
        target=[5, 9],
        baselines=baselines,
        n_steps=5,
        method=method,
        path="layer",
        internal_batch_size=4,
        subtract_baseline_activations=True,
    )
    expected = naive_layer_path_grad_cam(
        model, model.layer4, inputs, baselines, [5, 9], method, 5
    )
    assert_close_to(result, expected)


def test_layer_path_runs_the_prefix_once_per_chunk():
    model = TinyCNN().double().eval()
    counter = _ForwardCounter(model.conv1)
    IntegratedLayerGradCam(model, model.conv2).attribute(
        torch.randn(2, 3, 8, 8, dtype=torch.float64),
        target=1,
        n_steps=10,
        path="layer",
    )
    counter.handle.remove()
    assert counter.calls == 2  # the baseline, then the input once


def test_layer_path_differs_from_the_paper_path():
    model = TinyCNN().double().eval()
    inputs = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    igcam = IntegratedLayerGradCam(model, model.conv2)
    paper = igcam.attribute(inputs, target=1, n_steps=8)
    layer = igcam.attribute(inputs, target=1, n_steps=8, path="layer")
    assert not torch.allclose(paper, layer)


class BatchFromInput(TinyCNN):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.relu2(self.conv2(self.relu1(self.conv1(x))))
        return self.fc(hidden.reshape(x.shape[0], 4, -1).mean(dim=2))


class ViewFromInput(TinyCNN):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.pool(self.relu2(self.conv2(self.relu1(self.conv1(x)))))
        return self.fc(hidden.view(x.shape[0], -1))


@pytest.mark.parametrize("model_class", [BatchFromInput, ViewFromInput])
def test_layer_path_refuses_a_model_tied_to_the_input_batch(model_class):
    model = model_class().double().eval()
    with pytest.raises(ValueError, match="path: 'layer' needs a model whose part"):
        IntegratedLayerGradCam(model, model.conv2).attribute(
            torch.randn(1, 3, 8, 8, dtype=torch.float64),
            target=0,
            n_steps=3,
            path="layer",
        )


def test_unknown_path_is_refused():
    model = TinyCNN().double().eval()
    with pytest.raises(ValueError, match="path"):
        IntegratedLayerGradCam(model, model.conv2).attribute(
            torch.randn(1, 3, 8, 8, dtype=torch.float64), target=0, path="latent"
        )


def test_layer_path_refuses_a_layer_called_twice():
    model = SharedBlockNet().double().eval()
    with pytest.raises(ValueError, match="path: 'layer' needs a layer that runs once"):
        IntegratedLayerGradCam(model, model.conv2).attribute(
            torch.randn(2, 3, 8, 8, dtype=torch.float64),
            target=0,
            n_steps=3,
            path="layer",
        )


class ScaledLogits(TinyCNN):
    def forward(self, x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        return super().forward(x) * scale


def test_layer_path_with_additional_forward_args_runs_the_whole_batch():
    model = ScaledLogits().double().eval()
    inputs = torch.randn(1, 3, 8, 8, dtype=torch.float64)
    scale = torch.tensor([[2.0]], dtype=torch.float64)
    igcam = IntegratedLayerGradCam(model, model.conv2)
    scaled = igcam.attribute(
        inputs, target=1, n_steps=4, path="layer", additional_forward_args=scale
    )
    unscaled = igcam.attribute(
        inputs,
        target=1,
        n_steps=4,
        path="layer",
        additional_forward_args=torch.ones_like(scale),
    )
    # The score is scaled by 2, so are its gradients and the map.
    assert_close_to(scaled, 2 * unscaled)
