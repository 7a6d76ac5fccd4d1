"""Bad input, the user's model left untouched, no leaks (issue 6), and what
real users pass to ``attribute`` (issue 12).

Every rejected argument must raise an exception of a stated type whose
message names the parameter and says what was expected; arguments that can be
checked without the model must be rejected before any forward pass. Whatever
happens inside a call, including failures injected half way, the model and
the grad mode must be exactly as they were before it. Targets from numpy,
inference mode, wrapped models and concurrent calls give the same maps as the
plain call.
"""

from __future__ import annotations

import ctypes
import gc
import re
import sys
import threading
import tracemalloc
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import psutil
import pytest
import torch
import torch.distributed as dist
from captum.attr import LayerGradCam
from helpers import TinyCNN
from reference import naive_integrated_grad_cam, quadrature
from tolerances import assert_close_to
from torch import Tensor, nn

from captum_igcam import (
    IntegratedLayerGradCam,
    LayerSpaceIntegratedGradCam,
    _validation,
)

N_EXAMPLES = 2
N_STEPS = 4
CLASSES = 5


class InjectedFailure(RuntimeError):
    """Raised on purpose inside the user's model."""


FailurePredicate = Callable[[list[int]], bool]


def nth_pass_with_batch(n: int, batch_size: int) -> FailurePredicate:
    """Fails the ``n``-th forward pass (1-based) that sees ``batch_size`` rows.

    The internal passes are told apart by their batch size, not by their
    order, so that the tests do not depend on how many passes a call makes.
    """

    def predicate(batch_sizes: list[int]) -> bool:
        return batch_sizes[-1] == batch_size and batch_sizes.count(batch_size) == n

    return predicate


class _FailingBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, tensor: Tensor) -> Tensor:
        return tensor.clone()

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        raise InjectedFailure("backward pass")


class ProbeNet(TinyCNN):
    """TinyCNN that records its passes and fails where a test asks it to.

    Args:
        fail_when: Called with the batch sizes of the passes so far (this one
                    last); the pass fails when it returns True.
        fail_where: ``"before_layer"``, ``"after_layer"`` (after conv2, whose
                    hook has switched grad mode on) or ``"grad_off"`` (the
                    model switches grad mode off itself, then fails).
        share_relu: Use ``relu1`` for both activations, so that ``relu1`` is
                    called twice per pass.
        fail_in_backward: Put an operation whose backward pass raises after
                    conv2.
    """

    def __init__(
        self,
        fail_when: FailurePredicate | None = None,
        fail_where: str = "after_layer",
        share_relu: bool = False,
        fail_in_backward: bool = False,
    ) -> None:
        super().__init__(classes=CLASSES)
        self.fail_when = fail_when
        self.fail_where = fail_where
        self.share_relu = share_relu
        self.fail_in_backward = fail_in_backward
        self.batch_sizes: list[int] = []

    def _maybe_fail(self, where: str, failing: bool) -> None:
        if failing and self.fail_where == where:
            if where == "grad_off":
                torch.set_grad_enabled(False)
            raise InjectedFailure(f"forward pass {len(self.batch_sizes)}, {where}")

    def forward(self, x: Tensor) -> Tensor:
        self.batch_sizes.append(x.shape[0])
        failing = self.fail_when is not None and self.fail_when(self.batch_sizes)
        self._maybe_fail("before_layer", failing)
        second_relu = self.relu1 if self.share_relu else self.relu2
        hidden = self.conv2(self.relu1(self.conv1(x)))
        self._maybe_fail("after_layer", failing)
        self._maybe_fail("grad_off", failing)
        if self.fail_in_backward:
            hidden = _FailingBackward.apply(hidden)
        return self.fc(self.pool(second_relu(hidden)).flatten(1))


