"""IntegratedLayerGradCam against the naive float64 reference and Captum."""

from __future__ import annotations

import inspect
import warnings

import pytest
import torch
import torchvision
from captum.attr import LayerAttribution, LayerGradCam, NoiseTunnel
from reference import naive_integrated_grad_cam, quadrature
from tolerances import assert_close_to
from torch import nn

from captum_igcam import IntegratedLayerGradCam

ARCHITECTURES = {
    "resnet18.layer4": (torchvision.models.resnet18, "layer4"),
    "resnet18.layer3": (torchvision.models.resnet18, "layer3"),
    # vgg11's features[18] is followed by an in-place ReLU.
    "vgg11.features18": (torchvision.models.vgg11, "features.18"),
    # DenseNet applies an in-place ReLU to `features` and inside its blocks.
    "densenet121.features": (torchvision.models.densenet121, "features"),
}


def _build(name: str) -> tuple[nn.Module, nn.Module]:
    factory, layer_name = ARCHITECTURES[name]
    model = factory(weights=None).double().eval()
    return model, model.get_submodule(layer_name)


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
@pytest.mark.parametrize(
    "method", ["gausslegendre", "riemann_right", "riemann_trapezoid"]
)
def test_matches_naive_reference_on_torchvision_models(arch: str, method: str):
    model, layer = _build(arch)
    inputs = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    baselines = torch.rand(1, 3, 64, 64, dtype=torch.float64) * 0.5
    targets = [3, 7]
    result = IntegratedLayerGradCam(model, layer).attribute(
        inputs, target=targets, baselines=baselines, n_steps=5, method=method
    )
    expected = naive_integrated_grad_cam(
        model,
        layer,
        (inputs,),
        (baselines.expand_as(inputs),),
        targets,
        method,
        5,
    )
    assert_close_to(result, expected)


@pytest.mark.parametrize("method", ["riemann_left", "riemann_middle"])
@pytest.mark.parametrize("baseline", [0.0, -0.3])
@pytest.mark.parametrize("per_step_relu", [True, False])
@pytest.mark.parametrize("subtract", [True, False])
def test_matches_reference_for_every_switch(
    tiny_cnn, method, baseline, per_step_relu, subtract
):
    inputs = torch.randn(3, 3, 8, 8, dtype=torch.float64)
    result = IntegratedLayerGradCam(tiny_cnn, tiny_cnn.conv2).attribute(
        inputs,
        target=torch.tensor([0, 4, 2]),
        baselines=baseline,
        n_steps=6,
        method=method,
        per_step_relu=per_step_relu,
        subtract_baseline_activations=subtract,
    )
    expected = naive_integrated_grad_cam(
        tiny_cnn,
        tiny_cnn.conv2,
        (inputs,),
        (torch.full_like(inputs, baseline),),
        [0, 4, 2],
        method,
        6,
        per_step_relu=per_step_relu,
        subtract_baseline_activations=subtract,
    )
    assert_close_to(result, expected)


def test_default_baseline_is_zero_and_default_method_gausslegendre(tiny_cnn):
    inputs = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    result = IntegratedLayerGradCam(tiny_cnn, tiny_cnn.conv2).attribute(
        inputs, target=1, n_steps=7
    )
    expected = naive_integrated_grad_cam(
        tiny_cnn,
        tiny_cnn.conv2,
        (inputs,),
        (torch.zeros_like(inputs),),
        [1, 1],
        "gausslegendre",
        7,
    )
    assert_close_to(result, expected)


def test_notebook_variant_equals_summed_per_step_grad_cam_maps(tiny_cnn):
    """The authors' notebook: a = m/M (m = 0..M-1), A(x_a) and a summed ReLU."""
    inputs = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    n_steps = 8
    notebook = n_steps * IntegratedLayerGradCam(tiny_cnn, tiny_cnn.conv2).attribute(
        inputs,
        target=2,
        n_steps=n_steps,
        method="riemann_left",
        subtract_baseline_activations=False,
    )
    grad_cam = LayerGradCam(tiny_cnn, tiny_cnn.conv2)
    expected = sum(
        grad_cam.attribute(m / n_steps * inputs, target=2, relu_attributions=True)
        for m in range(n_steps)
    )
    assert_close_to(notebook, expected)


