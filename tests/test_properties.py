"""Property-based checks over random small CNNs.

Hypothesis draws a CNN (depth, widths, kernels, activations, pooling), the
explained layer, input size, batch, targets, baseline, quadrature and
``internal_batch_size``. The examples are derandomized so that the suite
gives the same verdict on every run. Tolerances live in ``tolerances.py``
and are the ones stated in docs/guarantees.md.
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass

import pytest
import torch
import torchvision
from captum.attr._utils.approximation_methods import SUPPORTED_METHODS
from helpers import TinyCNN
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reference import naive_integrated_grad_cam
from tolerances import (
    DTYPE_TOLERANCES,
    FLOAT64_TOLERANCE,
    assert_close_to,
    relative_error,
)
from torch import Tensor, nn

from captum_igcam import IntegratedLayerGradCam

PROPERTY_SETTINGS = settings(
    max_examples=20,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
# Chunking and batching only reorder floating-point sums.
BATCHING_TOLERANCES = {torch.float64: 1e-10, torch.float32: 1e-5}


@dataclass(frozen=True)
class ConvSpec:
    out_channels: int
    kernel_size: int
    activation: str  # "relu", "tanh" or "none"


@dataclass(frozen=True)
class Case:
    """One drawn attribution problem; ``build`` makes its model and tensors."""

    seed: int
    convs: tuple[ConvSpec, ...]
    pool: str
    classes: int
    layer_index: int
    batch: int
    height: int
    width: int
    baseline_kind: str
    targets: tuple[int, ...]
    method: str
    n_steps: int
    internal_batch_size: int | None
    per_step_relu: bool
    subtract_baseline_activations: bool

    def build(self) -> tuple[nn.Sequential, nn.Module, Tensor, Tensor]:
        """The float64 model, explained layer, inputs and full-shape baselines."""
        generator = torch.Generator().manual_seed(self.seed)
        torch.manual_seed(self.seed)
        layers: list[nn.Module] = []
        explainable: list[nn.Module] = []
        channels = 3
        for spec in self.convs:
            conv = nn.Conv2d(
                channels, spec.out_channels, spec.kernel_size, padding="same"
            )
            layers.append(conv)
            explainable.append(conv)
            if spec.activation != "none":
                activation = nn.ReLU() if spec.activation == "relu" else nn.Tanh()
                layers.append(activation)
                explainable.append(activation)
            channels = spec.out_channels
        pool = (
            nn.AdaptiveMaxPool2d(2) if self.pool == "max" else nn.AdaptiveAvgPool2d(2)
        )
        layers += [pool, nn.Flatten(), nn.Linear(4 * channels, self.classes)]
        model = nn.Sequential(*layers).double().eval()
        layer = explainable[self.layer_index % len(explainable)]
        shape = (self.batch, 3, self.height, self.width)
        inputs = torch.randn(shape, generator=generator, dtype=torch.float64)
        baselines = self._baselines(shape, generator)
        return model, layer, inputs, baselines

    def _baselines(self, shape: tuple[int, ...], generator: torch.Generator) -> Tensor:
        sizes = {
            "zeros": (1, 1, 1, 1),
            "per_channel": (1, 3, 1, 1),
            "one_image": (1, *shape[1:]),
            "per_example": shape,
        }[self.baseline_kind]
        values = torch.rand(sizes, generator=generator, dtype=torch.float64) - 0.5
        if self.baseline_kind == "zeros":
            values.zero_()
        return values.expand(shape)

    def baseline_argument(self, baselines: Tensor) -> Tensor | float | None:
        """What a user would pass: None, a broadcastable tensor or the full one."""
        if self.baseline_kind == "zeros":
            return None
        if self.baseline_kind == "per_channel":
            return baselines[0, :, :1, :1]  # shape (3, 1, 1): one example's dims
        if self.baseline_kind == "one_image":
            return baselines[:1]
        return baselines

    def kwargs(self) -> dict[str, object]:
        return dict(
            target=list(self.targets),
            n_steps=self.n_steps,
            method=self.method,
            per_step_relu=self.per_step_relu,
            subtract_baseline_activations=self.subtract_baseline_activations,
        )


@st.composite
def cases(draw: st.DrawFn) -> Case:
    convs = tuple(
        ConvSpec(
            draw(st.integers(1, 4)),
            draw(st.sampled_from([1, 3])),
            draw(st.sampled_from(["relu", "tanh", "none"])),
        )
        for _ in range(draw(st.integers(1, 3)))
    )
    batch = draw(st.integers(1, 3))
    classes = draw(st.integers(1, 4))
    method = draw(st.sampled_from(SUPPORTED_METHODS))
    n_steps = draw(st.integers(1 if method == "gausslegendre" else 2, 4))
    return Case(
        seed=draw(st.integers(0, 2**16)),
        convs=convs,
        pool=draw(st.sampled_from(["avg", "max"])),
        classes=classes,
        layer_index=draw(st.integers(0, 5)),
        batch=batch,
        height=draw(st.integers(2, 7)),
        width=draw(st.integers(2, 7)),
        baseline_kind=draw(
            st.sampled_from(["zeros", "per_channel", "one_image", "per_example"])
        ),
        targets=tuple(draw(st.integers(0, classes - 1)) for _ in range(batch)),
        method=method,
        n_steps=n_steps,
        internal_batch_size=draw(st.none() | st.integers(1, batch * n_steps + 2)),
        per_step_relu=draw(st.booleans()),
        subtract_baseline_activations=draw(st.booleans()),
    )


def attribute(
    model: nn.Module,
    layer: nn.Module,
    inputs: Tensor,
    baselines: Tensor | float | None,
    case: Case,
    **overrides: object,
) -> Tensor:
    kwargs = {**case.kwargs(), **overrides}
    with warnings.catch_warnings():
        # Captum's notice that a batch size below the number of examples is
        # raised to it.
        warnings.filterwarnings("ignore", "Internal batch size cannot be less")
        return IntegratedLayerGradCam(model, layer).attribute(
            inputs, baselines=baselines, **kwargs
        )


@PROPERTY_SETTINGS
@given(case=cases())
def test_matches_the_naive_reference(case: Case):
    model, layer, inputs, baselines = case.build()
    result = attribute(
        model,
        layer,
        inputs,
        case.baseline_argument(baselines),
        case,
        internal_batch_size=case.internal_batch_size,
    )
    expected = naive_integrated_grad_cam(
        model,
        layer,
        (inputs,),
        (baselines,),
        list(case.targets),
        case.method,
        case.n_steps,
        per_step_relu=case.per_step_relu,
        subtract_baseline_activations=case.subtract_baseline_activations,
    )
    assert_close_to(result, expected, FLOAT64_TOLERANCE)


@PROPERTY_SETTINGS
@given(case=cases(), dtype=st.sampled_from([torch.float64, torch.float32]))
def test_result_does_not_depend_on_batching_or_chunking(case: Case, dtype: torch.dtype):
    model, layer, inputs, baselines = case.build()
    model, inputs, baselines = model.to(dtype), inputs.to(dtype), baselines.to(dtype)
    whole = attribute(model, layer, inputs, baselines, case)
    chunked = attribute(
        model,
        layer,
        inputs,
        baselines,
        case,
        internal_batch_size=case.internal_batch_size or 1,
    )
    one_by_one = torch.cat(
        [
            attribute(
                model,
                layer,
                inputs[i : i + 1],
                baselines[i : i + 1],
                case,
                target=case.targets[i],
            )
            for i in range(case.batch)
        ]
    )
    assert_close_to(chunked, whole, BATCHING_TOLERANCES[dtype])
    assert_close_to(one_by_one, whole, BATCHING_TOLERANCES[dtype])


OUTPUT_DTYPES = {
    torch.float64: torch.float64,
    torch.float32: torch.float32,
    torch.bfloat16: torch.float32,
}


def _cast_and_attribute(
    model: nn.Module,
    layer_name: str,
    inputs: Tensor,
    baselines: Tensor,
    dtype: torch.dtype,
    **kwargs: object,
) -> Tensor:
    cast = copy.deepcopy(model).to(dtype)
    return IntegratedLayerGradCam(cast, cast.get_submodule(layer_name)).attribute(
        inputs.to(dtype), baselines=baselines.to(dtype), **kwargs
    )


@PROPERTY_SETTINGS
@given(case=cases())
def test_narrow_dtypes_give_finite_maps_and_float32_stays_close(case: Case):
    """float32 is within its tolerance on every drawn CNN; bfloat16 is finite.

    bfloat16 keeps 8 significant bits, so its error depends on the model's
    conditioning; its tolerance is checked on the fixed models below.
    """
    model, layer, inputs, baselines = case.build()
    layer_name = next(name for name, mod in model.named_modules() if mod is layer)
    kwargs = case.kwargs()
    exact = _cast_and_attribute(
        model, layer_name, inputs, baselines, torch.float64, **kwargs
    )
    for dtype in (torch.float32, torch.bfloat16):
        result = _cast_and_attribute(
            model, layer_name, inputs, baselines, dtype, **kwargs
        )
        assert result.dtype == OUTPUT_DTYPES[dtype]
        assert torch.isfinite(result).all()
        if dtype == torch.float32:
            assert_close_to(result, exact, DTYPE_TOLERANCES[dtype])


def _tiny_cnn() -> tuple[nn.Module, str, Tensor]:
    return TinyCNN().double().eval(), "conv2", torch.randn(3, 3, 12, 12)


def _resnet18() -> tuple[nn.Module, str, Tensor]:
    model = torchvision.models.resnet18(weights=None, num_classes=5)
    return model.double().eval(), "layer3", torch.randn(2, 3, 32, 32)


@pytest.mark.parametrize("make_model", [_tiny_cnn, _resnet18])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_narrow_dtypes_within_stated_tolerance_of_float64(make_model, dtype):
    model, layer_name, inputs = make_model()
    inputs = inputs.double()
    baselines = torch.full_like(inputs, -0.2)
    kwargs = dict(target=[1, 3, 0][: inputs.shape[0]], n_steps=6)
    exact = _cast_and_attribute(
        model, layer_name, inputs, baselines, torch.float64, **kwargs
    )
    result = _cast_and_attribute(model, layer_name, inputs, baselines, dtype, **kwargs)
    assert result.dtype == OUTPUT_DTYPES[dtype]
    assert torch.isfinite(result).all()
    assert exact.abs().max() > 0
    assert relative_error(result, exact) <= DTYPE_TOLERANCES[dtype]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"internal_batch_size": 5, "attr_dim_summation": False},
        {"layer": "relu1_twice"},
    ],
    ids=["plain", "chunked_per_channel", "whole_graph"],
)
def test_repeated_calls_give_bitwise_identical_results(dtype, kwargs):
    model = TinyCNN().to(dtype).eval()
    if kwargs.get("layer") == "relu1_twice":
        model.relu2 = model.relu1  # relu1 now runs twice per pass
    inputs = torch.randn(2, 3, 8, 8).to(dtype)
    call_kwargs = {k: v for k, v in kwargs.items() if k != "layer"}
    igcam = IntegratedLayerGradCam(
        model, model.relu1 if "layer" in kwargs else model.conv2
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "layer: the explained layer was called")
        results = [
            igcam.attribute(inputs, target=[0, 3], n_steps=5, **call_kwargs)
            for _ in range(3)
        ]
    assert torch.isfinite(results[0]).all() and results[0].abs().max() > 0
    assert all(torch.equal(results[0], other) for other in results[1:])