class ScoreNet(ProbeNet):
    """One scalar per example: the score of class 0."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x)[:, 0]


class SumOfInputsNet(ProbeNet):
    """Two input tensors, added before the network."""

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        return super().forward(x + y)


class UnusedLayerNet(ProbeNet):
    def __init__(self) -> None:
        super().__init__()
        self.unused = nn.Conv2d(4, 4, 1)


def make_model(cls: type[ProbeNet] = ProbeNet, **kwargs: Any) -> ProbeNet:
    return cls(**kwargs).double().eval()


def make_inputs() -> Tensor:
    return torch.randn(N_EXAMPLES, 3, 8, 8, dtype=torch.float64)


# --------------------------------------------------------------------------
# The model's state, compared before and after a call.


def _hook_counts(obj: object) -> dict[str, int]:
    return {
        name: len(value)
        for name, value in vars(obj).items()
        if "hook" in name and isinstance(value, dict)
    }


def _global_hook_counts() -> dict[str, int]:
    return _hook_counts(torch.nn.modules.module)


def model_state(model: nn.Module, inputs: tuple[Tensor, ...]) -> dict[str, Any]:
    """Everything a call could change by mistake, in comparable form."""
    return {
        "grad_enabled": torch.is_grad_enabled(),
        "inference_mode": torch.is_inference_mode_enabled(),
        "training": [module.training for module in model.modules()],
        "module_hooks": [_hook_counts(module) for module in model.modules()],
        "global_hooks": _global_hook_counts(),
        "parameter_hooks": [
            (
                len(p._backward_hooks or {}),
                len(getattr(p, "_post_accumulate_grad_hooks", None) or {}),
            )
            for p in model.parameters()
        ],
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "grads_none": [p.grad is None for p in model.parameters()],
        "inputs_requires_grad": [inp.requires_grad for inp in inputs],
        "inputs_grads_none": [inp.grad is None for inp in inputs],
        "values": [t.detach().clone() for t in model.state_dict().values()]
        + [inp.detach().clone() for inp in inputs],
    }


def _assert_identical(old: Tensor, new: Tensor) -> None:
    if old.is_meta or new.is_meta:
        assert (old.shape, old.dtype, new.is_meta) == (new.shape, new.dtype, True)
    else:
        torch.testing.assert_close(new, old, rtol=0, atol=0, equal_nan=True)


def assert_same_state(before: dict[str, Any], after: dict[str, Any]) -> None:
    for key in before:
        if key == "values":
            assert len(before[key]) == len(after[key])
            for old, new in zip(before[key], after[key]):
                _assert_identical(old, new)
        else:
            assert after[key] == before[key], key


def test_state_snapshot_notices_each_kind_of_change():
    """The snapshot used below must see what it is meant to see."""
    model, inputs = make_model(), (make_inputs(),)
    changes: list[Callable[[], object]] = [
        lambda: model.conv2.register_forward_hook(lambda *args: None),
        lambda: model.conv2.register_forward_pre_hook(lambda *args: None),
        lambda: model.fc.register_full_backward_hook(lambda *args: None),
        lambda: nn.modules.module.register_module_forward_hook(lambda *a: None),
        lambda: model.fc.weight.register_hook(lambda grad: grad),
        lambda: model.conv1.weight.requires_grad_(False),
        lambda: model.relu1.train(),
        lambda: torch.set_grad_enabled(not torch.is_grad_enabled()),
        lambda: model.fc.bias.data.add_(1.0),
        lambda: inputs[0].requires_grad_(),
    ]
    for change in changes:
        before = model_state(model, inputs)
        result = change()
        with pytest.raises(AssertionError):
            assert_same_state(before, model_state(model, inputs))
        if isinstance(result, torch.utils.hooks.RemovableHandle):
            result.remove()
        torch.set_grad_enabled(True)


# --------------------------------------------------------------------------
# 1. Bad input: exception type, and a message naming parameter and expectation.


@dataclass(frozen=True)
class BadCall:
    """One rejected call of ``attribute`` on a ProbeNet explained at conv2."""

    name: str
    error: type[Exception]
    parameter: str
    expected: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    inputs: Callable[[Tensor], Any] = lambda x: x
    model_class: type[ProbeNet] = ProbeNet
    before_forward: bool = True


MULTI = dict(model_class=SumOfInputsNet, inputs=lambda x: (x, x.clone()))
F64 = dict(dtype=torch.float64)
ALL_CLASSES = "an index in [0, 4] for a model output of size 5"
BAD_CALLS = [
    BadCall("n_steps zero", ValueError, "n_steps", "an integer >= 1", {"n_steps": 0}),
    BadCall("n_steps negative", ValueError, "n_steps", ">= 1", {"n_steps": -3}),
    BadCall("n_steps float", TypeError, "n_steps", "got float 2.0", {"n_steps": 2.0}),
    BadCall(
        "n_steps str", TypeError, "n_steps", "a positive integer", {"n_steps": "3"}
    ),
    BadCall(
        "n_steps bool", TypeError, "n_steps", "a positive integer", {"n_steps": True}
    ),
    BadCall(
        "n_steps None", TypeError, "n_steps", "a positive integer", {"n_steps": None}
    ),
    *[
        BadCall(
            f"n_steps 1 with {method}",
            ValueError,
            "n_steps",
            f"an integer >= 2 for method='{method}', got 1",
            {"n_steps": 1, "method": method},
        )
        for method in _validation.RIEMANN_METHODS
    ],
    BadCall(
        "unknown method",
        ValueError,
        "method",
        "one of ['riemann_left',",
        {"method": "simpson"},
    ),
    BadCall("method None", ValueError, "method", "one of", {"method": None}),
    BadCall(
        "baselines spatial shape",
        ValueError,
        "baselines",
        "a shape that broadcasts to the inputs' (2, 3, 8, 8)",
        {"baselines": torch.zeros(2, 3, 4, 4, **F64)},
    ),
    BadCall(
        "baselines batch size",
        ValueError,
        "baselines",
        "(batch size 2 or 1)",
        {"baselines": torch.zeros(3, 3, 8, 8, **F64)},
    ),
    BadCall(
        "baselines too many dims",
        ValueError,
        "baselines",
        "broadcasts to the inputs'",
        {"baselines": torch.zeros(1, 2, 3, 8, 8, **F64)},
    ),
    BadCall(
        "baselines float32 for float64 inputs",
        TypeError,
        "baselines",
        "dtype torch.float64 like the inputs, got torch.float32",
        {"baselines": torch.zeros(2, 3, 8, 8)},
    ),
    BadCall(
        "baselines integer dtype",
        TypeError,
        "baselines",
        "dtype torch.float64",
        {"baselines": torch.zeros(2, 3, 8, 8, dtype=torch.int64)},
    ),
    BadCall(
        "baselines on the meta device",
        ValueError,
        "baselines",
        "a Tensor on cpu like the inputs, got one on meta",
        {"baselines": torch.zeros(2, 3, 8, 8, device="meta", **F64)},
    ),
    BadCall(
        "baselines NaN",
        ValueError,
        "baselines",
        "finite values",
        {"baselines": torch.full((1, 3, 8, 8), float("nan"), **F64)},
    ),
    BadCall(
        "baselines inf",
        ValueError,
        "baselines",
        "a finite number",
        {"baselines": float("inf")},
    ),
    BadCall(
        "two baselines for one input",
        ValueError,
        "baselines",
        "1 baseline(s), one per input tensor, got 2",
        {"baselines": (0.0, 0.0)},
    ),
    BadCall(
        "one baseline for two inputs",
        ValueError,
        "baselines",
        "2 baseline(s), one per input tensor, got 1",
        {"baselines": (0.0,)},
        **MULTI,
    ),
    BadCall(
        "second input's baseline shape",
        ValueError,
        "baselines[1]",
        "broadcasts to the inputs'",
        {"baselines": (0.0, torch.zeros(3, 4, 4, **F64))},
        **MULTI,
    ),
    BadCall(
        "inputs with different batch sizes",
        ValueError,
        "inputs[1]",
        "2 examples like inputs[0], got 1",
        inputs=lambda x: (x, x[:1]),
        model_class=SumOfInputsNet,
    ),
    BadCall(
        "internal_batch_size zero",
        ValueError,
        "internal_batch_size",
        "None or an integer >= 1, got 0",
        {"internal_batch_size": 0},
    ),
    BadCall(
        "internal_batch_size negative",
        ValueError,
        "internal_batch_size",
        ">= 1",
        {"internal_batch_size": -4},
    ),
    BadCall(
        "internal_batch_size float",
        TypeError,
        "internal_batch_size",
        "None or a positive integer, got float",
        {"internal_batch_size": 1.5},
    ),
    BadCall(
        "integer inputs",
        TypeError,
        "inputs",
        "a floating-point Tensor",
        inputs=lambda x: x.to(torch.int64),
    ),
    BadCall(
        "bool inputs",
        TypeError,
        "inputs",
        "a floating-point Tensor",
        inputs=lambda x: x > 0,
    ),
    BadCall(
        "empty batch",
        ValueError,
        "inputs",
        "a batch of at least one example along dimension 0, got shape (0, 3, 8, 8)",
        inputs=lambda x: x[:0],
    ),
    BadCall(
        "zero-dim input",
        ValueError,
        "inputs",
        "a batch of at least one example",
        inputs=lambda x: x[0, 0, 0, 0],
    ),
    BadCall(
        "NaN in inputs",
        ValueError,
        "inputs",
        "finite values, found NaN or Inf",
        inputs=lambda x: x.index_fill(2, torch.tensor([3]), float("nan")),
    ),
    BadCall(
        "Inf in second input",
        ValueError,
        "inputs[1]",
        "finite values",
        inputs=lambda x: (x, x.index_fill(0, torch.tensor([1]), -float("inf"))),
        model_class=SumOfInputsNet,
    ),
    BadCall(
        "grad_kwargs unknown key",
        TypeError,
        "grad_kwargs",
        "keyword arguments of torch.autograd.grad (grad_outputs, retain_graph, "
        "create_graph",
        {"grad_kwargs": {"no_such_option": True}},
    ),
    BadCall(
        "grad_kwargs sets the differentiated tensors",
        ValueError,
        "grad_kwargs",
        "options of torch.autograd.grad, got 'inputs', which attribute sets itself",
        {"grad_kwargs": {"inputs": ()}},
    ),
    BadCall(
        "grad_kwargs not a dict",
        TypeError,
        "grad_kwargs",
        "None or a dict of keyword arguments for torch.autograd.grad, got list",
        {"grad_kwargs": [("create_graph", True)]},
    ),
    BadCall(
        "inputs on the meta device",
        ValueError,
        "inputs",
        "a Tensor holding values, got one on the meta device",
        inputs=lambda x: x.to("meta"),
    ),
    # Checked against the first forward pass's output, before any gradient.
    *[
        BadCall(
            f"target {name}",
            error,
            parameter,
            expected,
            {"target": target},
            before_forward=False,
        )
        for name, target, error, parameter, expected in [
            ("out of range", CLASSES, ValueError, "target", ALL_CLASSES),
            ("negative", -1, ValueError, "target", ALL_CLASSES),
            ("out of range in a list", [0, 7], ValueError, "target[1]", ALL_CLASSES),
            (
                "list too long",
                [0, 1, 2],
                ValueError,
                "target",
                "one target per example (2)",
            ),
            (
                "tensor too long",
                torch.tensor([0, 1, 2]),
                ValueError,
                "target",
                "(2), got a list of 3",
            ),
            (
                "2-D tensor",
                torch.zeros(2, 1, dtype=torch.int64),
                ValueError,
                "target",
                "a scalar or a 1-D Tensor",
            ),
            (
                "missing",
                None,
                ValueError,
                "target",
                "a class index (or one per example)",
            ),
            ("float", 1.0, TypeError, "target", "an integer index, got 1.0"),
            (
                "float tensor",
                torch.tensor(1.0),
                TypeError,
                "target",
                "an integer Tensor",
            ),
            ("bool", True, TypeError, "target", "an integer index, got True"),
            ("numpy bool", np.bool_(True), TypeError, "target", "an integer index"),
            (
                "bool tensor",
                torch.tensor([True, False]),
                TypeError,
                "target",
                "an integer Tensor, got torch.bool",
            ),
            (
                "list of bools",
                [True, False],
                TypeError,
                "target[0]",
                "an integer index, got True",
            ),
            (
                "numpy float array",
                np.array([1.0, 2.0]),
                TypeError,
                "target",
                "an integer index, got array([1., 2.])",
            ),
            (
                "with too many indices",
                (0, 1),
                ValueError,
                "target",
                "1 index(es) per example",
            ),
        ]
    ],
    BadCall(
        "target for a scalar output",
        ValueError,
        "target",
        "None because the model's output has shape (2,), one scalar per example",
        {"target": 0},
        model_class=ScoreNet,
        before_forward=False,
    ),
]


@pytest.mark.parametrize("bad", BAD_CALLS, ids=lambda bad: bad.name)
def test_bad_argument_is_rejected_with_a_clear_message(bad: BadCall):
    model = make_model(bad.model_class)
    inputs = bad.inputs(make_inputs())
    kwargs = {"target": 1, "n_steps": 3, **bad.kwargs}
    state_inputs = inputs if isinstance(inputs, tuple) else (inputs,)
    before = model_state(model, state_inputs)
    pattern = f"^{re.escape(bad.parameter)}: expected .*{re.escape(bad.expected)}"
    with pytest.raises(bad.error, match=pattern):
        IntegratedLayerGradCam(model, model.conv2).attribute(inputs, **kwargs)
    assert (model.batch_sizes == []) is bad.before_forward
    assert_same_state(before, model_state(model, state_inputs))


def test_scalar_output_needs_no_target_and_matches_the_reference():
    model, inputs = make_model(ScoreNet), make_inputs()
    result = IntegratedLayerGradCam(model, model.conv2).attribute(inputs, n_steps=3)
    expected = naive_integrated_grad_cam(
        model,
        model.conv2,
        (inputs,),
        (torch.zeros_like(inputs),),
        [None] * 2,
        "gausslegendre",
        3,
    )
    assert_close_to(result, expected)


def test_broadcastable_baselines_are_accepted_and_broadcast():
    """Per-channel baselines, full rank or per example, as in Captum's IG."""
    model, inputs = make_model(), make_inputs()
    igcam = IntegratedLayerGradCam(model, model.conv2)
    channel_means = torch.tensor([0.1, -0.2, 0.3], dtype=torch.float64)
    full = channel_means.reshape(1, 3, 1, 1).expand_as(inputs).contiguous()
    expected = naive_integrated_grad_cam(
        model, model.conv2, (inputs,), (full,), [1, 1], "riemann_middle", 3
    )
    for baseline in (channel_means.reshape(3, 1, 1), channel_means.reshape(1, 3, 1, 1)):
        result = igcam.attribute(
            inputs, target=1, baselines=baseline, n_steps=3, method="riemann_middle"
        )
        assert_close_to(result, expected)