@pytest.mark.parametrize("method", ["riemann_right", "riemann_trapezoid"])
def test_signed_variant_is_weighted_average_of_layer_grad_cam(tiny_cnn, method):
    inputs = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    baselines = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    result = IntegratedLayerGradCam(tiny_cnn, tiny_cnn.conv2).attribute(
        inputs,
        target=[1, 3],
        baselines=baselines,
        n_steps=6,
        method=method,
        per_step_relu=False,
        subtract_baseline_activations=False,
    )
    grad_cam = LayerGradCam(tiny_cnn, tiny_cnn.conv2)
    alphas, weights = quadrature(method, 6)
    expected = sum(
        w * grad_cam.attribute(baselines + a * (inputs - baselines), target=[1, 3])
        for a, w in zip(alphas, weights)
    )
    assert_close_to(result, expected)


@pytest.mark.parametrize("per_step_relu", [True, False])
def test_per_channel_maps_sum_to_summed_map(tiny_cnn, per_step_relu):
    inputs = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    igcam = IntegratedLayerGradCam(tiny_cnn, tiny_cnn.conv2)
    kwargs = dict(target=0, n_steps=5, per_step_relu=per_step_relu)
    summed = igcam.attribute(inputs, **kwargs)
    per_channel = igcam.attribute(inputs, attr_dim_summation=False, **kwargs)
    assert per_channel.shape == (2, 4, 8, 8)
    assert_close_to(per_channel.sum(dim=1, keepdim=True), summed)


def test_relu_attributions_clips_the_signed_map(tiny_cnn):
    inputs = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    igcam = IntegratedLayerGradCam(tiny_cnn, tiny_cnn.conv2)
    signed = igcam.attribute(inputs, target=0, n_steps=5, per_step_relu=False)
    clipped = igcam.attribute(
        inputs, target=0, n_steps=5, per_step_relu=False, relu_attributions=True
    )
    assert (signed < 0).any()
    assert_close_to(clipped, signed.clamp(min=0))


def test_batched_equals_per_example_and_any_internal_batch_size(tiny_cnn):
    inputs = torch.randn(3, 3, 8, 8, dtype=torch.float64)
    igcam = IntegratedLayerGradCam(tiny_cnn, tiny_cnn.conv2)
    targets = [4, 0, 2]
    batched = igcam.attribute(inputs, target=targets, n_steps=7)
    one_by_one = torch.cat(
        [
            igcam.attribute(inputs[i : i + 1], target=t, n_steps=7)
            for i, t in enumerate(targets)
        ]
    )
    assert_close_to(batched, one_by_one)
    for size in (1, 3, 4, 11, 21, 100):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            chunked = igcam.attribute(
                inputs, target=targets, n_steps=7, internal_batch_size=size
            )
        assert_close_to(chunked, batched)
        # Below the 3 examples the size is raised to 3, with a warning; at or
        # above it nothing is said.
        messages = [str(warning.message) for warning in caught]
        if size < 3:
            assert len(messages) == 1 and "batch size of 3" in messages[0]
        else:
            assert messages == []


class TwoInputNet(nn.Module):
    """Image and a per-example scale, plus a non-tensor flag as extra args."""

    def __init__(self) -> None:
        super().__init__()
        self.conv_a = nn.Conv2d(3, 4, 3, padding=1)
        self.conv_b = nn.Conv2d(1, 4, 3, padding=1)
        self.mix = nn.Conv2d(4, 6, 3, padding=1)
        self.fc = nn.Linear(6, 3)

    def forward(self, image, mask, scale, negate=False):
        hidden = torch.relu(
            self.mix(torch.relu(self.conv_a(image) + self.conv_b(mask)))
        )
        logits = self.fc(hidden.mean(dim=(2, 3))) * scale
        return -logits if negate else logits


def test_multi_input_model_with_additional_forward_args():
    model = TwoInputNet().double().eval()
    image = torch.randn(2, 3, 6, 6, dtype=torch.float64)
    mask = torch.rand(2, 1, 6, 6, dtype=torch.float64)
    scale = torch.tensor([[1.5], [0.5]], dtype=torch.float64)
    image_base = torch.full_like(image, 0.2)
    result = IntegratedLayerGradCam(model, model.mix).attribute(
        (image, mask),
        target=[2, 1],
        baselines=(image_base, 0.0),
        additional_forward_args=(scale, True),
        n_steps=5,
        internal_batch_size=4,
    )
    expected = naive_integrated_grad_cam(
        model,
        model.mix,
        (image, mask),
        (image_base, torch.zeros_like(mask)),
        [2, 1],
        "gausslegendre",
        5,
        extra_args=(scale, True),
    )
    assert_close_to(result, expected)


