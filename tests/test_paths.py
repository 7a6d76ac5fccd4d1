"""The prefix-free graph, its fallback, DataParallel and the layer-space class."""

from __future__ import annotations

import pytest
import torch
import torchvision
from helpers import TinyCNN, small_vit
from reference import (
    naive_integrated_grad_cam,
    naive_layer_path_grad_cam,
    quadrature,
)
from tolerances import assert_close_to
from torch import nn

from captum_igcam import IntegratedLayerGradCam, LayerSpaceIntegratedGradCam


class _ForwardCounter:
    """Counts a module's calls and keeps the batch size of each."""

    def __init__(self, module: nn.Module) -> None:
        self.calls = 0
        self.batch_sizes: list[int] = []
        self.handle = module.register_forward_hook(self._count)

    def _count(self, module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        self.calls += 1
        self.batch_sizes.append(output.shape[0])


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
def test_layer_space_class_matches_its_naive_reference(method):
    model = torchvision.models.resnet18(weights=None).double().eval()
    inputs = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    baselines = torch.full_like(inputs, 0.1)
    result = LayerSpaceIntegratedGradCam(model, model.layer4).attribute(
        inputs,
        target=[5, 9],
        baselines=baselines,
        n_steps=5,
        method=method,
        internal_batch_size=4,
    )
    expected = naive_layer_path_grad_cam(
        model, model.layer4, inputs, baselines, [5, 9], method, 5
    )
    assert_close_to(result, expected)


@pytest.mark.parametrize(
    ("internal_batch_size", "passes_per_example"),
    [(None, 1), (10, 1), (11, 1), (35, 1), (4, 3), (1, 10)],
)
def test_layer_space_prefix_runs_once_per_example_and_call(
    internal_batch_size, passes_per_example
):
    """The part before the layer runs once per example whenever a chunk holds
    one example's n_steps points; a smaller internal_batch_size (a memory
    bound) splits an example's points, and each chunk runs its prefix."""
    model = TinyCNN().double().eval()
    counter = _ForwardCounter(model.conv1)
    LayerSpaceIntegratedGradCam(model, model.conv2).attribute(
        torch.randn(3, 3, 8, 8, dtype=torch.float64),
        target=1,
        n_steps=10,
        internal_batch_size=internal_batch_size,
    )
    counter.handle.remove()
    # The check for a route around the layer on one example, the baselines
    # of the three examples in one pass, then each example's passes, whose
    # prefix runs on that example alone.
    assert counter.batch_sizes == [1, 3] + [1] * (3 * passes_per_example)


def test_layer_space_maps_differ_from_the_papers():
    model = TinyCNN().double().eval()
    inputs = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    paper = IntegratedLayerGradCam(model, model.conv2).attribute(
        inputs, target=1, n_steps=8
    )
    layer_space = LayerSpaceIntegratedGradCam(model, model.conv2).attribute(
        inputs, target=1, n_steps=8
    )
    assert not torch.allclose(paper, layer_space)


def test_layer_space_options_match_the_per_step_maps():
    """Signed, per channel: ``sum_m s_m a_m w(m) (A(x) - A(x'))`` by hand."""
    model = TinyCNN().double().eval()
    inputs = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    explainer = LayerSpaceIntegratedGradCam(model, model.conv2)
    options = dict(
        target=[0, 3],
        n_steps=4,
        method="riemann_trapezoid",
        per_step_relu=False,
        attr_dim_summation=False,
    )
    signed = explainer.attribute(inputs, **options)
    clipped = explainer.attribute(inputs, relu_attributions=True, **options)
    capture = _LayerOutput(model.conv2)
    model(torch.zeros_like(inputs))
    base = capture.output
    model(inputs)
    change = capture.output - base
    expected = torch.zeros_like(change)
    for alpha, step in zip(*quadrature("riemann_trapezoid", 4)):
        capture.replacement = (base + alpha * change).requires_grad_()
        score = model(inputs).gather(1, torch.tensor([[0], [3]])).sum()
        (gradient,) = torch.autograd.grad(score, capture.replacement)
        expected += step * alpha * gradient.mean(dim=(2, 3), keepdim=True) * change
    capture.handle.remove()
    assert_close_to(signed, expected)
    assert_close_to(clipped, expected.clamp(min=0))


class _LayerOutput:
    """Keeps a layer's output, or replaces it by ``replacement``."""

    def __init__(self, layer: nn.Module) -> None:
        self.output: torch.Tensor | None = None
        self.replacement: torch.Tensor | None = None
        self.handle = layer.register_forward_hook(self._hook)

    def _hook(self, module, args, output):
        self.output = output.detach()
        return self.replacement


class BatchFromInput(TinyCNN):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.relu2(self.conv2(self.relu1(self.conv1(x))))
        return self.fc(hidden.reshape(x.shape[0], 4, -1).mean(dim=2))


class ViewFromInput(TinyCNN):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.pool(self.relu2(self.conv2(self.relu1(self.conv1(x)))))
        return self.fc(hidden.view(x.shape[0], -1))


def test_layer_space_refuses_a_model_tied_to_the_input_batch():
    model = BatchFromInput().double().eval()
    with pytest.raises(
        ValueError,
        match="^forward_func: expected a model whose part after the layer follows "
        "the layer's batch size",
    ):
        LayerSpaceIntegratedGradCam(model, model.conv2).attribute(
            torch.randn(1, 3, 8, 8, dtype=torch.float64), target=0, n_steps=3
        )


class OutOfMemoryAfterTheLayer(TinyCNN):
    """Runs out of memory when the part after the layer gets more than 2 rows."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.pool(self.relu2(self.conv2(self.relu1(self.conv1(x)))))
        if len(hidden) > 2:
            raise torch.OutOfMemoryError("out of memory in the head")
        return self.fc(hidden.flatten(1))


@pytest.mark.parametrize(
    ("model_class", "error", "message"),
    [
        (ViewFromInput, RuntimeError, "mat1 and mat2 shapes cannot be multiplied"),
        (OutOfMemoryAfterTheLayer, torch.OutOfMemoryError, "out of memory in the"),
    ],
)
def test_layer_space_passes_on_errors_it_did_not_diagnose(model_class, error, message):
    """A failure inside the model (an out-of-memory error that a caller may
    catch to retry with smaller chunks, a shape error) reaches the caller as
    it was raised, not as a ValueError about the model's design."""
    model = model_class().double().eval()
    with pytest.raises(error, match=message) as raised:
        LayerSpaceIntegratedGradCam(model, model.conv2).attribute(
            torch.randn(2, 3, 8, 8, dtype=torch.float64), target=0, n_steps=3
        )
    assert type(raised.value) is error


def test_layer_space_refuses_a_layer_called_twice():
    model = SharedBlockNet().double().eval()
    with pytest.raises(
        ValueError,
        match="^layer: expected a layer that runs once per forward pass, got 2",
    ):
        LayerSpaceIntegratedGradCam(model, model.conv2).attribute(
            torch.randn(2, 3, 8, 8, dtype=torch.float64), target=0, n_steps=3
        )


def _resnet18() -> nn.Module:
    torch.manual_seed(0)
    return torchvision.models.resnet18(weights=None, num_classes=10).double().eval()


def _hook_count(model: nn.Module) -> int:
    return sum(
        len(module._forward_hooks) + len(module._forward_pre_hooks)
        for module in model.modules()
    )


@pytest.mark.parametrize("grad_enabled", [True, False])
@pytest.mark.parametrize(
    ("make_model", "layer_name", "image_size"),
    [
        (_resnet18, "layer4.1.bn2", 64),
        (_resnet18, "layer3.0.conv1", 64),
        (small_vit, "encoder.layers.encoder_layer_1.ln_1", 32),
    ],
)
def test_layer_space_refuses_a_layer_inside_a_residual_block(
    make_model, layer_name, image_size, grad_enabled
):
    """The skip connection would carry one example's features to every point.

    The old behaviour was silently wrong maps: the part before the layer ran
    on one example, whose skip tensor broadcast onto every row. The refusal
    comes before any path point runs and leaves no hook and the caller's
    grad mode behind.
    """
    model = make_model()
    layer = model.get_submodule(layer_name)
    hooks_before = _hook_count(model)
    counter = _ForwardCounter(layer)
    with torch.set_grad_enabled(grad_enabled):
        with pytest.raises(ValueError) as refusal:
            LayerSpaceIntegratedGradCam(model, layer).attribute(
                torch.randn(2, 3, image_size, image_size, dtype=torch.float64),
                target=[1, 2],
                n_steps=3,
            )
        assert torch.is_grad_enabled() == grad_enabled
    counter.handle.remove()
    message = str(refusal.value)
    assert message.startswith("layer: ")
    assert "route around the layer" in message
    assert "explain the whole block" in message
    assert "IntegratedLayerGradCam" in message
    assert counter.batch_sizes == [1]
    assert _hook_count(model) == hooks_before


@pytest.mark.parametrize(
    ("make_model", "layer_name", "image_size"),
    [
        (_resnet18, "layer4", 64),
        (_resnet18, "layer3.1", 64),
    ],
)
def test_layer_space_at_a_blocks_output_matches_the_reference(
    make_model, layer_name, image_size
):
    """A whole block has no route around it: each example's map is the naive
    one, also in a batch (where a skip tensor would have leaked between
    examples) and when the caller has switched grad mode off."""
    model = make_model()
    layer = model.get_submodule(layer_name)
    inputs = torch.randn(2, 3, image_size, image_size, dtype=torch.float64)
    baselines = torch.zeros_like(inputs)
    explainer = LayerSpaceIntegratedGradCam(model, layer)
    maps = explainer.attribute(inputs, target=[1, 2], n_steps=3)
    expected = naive_layer_path_grad_cam(
        model, layer, inputs, baselines, [1, 2], "gausslegendre", 3
    )
    assert maps.abs().amax() > 0
    assert_close_to(maps, expected)
    with torch.no_grad():
        alone = explainer.attribute(inputs[1:], target=2, n_steps=3)
    assert_close_to(maps[1:], alone)


class ScaledLogits(TinyCNN):
    def forward(self, x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        return super().forward(x) * scale


def test_layer_space_with_a_tensor_in_additional_forward_args():
    """One scale per example, used after the layer, for several examples."""
    model = ScaledLogits().double().eval()
    inputs = torch.randn(3, 3, 8, 8, dtype=torch.float64)
    baselines = torch.full_like(inputs, -0.2)
    scale = torch.tensor([[2.0], [0.5], [-1.0]], dtype=torch.float64)
    result = LayerSpaceIntegratedGradCam(model, model.conv2).attribute(
        inputs,
        target=[1, 0, 4],
        baselines=baselines,
        additional_forward_args=scale,
        n_steps=4,
        internal_batch_size=6,
    )
    expected = naive_layer_path_grad_cam(
        model,
        model.conv2,
        inputs,
        baselines,
        [1, 0, 4],
        "gausslegendre",
        4,
        extra_args=(scale,),
    )
    assert_close_to(result, expected)


class _MemoryFormats:
    """Records whether the tensors entering some modules are channels_last."""

    def __init__(self, *modules: nn.Module) -> None:
        self.seen: list[bool] = []
        self.handles = [m.register_forward_pre_hook(self._record) for m in modules]

    def _record(self, module: nn.Module, args: tuple) -> None:
        self.seen.append(args[0].is_contiguous(memory_format=torch.channels_last))

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


@pytest.mark.parametrize(
    "explainer_class", [IntegratedLayerGradCam, LayerSpaceIntegratedGradCam]
)
def test_channels_last_is_kept_and_gives_the_contiguous_maps(explainer_class):
    """Path points and the tensors handed on from the layer stay channels_last."""
    model = torchvision.models.resnet18(weights=None).double().eval()
    inputs = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    kwargs = dict(target=[3, 8], n_steps=4, internal_batch_size=4)
    contiguous = explainer_class(model, model.layer3).attribute(inputs, **kwargs)

    model = model.to(memory_format=torch.channels_last)
    inputs = inputs.contiguous(memory_format=torch.channels_last)
    formats = _MemoryFormats(model.conv1, model.layer4)
    try:
        channels_last = explainer_class(model, model.layer3).attribute(inputs, **kwargs)
    finally:
        formats.remove()
    # conv1 sees the path points (or the path's ends and one example) and
    # layer4 the tensors the hook on layer3 hands on.
    assert formats.seen and all(formats.seen), formats.seen
    assert_close_to(channels_last, contiguous)


@pytest.mark.slow
@pytest.mark.parametrize(
    "explainer_class", [IntegratedLayerGradCam, LayerSpaceIntegratedGradCam]
)
def test_compiled_model_gives_the_eager_maps_after_an_eager_run(explainer_class):
    """Explain eagerly, then compile and explain with
    another batch size and a short last chunk (a recompilation)."""
    torch._dynamo.reset()
    model = TinyCNN().eval()
    inputs = torch.randn(3, 3, 8, 8)
    kwargs = dict(target=[1, 0, 4], n_steps=5, internal_batch_size=6)
    eager_first = explainer_class(model, model.conv2).attribute(
        inputs[:2], target=[1, 0], n_steps=5
    )
    eager = explainer_class(model, model.conv2).attribute(inputs, **kwargs)
    compiled = torch.compile(model)
    try:
        from_compiled = explainer_class(compiled, model.conv2).attribute(
            inputs, **kwargs
        )
        first_from_compiled = explainer_class(compiled, model.conv2).attribute(
            inputs[:2], target=[1, 0], n_steps=5
        )
    finally:
        torch._dynamo.reset()
    assert_close_to(from_compiled, eager, 1e-5)
    assert_close_to(first_from_compiled, eager_first, 1e-5)


def test_compiled_graph_traced_before_the_hooks_is_reported_clearly():
    """A compiled model first called with the chunk's shape keeps a
    graph without the layer's hook (dynamo skips hook guards by default)."""
    torch._dynamo.reset()
    model = TinyCNN().eval()
    inputs = torch.randn(2, 3, 8, 8)
    compiled = torch.compile(model, backend="eager")
    with torch.no_grad():
        compiled(torch.randn(8, 3, 8, 8))  # 2 examples x 4 path points
    with pytest.raises(ValueError, match="skip_nnmodule_hook_guards = False"):
        IntegratedLayerGradCam(compiled, model.conv2).attribute(
            inputs, target=[1, 0], n_steps=4
        )
    torch._dynamo.reset()


@pytest.mark.parametrize(
    "explainer_class", [IntegratedLayerGradCam, LayerSpaceIntegratedGradCam]
)
def test_compiled_model_with_hook_guards_gives_the_eager_maps(explainer_class):
    """The documented remedy: guards on module hooks, set before compiling."""
    torch._dynamo.reset()
    model = TinyCNN().eval()
    inputs = torch.randn(2, 3, 8, 8)
    kwargs = dict(target=[1, 0], n_steps=4)
    eager = explainer_class(model, model.conv2).attribute(inputs, **kwargs)
    with torch._dynamo.config.patch(skip_nnmodule_hook_guards=False):
        compiled = torch.compile(model, backend="eager")
        with torch.no_grad():
            compiled(torch.randn(8, 3, 8, 8))
        maps = explainer_class(compiled, model.conv2).attribute(inputs, **kwargs)
    torch._dynamo.reset()
    assert_close_to(maps, eager)


class PaddingMaskNet(TinyCNN):
    """Masks the layer's output with a padding mask computed from the input:
    positions where every input channel is zero (padding) are cut off."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        padding = (x != 0).any(dim=1, keepdim=True).to(x.dtype)
        hidden = self.relu2(self.conv2(self.relu1(self.conv1(x))))
        return self.fc(self.pool(hidden * padding).flatten(1))


class DetachedGateNet(TinyCNN):
    """Scales the layer's output by a gate on a detached input statistic."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = torch.sigmoid(4 * x.detach().mean(dim=(1, 2, 3)))
        hidden = self.relu2(self.conv2(self.relu1(self.conv1(x))))
        return self.fc(self.pool(hidden).flatten(1)) * gate[:, None]


def _padded_images() -> torch.Tensor:
    """Three images, each padded with zeros over a different region."""
    images = torch.randn(3, 3, 8, 8, dtype=torch.float64)
    images[0, :, :, 5:] = 0
    images[1, :, 2:, :] = 0
    images[2] -= 1.5  # no padding, and a low gate
    return images


@pytest.mark.parametrize("model_class", [PaddingMaskNet, DetachedGateNet])
def test_layer_space_input_read_outside_the_layer_is_each_examples_own(
    model_class,
):
    """Routes around the layer that autograd does not see (a mask, a detached
    gate) read each example's own input: maps in a batch are the maps alone
    and the per-example float64 reference."""
    model = model_class().double().eval()
    inputs = _padded_images()
    baselines = torch.full_like(inputs, 0.3)
    targets = [1, 4, 2]
    explainer = LayerSpaceIntegratedGradCam(model, model.conv2)
    options = dict(n_steps=5, method="riemann_middle")
    batch = explainer.attribute(
        inputs, target=targets, baselines=baselines, internal_batch_size=6, **options
    )
    alone = torch.cat(
        [
            explainer.attribute(
                inputs[i : i + 1],
                target=targets[i],
                baselines=baselines[i : i + 1],
                **options,
            )
            for i in range(3)
        ]
    )
    expected = naive_layer_path_grad_cam(
        model, model.conv2, inputs, baselines, targets, "riemann_middle", 5
    )
    assert_close_to(batch, alone)
    assert_close_to(batch, expected)


def test_layer_space_refuses_an_extra_tensor_without_a_row_per_example():
    model = ScaledLogits().double().eval()
    inputs = torch.randn(3, 3, 8, 8, dtype=torch.float64)
    with pytest.raises(
        ValueError, match=r"^additional_forward_args: expected tensors with one row"
    ):
        LayerSpaceIntegratedGradCam(model, model.conv2).attribute(
            inputs,
            target=0,
            additional_forward_args=torch.ones(1, 1, dtype=torch.float64),
            n_steps=2,
        )