@pytest.mark.parametrize(
    ("inputs", "baselines", "parameter", "expected"),
    [
        (
            [torch.zeros(1, 3)],
            None,
            "inputs",
            "a Tensor or a tuple of Tensors, got list",
        ),
        (
            np.zeros((1, 3)),
            None,
            "inputs",
            "a Tensor or a tuple of Tensors, got ndarray",
        ),
        ((torch.zeros(1, 3), "x"), None, "inputs[1]", "a Tensor, got str"),
        (torch.zeros(1, 3), "zero", "baselines", "a number or a Tensor, got str"),
        (torch.zeros(1, 3), [0.0], "baselines", "a number or a Tensor, got list"),
        (torch.zeros(1, 3), True, "baselines", "a number or a Tensor, got bool"),
    ],
)
def test_wrong_input_and_baseline_types_raise_type_errors(
    inputs, baselines, parameter, expected
):
    """Captum's own formatting asserts on these; the library raises TypeError."""
    with pytest.raises(TypeError, match=f"^{re.escape(parameter)}: expected "):
        _validation.format_inputs_and_baselines(inputs, baselines)
    with pytest.raises(TypeError, match=re.escape(expected)):
        _validation.format_inputs_and_baselines(inputs, baselines)


def test_format_inputs_and_baselines_accepts_what_captum_accepts():
    image, mask = torch.randn(2, 3, 4, 4), torch.rand(2, 1, 4, 4)
    inputs, baselines, n = _validation.format_inputs_and_baselines(
        (image, mask), (torch.ones(3, 1, 1), 0.5)
    )
    assert n == 2 and inputs == (image, mask)
    assert torch.equal(baselines[0], torch.ones_like(image))
    assert torch.equal(baselines[1], torch.full_like(mask, 0.5))
    (single,), (zeros,), _ = _validation.format_inputs_and_baselines(image, None)
    assert single is image and torch.equal(zeros, torch.zeros_like(image))