class SplitLayer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 6, 3, padding=1)

    def forward(self, x):
        first, second = self.conv(x).split(3, dim=1)
        return first, second


class TupleOutputNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.split = SplitLayer()
        self.fc = nn.Linear(3, 2)

    def forward(self, x):
        first, second = self.split(torch.relu(self.stem(x)))
        return self.fc((torch.relu(first) * torch.sigmoid(second)).mean(dim=(2, 3)))


def test_layer_with_tuple_output_gives_tuple_of_maps():
    model = TupleOutputNet().double().eval()
    inputs = torch.randn(2, 3, 6, 6, dtype=torch.float64)
    result = IntegratedLayerGradCam(model, model.split).attribute(
        inputs, target=1, n_steps=4
    )
    assert isinstance(result, tuple) and len(result) == 2
    for index in range(2):
        expected = naive_integrated_grad_cam(
            model,
            model.split,
            (inputs,),
            (torch.zeros_like(inputs),),
            [1, 1],
            "gausslegendre",
            4,
            tensor_index=index,
        )
        assert_close_to(result[index], expected)


def test_attribute_to_layer_input(tiny_cnn):
    inputs = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    result = IntegratedLayerGradCam(tiny_cnn, tiny_cnn.conv2).attribute(
        inputs, target=[1, 2], n_steps=5, attribute_to_layer_input=True
    )
    expected = naive_integrated_grad_cam(
        tiny_cnn,
        tiny_cnn.conv2,
        (inputs,),
        (torch.zeros_like(inputs),),
        [1, 2],
        "gausslegendre",
        5,
        to_layer_input=True,
    )
    assert_close_to(result, expected)


def test_layer_without_spatial_dims_uses_gradient_as_weight(tiny_cnn):
    """Like LayerGradCam, a (N, K) layer keeps dS/dA as the weight."""
    inputs = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    result = IntegratedLayerGradCam(tiny_cnn, tiny_cnn.fc).attribute(
        inputs,
        target=0,
        n_steps=4,
        per_step_relu=False,
        subtract_baseline_activations=False,
        method="riemann_right",
    )
    grad_cam = LayerGradCam(tiny_cnn, tiny_cnn.fc)
    expected = sum(
        0.25 * grad_cam.attribute(m / 4 * inputs, target=0) for m in range(1, 5)
    )
    assert result.shape == (2, 1)
    assert_close_to(result, expected)


def test_noise_tunnel_and_interpolate_compose(tiny_cnn):
    inputs = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    igcam = IntegratedLayerGradCam(tiny_cnn, tiny_cnn.conv2)
    plain = igcam.attribute(inputs, target=1, n_steps=4)
    tunnel = NoiseTunnel(igcam)
    noiseless = tunnel.attribute(
        inputs, nt_type="smoothgrad", nt_samples=3, stdevs=0.0, target=1, n_steps=4
    )
    assert_close_to(noiseless, plain)
    smoothed = tunnel.attribute(
        inputs, nt_type="smoothgrad", nt_samples=3, stdevs=0.5, target=1, n_steps=4
    )
    assert smoothed.shape == plain.shape
    assert not torch.allclose(smoothed, plain)
    upsampled = LayerAttribution.interpolate(plain, (16, 16), "bilinear")
    assert upsampled.shape == (2, 1, 16, 16)


def test_output_is_detached_and_has_no_convergence_delta(tiny_cnn):
    inputs = torch.randn(1, 3, 8, 8, dtype=torch.float64, requires_grad=True)
    igcam = IntegratedLayerGradCam(tiny_cnn, tiny_cnn.conv2)
    result = igcam.attribute(inputs, target=0, n_steps=3)
    assert not result.requires_grad and result.grad_fn is None
    assert igcam.has_convergence_delta() is False
    assert inputs.grad is None


def _model_state(model: nn.Module) -> tuple:
    return (
        [p.requires_grad for p in model.parameters()],
        [m.training for m in model.modules()],
        [
            (len(m._forward_hooks), len(m._forward_pre_hooks), len(m._backward_hooks))
            for m in model.modules()
        ],
    )