def test_layer_outside_the_model_is_rejected_at_construction():
    model = make_model()
    with pytest.raises(ValueError, match="^layer: expected a submodule of the model"):
        IntegratedLayerGradCam(model, nn.Conv2d(4, 4, 3))
    with pytest.raises(TypeError, match="^layer: expected a torch.nn.Module, got str"):
        IntegratedLayerGradCam(model, "conv2")


@pytest.mark.parametrize("wrap_in_function", [False, True])
def test_layer_never_called_is_rejected_after_the_first_pass(wrap_in_function):
    """A plain function hides the model, so a foreign layer is found only here."""
    model, inputs = make_model(UnusedLayerNet), make_inputs()
    forward = (lambda x: model(x)) if wrap_in_function else model
    layer = nn.Conv2d(4, 4, 1) if wrap_in_function else model.unused
    before = model_state(model, (inputs,))
    with pytest.raises(
        ValueError, match="^layer: the forward pass never called the explained layer"
    ):
        IntegratedLayerGradCam(forward, layer).attribute(inputs, target=0, n_steps=3)
    assert len(model.batch_sizes) == 1
    assert_same_state(before, model_state(model, (inputs,)))


def test_layer_called_twice_is_attributed_at_its_last_call_with_a_warning():
    model, inputs = make_model(share_relu=True), make_inputs()
    baselines = torch.rand(1, 3, 8, 8, dtype=torch.float64)
    igcam = IntegratedLayerGradCam(model, model.relu1)
    with pytest.warns(
        UserWarning, match="^layer: the explained layer was called 2 "
    ) as record:
        result = igcam.attribute(inputs, target=[1, 3], baselines=baselines, n_steps=4)
    assert record[0].filename == __file__
    expected = naive_integrated_grad_cam(
        model,
        model.relu1,
        (inputs,),
        (baselines.expand_as(inputs),),
        [1, 3],
        "gausslegendre",
        4,
    )
    assert_close_to(result, expected)

    # The signed, unsubtracted variant is a quadrature of LayerGradCam maps,
    # and LayerGradCam too explains the last call.
    with pytest.warns(UserWarning, match="called 2 times"):
        signed = igcam.attribute(
            inputs,
            target=[1, 3],
            baselines=baselines,
            n_steps=4,
            method="riemann_trapezoid",
            per_step_relu=False,
            subtract_baseline_activations=False,
            internal_batch_size=4,
        )
    grad_cam = LayerGradCam(model, model.relu1)
    alphas, weights = quadrature("riemann_trapezoid", 4)
    expected_signed = sum(
        w * grad_cam.attribute(baselines + a * (inputs - baselines), target=[1, 3])
        for a, w in zip(alphas, weights)
    )
    assert_close_to(signed, expected_signed)


def test_training_mode_warns_at_the_caller_and_is_kept():
    model, inputs = make_model(), make_inputs()
    model.train()
    with pytest.warns(
        UserWarning, match="^forward_func: the model is in training"
    ) as record:
        IntegratedLayerGradCam(model, model.conv2).attribute(
            inputs, target=0, n_steps=2
        )
    assert record[0].filename == __file__
    assert all(module.training for module in model.modules())


def test_eval_mode_does_not_warn():
    model, inputs = make_model(), make_inputs()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        IntegratedLayerGradCam(model, model.conv2).attribute(
            inputs, target=0, n_steps=2
        )


# --------------------------------------------------------------------------
# 2. The model is left exactly as it was, whatever happens inside a call.

PATH_BATCH = N_EXAMPLES * N_STEPS
CHUNK = PATH_BATCH // 2


@dataclass(frozen=True)
class Failure:
    name: str
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    call_kwargs: dict[str, Any] = field(default_factory=dict)
    error: type[Exception] = InjectedFailure
    layer: str = "conv2"


FAILURES = [
    Failure(
        "forward fails in the baseline pass",
        {"fail_when": nth_pass_with_batch(1, N_EXAMPLES)},
        # Only the figure's formula needs the baseline's activations.
        {"subtract_baseline_activations": True},
    ),
    Failure(
        "forward fails before the layer",
        {"fail_when": nth_pass_with_batch(1, PATH_BATCH), "fail_where": "before_layer"},
    ),
    Failure(
        "forward fails after the layer switched grad on",
        {"fail_when": nth_pass_with_batch(1, PATH_BATCH)},
    ),
    Failure(
        "forward switches grad off, then fails",
        {"fail_when": nth_pass_with_batch(1, PATH_BATCH), "fail_where": "grad_off"},
    ),
    Failure(
        "second internal batch fails",
        {"fail_when": nth_pass_with_batch(2, CHUNK)},
        {"internal_batch_size": CHUNK},
    ),
    Failure(
        "whole-graph rerun of a layer called twice fails",
        {"fail_when": nth_pass_with_batch(2, PATH_BATCH), "share_relu": True},
        layer="relu1",
    ),
    Failure(
        "backward pass fails",
        {"fail_in_backward": True},
    ),
    Failure(
        "bad target detected after the first pass",
        call_kwargs={"target": [0, CLASSES + 2], "internal_batch_size": CHUNK},
        error=ValueError,
    ),
    Failure(
        "torch.autograd.grad fails on the user's grad_outputs",
        call_kwargs={"grad_kwargs": {"grad_outputs": torch.ones(3)}},
        error=RuntimeError,
    ),
]


def _attribute(model: ProbeNet, failure: Failure, inputs: Tensor) -> Tensor:
    layer = model.get_submodule(failure.layer)
    kwargs = {"target": [1, 2], "n_steps": N_STEPS, **failure.call_kwargs}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "layer: the explained layer was called")
        warnings.filterwarnings("ignore", "forward_func: the model is in training")
        return IntegratedLayerGradCam(model, layer).attribute(inputs, **kwargs)


@pytest.mark.parametrize("grad_enabled", [True, False])
@pytest.mark.parametrize("failure", FAILURES, ids=lambda failure: failure.name)
def test_model_is_left_as_it_was_after_a_failure(failure: Failure, grad_enabled: bool):
    model, inputs = make_model(**failure.model_kwargs), make_inputs()
    model.conv1.weight.requires_grad_(False)
    model.fc.train()
    with torch.set_grad_enabled(grad_enabled):
        before = model_state(model, (inputs,))
        with pytest.raises(failure.error):
            _attribute(model, failure, inputs)
        after = model_state(model, (inputs,))
    assert_same_state(before, after)