@pytest.mark.parametrize("grad_enabled", [True, False])
def test_model_and_grad_mode_left_as_they_were(tiny_cnn, grad_enabled):
    tiny_cnn.conv1.weight.requires_grad_(False)
    before = _model_state(tiny_cnn)
    with torch.set_grad_enabled(grad_enabled):
        IntegratedLayerGradCam(tiny_cnn, tiny_cnn.conv2).attribute(
            torch.randn(2, 3, 8, 8, dtype=torch.float64),
            target=1,
            n_steps=4,
            internal_batch_size=3,
        )
        assert torch.is_grad_enabled() is grad_enabled
    assert _model_state(tiny_cnn) == before
    assert all(p.grad is None for p in tiny_cnn.parameters())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(n_steps=0), "n_steps"),
        (dict(n_steps=1, method="riemann_right"), "n_steps"),
        (dict(method="simpson"), "method"),
        (dict(baselines=torch.zeros(2, 3, 4, 4, dtype=torch.float64)), "baselines"),
    ],
)
def test_clear_value_errors(tiny_cnn, kwargs, message):
    igcam = IntegratedLayerGradCam(tiny_cnn, tiny_cnn.conv2)
    with pytest.raises(ValueError, match=message):
        igcam.attribute(
            torch.randn(2, 3, 8, 8, dtype=torch.float64), target=0, **kwargs
        )


def test_n_steps_one_is_fine_for_gauss_legendre(tiny_cnn):
    inputs = torch.randn(1, 3, 8, 8, dtype=torch.float64)
    result = IntegratedLayerGradCam(tiny_cnn, tiny_cnn.conv2).attribute(
        inputs, target=0, n_steps=1
    )
    expected = naive_integrated_grad_cam(
        tiny_cnn,
        tiny_cnn.conv2,
        (inputs,),
        (torch.zeros_like(inputs),),
        [0],
        "gausslegendre",
        1,
    )
    assert_close_to(result, expected)


def test_signature_extends_layer_grad_cam_with_the_spec_defaults():
    ours = inspect.signature(IntegratedLayerGradCam.attribute).parameters
    theirs = inspect.signature(LayerGradCam.attribute).parameters
    # LayerGradCam's parameters first, in its order, with its defaults.
    assert list(ours)[: len(theirs)] == list(theirs)
    for name, parameter in theirs.items():
        assert ours[name].default == parameter.default, name
    spec_defaults = {
        "n_steps": 50,
        "method": "gausslegendre",
        "baselines": None,
        "internal_batch_size": None,
        "per_step_relu": True,
        "subtract_baseline_activations": False,  # chosen by docs/variants.md
        "relu_attributions": False,
        "attr_dim_summation": True,
        "attribute_to_layer_input": False,
        "grad_kwargs": None,
    }
    assert {name: ours[name].default for name in spec_defaults} == spec_defaults
    assert list(inspect.signature(IntegratedLayerGradCam.__init__).parameters) == list(
        inspect.signature(LayerGradCam.__init__).parameters
    )
    assert hasattr(IntegratedLayerGradCam.attribute, "__wrapped__")  # log_usage


def test_positional_call_written_for_layer_grad_cam(tiny_cnn):
    inputs = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    igcam = IntegratedLayerGradCam(tiny_cnn, tiny_cnn.conv2)
    positional = igcam.attribute(inputs, 1, None, False, True, False)
    keywords = igcam.attribute(
        inputs, target=1, relu_attributions=True, attr_dim_summation=False
    )
    assert positional.shape == (2, 4, 8, 8)
    assert_close_to(positional, keywords)


@pytest.mark.parametrize("n_steps", [2, 5])
def test_riemann_trapezoid_is_one_minus_one_over_n_times_the_trapezoid_rule(
    tiny_cnn, n_steps
):
    """Captum's trapezoid weights sum to 1 - 1/n (documented in the class)."""
    inputs = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    result = IntegratedLayerGradCam(tiny_cnn, tiny_cnn.conv2).attribute(
        inputs,
        target=[0, 3],
        n_steps=n_steps,
        method="riemann_trapezoid",
        per_step_relu=False,
    )
    # The textbook trapezoid rule on n equally spaced points of [0, 1].
    grad_cam = LayerGradCam(tiny_cnn, tiny_cnn.conv2)
    h = 1 / (n_steps - 1)
    trapezoid = sum(
        (h / 2 if k in (0, n_steps - 1) else h)
        * grad_cam.attribute(k * h * inputs, target=[0, 3])
        for k in range(n_steps)
    )
    assert_close_to(result, (1 - 1 / n_steps) * trapezoid)