@pytest.mark.parametrize(
    "failure",
    [
        f
        for f in FAILURES
        if f.error is InjectedFailure and not f.model_kwargs.get("fail_in_backward")
    ],
    ids=lambda failure: failure.name,
)
def test_model_works_normally_after_a_failure(failure: Failure):
    model, inputs = make_model(**failure.model_kwargs), make_inputs()
    fail_when, model.fail_when = model.fail_when, None
    expected = _attribute(model, failure, inputs)
    model.fail_when, model.batch_sizes = fail_when, []
    with pytest.raises(InjectedFailure):
        _attribute(model, failure, inputs)
    model.fail_when = None
    assert torch.equal(_attribute(model, failure, inputs), expected)


# --------------------------------------------------------------------------
# 3. No growth in live tensors or memory over many calls.
#
# Memory is sampled after a warm-up and after each of two equal halves of
# the loop: the live tensors (exact), the Python heap (tracemalloc) and the C
# heap in use, where CPU tensors keep their data. These are current measures:
# a peak such as ru_maxrss cannot see growth below an earlier peak, and the
# resident set size cannot see memory that reuses pages freed by earlier
# tests. A leak grows them in both halves, while one-off caches fill during
# the warm-up and the first half, so the second half is held to a limit.


@dataclass(frozen=True)
class MemoryUse:
    live_tensors: int
    python_bytes: int
    native_bytes: int

    def __sub__(self, other: MemoryUse) -> MemoryUse:
        return MemoryUse(
            self.live_tensors - other.live_tensors,
            self.python_bytes - other.python_bytes,
            self.native_bytes - other.native_bytes,
        )


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


try:  # glibc >= 2.33
    _MALLINFO2 = ctypes.CDLL(None).mallinfo2
    _MALLINFO2.restype = _MallInfo2
except (AttributeError, OSError, TypeError):
    _MALLINFO2 = None


def _native_heap_bytes() -> int:
    """Bytes allocated on the C heap: glibc's mallinfo2 over all arenas plus
    mmapped blocks; the resident set size where mallinfo2 is missing."""
    if _MALLINFO2 is None:
        return psutil.Process().memory_info().rss
    info = _MALLINFO2()
    return info.uordblks + info.hblkhd


def _live_tensor_count() -> int:
    return sum(1 for obj in gc.get_objects() if issubclass(type(obj), Tensor))


def _memory_use() -> MemoryUse:
    gc.collect()
    return MemoryUse(
        _live_tensor_count(),
        tracemalloc.get_traced_memory()[0],
        _native_heap_bytes(),
    )


LEAK_CALLS = 100
LEAK_WARM_UP = 16
LEAK_SIZE = 16
LEAK_STEPS = 4
# One leaked float32 activation tensor of the path points every second call
# would be 2 examples x 4 steps x 4 channels x 16 x 16 x 4 bytes = 32 KiB,
# i.e. 1.6 MiB over LEAK_CALLS calls. Observed over the second half without
# a leak: 12 to 13 KiB of C heap and 5 to 7 KiB of Python heap (caches still
# filling, at a falling rate).
NATIVE_HEAP_GROWTH_LIMIT = 256 * 2**10
PYTHON_HEAP_GROWTH_LIMIT = 32 * 2**10


def memory_growth(run: Callable[[int], None]) -> tuple[MemoryUse, MemoryUse]:
    """Growth over each half of ``2 * LEAK_CALLS`` calls, after a warm-up."""
    run(LEAK_WARM_UP)
    tracing = tracemalloc.is_tracing()
    if not tracing:
        tracemalloc.start()
    try:
        start = _memory_use()
        run(LEAK_CALLS)
        middle = _memory_use()
        run(LEAK_CALLS)
        end = _memory_use()
    finally:
        if not tracing:
            tracemalloc.stop()
    return middle - start, end - middle


def repeated_calls() -> Callable[[int], None]:
    """Plain, chunked, whole-graph (layer called twice) and failing calls."""
    model = ProbeNet().eval()
    twice = ProbeNet(share_relu=True).eval()
    inputs = torch.randn(N_EXAMPLES, 3, LEAK_SIZE, LEAK_SIZE)
    variants: list[tuple[ProbeNet, nn.Module, dict[str, Any]]] = [
        (model, model.conv2, {"target": [1, 2]}),
        (model, model.conv2, {"internal_batch_size": 3, "attr_dim_summation": False}),
        (twice, twice.relu1, {"target": 3}),
        (model, model.conv2, {"target": [0, CLASSES + 4]}),
    ]

    def run(n_calls: int) -> None:
        for index in range(n_calls):
            net, layer, kwargs = variants[index % len(variants)]
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    IntegratedLayerGradCam(net, layer).attribute(
                        inputs, **{"target": 0, "n_steps": LEAK_STEPS, **kwargs}
                    )
            except ValueError:
                pass
            net.batch_sizes.clear()  # the probe's own record must not grow

    return run


def assert_no_growth(first_half: MemoryUse, second_half: MemoryUse) -> None:
    assert first_half.live_tensors <= 0, first_half
    assert second_half.live_tensors <= 0, second_half
    assert second_half.python_bytes < PYTHON_HEAP_GROWTH_LIMIT, second_half
    assert second_half.native_bytes < NATIVE_HEAP_GROWTH_LIMIT, second_half


def test_memory_growth_measure_notices_a_leak():
    """Every second call keeps one activation of the path points and 1 KiB."""
    model, leak = ProbeNet().eval(), []
    inputs = torch.randn(N_EXAMPLES * LEAK_STEPS, 3, LEAK_SIZE, LEAK_SIZE)

    def leaking_calls(n_calls: int) -> None:
        for index in range(n_calls):
            with torch.no_grad():
                activation = model.conv2(model.relu1(model.conv1(inputs)))
            if index % 2:
                leak.append((activation, bytes(1024)))

    first_half, second_half = memory_growth(leaking_calls)
    assert second_half.live_tensors >= LEAK_CALLS // 2
    assert second_half.python_bytes >= PYTHON_HEAP_GROWTH_LIMIT
    assert second_half.native_bytes >= NATIVE_HEAP_GROWTH_LIMIT
    with pytest.raises(AssertionError):
        assert_no_growth(first_half, second_half)


def test_repeated_calls_do_not_leak_tensors_or_memory():
    assert_no_growth(*memory_growth(repeated_calls()))


# --------------------------------------------------------------------------
# 4. What real users pass (issue 12): numpy targets, grad_kwargs, inference
# mode, wrapped models, layers called with keywords, concurrent calls.

PER_EXAMPLE = [3, 1]
EQUIVALENT_TARGETS = [
    ("numpy int64", np.int64(3), 3),
    ("numpy uint8", np.uint8(3), 3),
    ("0-d numpy array", np.array(3, dtype=np.int32), 3),
    ("tuple of a numpy int", (np.int16(3),), 3),
    *[
        (f"0-d {dtype} tensor", torch.tensor(3, dtype=dtype), 3)
        for dtype in (torch.uint8, torch.int8, torch.int16, torch.int32)
    ],
    ("list of numpy ints", [np.int64(3), np.int64(1)], PER_EXAMPLE),
    ("list of 0-d arrays", [np.array(3), np.array(1)], PER_EXAMPLE),
    ("list of 0-d tensors", list(torch.tensor(PER_EXAMPLE)), PER_EXAMPLE),
    ("list of numpy int tuples", [(np.int64(3),), (np.uint16(1),)], PER_EXAMPLE),
    ("numpy int array", np.array(PER_EXAMPLE), PER_EXAMPLE),
    ("numpy uint16 array", np.array(PER_EXAMPLE, dtype=np.uint16), PER_EXAMPLE),
    *[
        (f"{dtype} tensor", torch.tensor(PER_EXAMPLE, dtype=dtype), PER_EXAMPLE)
        for dtype in (torch.uint8, torch.int8, torch.int16, torch.int32)
    ],
]


@pytest.mark.parametrize(
    ("target", "as_int"),
    [(target, as_int) for _, target, as_int in EQUIVALENT_TARGETS],
    ids=[name for name, _, _ in EQUIVALENT_TARGETS],
)
def test_integer_targets_of_every_kind_give_the_int_target_map(target, as_int):
    model, inputs = make_model(), make_inputs()
    igcam = IntegratedLayerGradCam(model, model.conv2)
    expected = igcam.attribute(inputs, target=as_int, n_steps=3)
    assert torch.equal(igcam.attribute(inputs, target=target, n_steps=3), expected)


def test_targets_from_numpy_argmax_give_the_int_target_map():
    model, inputs = make_model(), make_inputs()
    scores = model(inputs).detach().numpy()
    targets = list(np.argmax(scores, 1))
    assert all(type(item) is np.int64 for item in targets)
    igcam = IntegratedLayerGradCam(model, model.conv2)
    expected = igcam.attribute(inputs, target=[int(t) for t in targets], n_steps=3)
    assert torch.equal(igcam.attribute(inputs, target=targets, n_steps=3), expected)


def test_create_graph_still_returns_a_detached_map():
    model, inputs = make_model(), make_inputs()
    igcam = IntegratedLayerGradCam(model, model.conv2)
    expected = igcam.attribute(inputs, target=[1, 2], n_steps=3)
    for grad_kwargs in ({"create_graph": True}, {"retain_graph": True}):
        result = igcam.attribute(
            inputs,
            target=[1, 2],
            n_steps=3,
            internal_batch_size=3,
            grad_kwargs=grad_kwargs,
        )
        assert not result.requires_grad and result.grad_fn is None
        assert_close_to(result, expected)


class ScaledNet(ProbeNet):
    """ProbeNet whose scores are multiplied by an extra per-example input."""

    def forward(self, x: Tensor, scale: Tensor) -> Tensor:
        return super().forward(x) * scale


@pytest.mark.parametrize(
    "explainer_class", [IntegratedLayerGradCam, LayerSpaceIntegratedGradCam]
)
@pytest.mark.parametrize("inference_mode", [True, False])
def test_inference_tensors_and_inference_mode_give_the_normal_map(
    inference_mode: bool, explainer_class: type
):
    """Inputs, target, extra arguments and baselines made in inference mode."""
    input_space = explainer_class is IntegratedLayerGradCam
    model_class = ScaledNet if input_space else ProbeNet
    model, inputs = make_model(model_class), make_inputs()
    target = torch.tensor([1, 3])
    baselines = torch.rand(1, 3, 8, 8, dtype=torch.float64)
    scale = torch.rand(N_EXAMPLES, 1, dtype=torch.float64) + 0.5
    extra = (scale,) if input_space else None
    explainer = explainer_class(model, model.conv2)
    expected = explainer.attribute(
        inputs,
        target=target,
        additional_forward_args=extra,
        baselines=baselines,
        n_steps=3,
    )
    with torch.inference_mode():
        frozen = [t.clone() for t in (inputs, target, scale, baselines)]
    assert all(t.is_inference() for t in frozen)
    frozen_inputs, frozen_target, frozen_scale, frozen_baselines = frozen
    frozen_extra = (frozen_scale,) if input_space else None
    with torch.inference_mode(inference_mode):
        before = model_state(model, (frozen_inputs,))
        result = explainer.attribute(
            frozen_inputs,
            target=frozen_target,
            additional_forward_args=frozen_extra,
            baselines=frozen_baselines,
            n_steps=3,
        )
        after = model_state(model, (frozen_inputs,))
    assert_same_state(before, after)
    assert torch.equal(result, expected)


def test_model_created_in_inference_mode_is_refused_naming_inference_mode():
    with torch.inference_mode():
        model = make_model()
    with pytest.raises(
        ValueError,
        match="^forward_func: expected a model whose parameters and buffers can be "
        "used by autograd, but 'conv1.weight' is an inference tensor .*"
        r"torch.inference_mode\(\)",
    ):
        IntegratedLayerGradCam(model, model.conv2).attribute(
            make_inputs(), target=1, n_steps=3
        )
    assert model.batch_sizes == []


class ModuleWrapper(nn.Module):
    """A DistributedDataParallel-like wrapper: the model as ``.module``."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, *args: Any) -> Any:
        return self.module(*args)


def _assert_wrapped_eval_model_is_explained_without_warning(
    model: ProbeNet, wrapped: nn.Module
) -> None:
    assert wrapped.training and not model.training
    inputs = make_inputs()
    expected = IntegratedLayerGradCam(model, model.conv2).attribute(
        inputs, target=[1, 4], n_steps=3
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = IntegratedLayerGradCam(wrapped, model.conv2).attribute(
            inputs, target=[1, 4], n_steps=3
        )
    assert torch.equal(result, expected)


@pytest.mark.parametrize("wrapper", [nn.DataParallel, ModuleWrapper])
def test_wrapped_eval_model_does_not_warn(wrapper: type[nn.Module]):
    model = make_model()
    _assert_wrapped_eval_model_is_explained_without_warning(model, wrapper(model))


@pytest.mark.skipif(not dist.is_gloo_available(), reason="needs the gloo backend")
def test_distributed_data_parallel_eval_model_does_not_warn(tmp_path):
    dist.init_process_group(
        "gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1
    )
    try:
        model = make_model()
        wrapped = nn.parallel.DistributedDataParallel(model)
        _assert_wrapped_eval_model_is_explained_without_warning(model, wrapped)
    finally:
        dist.destroy_process_group()


def test_wrapped_training_model_still_warns_at_the_caller():
    model = make_model().train()
    wrapped = nn.DataParallel(model.eval()).train()
    wrapped.module.relu2.train()
    with pytest.warns(UserWarning, match="^forward_func: the model is in training"):
        IntegratedLayerGradCam(wrapped, model.conv2).attribute(
            make_inputs(), target=0, n_steps=2
        )


class KeywordLayerNet(ProbeNet):
    """ProbeNet that passes conv2 its input by keyword."""

    def forward(self, x: Tensor) -> Tensor:
        hidden = self.conv2(input=self.relu1(self.conv1(x)))
        return self.fc(self.pool(self.relu2(hidden)).flatten(1))


def test_layer_input_given_by_keyword_is_refused_naming_the_parameter():
    model, inputs = make_model(KeywordLayerNet), make_inputs()
    igcam = IntegratedLayerGradCam(model, model.conv2)
    before = model_state(model, (inputs,))
    with pytest.raises(
        ValueError,
        match="^attribute_to_layer_input: expected the explained layer to receive "
        "its input as positional arguments",
    ):
        igcam.attribute(inputs, target=1, n_steps=3, attribute_to_layer_input=True)
    assert_same_state(before, model_state(model, (inputs,)))
    # The layer's output, and the input of a layer called positionally, work.
    plain = make_model()
    plain.load_state_dict(model.state_dict())
    for to_input, layer in ((False, "conv2"), (True, "fc")):
        expected = IntegratedLayerGradCam(plain, plain.get_submodule(layer)).attribute(
            inputs, target=1, n_steps=3, attribute_to_layer_input=to_input
        )
        result = IntegratedLayerGradCam(model, model.get_submodule(layer)).attribute(
            inputs, target=1, n_steps=3, attribute_to_layer_input=to_input
        )
        assert torch.equal(result, expected)


THREAD_ROUNDS = 6


def test_concurrent_calls_on_one_model_give_the_single_thread_maps():
    """Two threads, each cycling through calls that share the model's modules.

    The calls explain the same layer, another layer, and the same layer
    through a plain function that hides the model.
    """
    model = TinyCNN().double().eval()
    calls = [
        (IntegratedLayerGradCam(model, model.conv2), [1, 3]),
        (IntegratedLayerGradCam(model, model.conv1), 4),
        (IntegratedLayerGradCam(lambda x: model(x), model.conv2), [0, 2]),
    ]
    inputs = [make_inputs() for _ in calls]
    expected = [
        igcam.attribute(x, target=target, n_steps=4)
        for (igcam, target), x in zip(calls, inputs)
    ]
    results: list[list[tuple[int, Tensor]]] = [[], []]
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def work(thread: int) -> None:
        start.wait()
        try:
            for round_ in range(THREAD_ROUNDS):
                index = (round_ + thread) % len(calls)
                igcam, target = calls[index]
                result = igcam.attribute(inputs[index], target=target, n_steps=4)
                results[thread].append((index, result))
        except BaseException as error:  # reported by the main thread
            errors.append(error)

    switch_interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # interleave the threads as much as possible
    try:
        threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(switch_interval)
    assert errors == []
    for per_thread in results:
        assert len(per_thread) == THREAD_ROUNDS
        for index, result in per_thread:
            assert torch.equal(result, expected[index])
