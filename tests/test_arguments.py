"""Bad input: the exception type, and a message naming the parameter and
what was expected, before any forward pass where the model is not needed.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
import torch
from captum.attr import LayerGradCam
from helpers import (
    CLASSES,
    ProbeNet,
    ScoreNet,
    SumOfInputsNet,
    UnusedLayerNet,
    assert_same_state,
    make_inputs,
    make_model,
    model_state,
)
from reference import naive_integrated_grad_cam, quadrature
from tolerances import assert_close_to
from torch import Tensor, nn

from captum_igcam import IntegratedLayerGradCam, LayerSpaceIntegratedGradCam

# --------------------------------------------------------------------------
# Bad input: exception type, and a message naming parameter and expectation.


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
    #: torch's own message, for what the plugin leaves to torch to refuse.
    upstream: str = ""


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
        for method in (
            "riemann_right",
            "riemann_left",
            "riemann_middle",
            "riemann_trapezoid",
        )
    ],
    BadCall(
        "n_steps above the Gauss-Legendre limit",
        ValueError,
        "n_steps",
        "at most 1000 for method='gausslegendre'",
        {"n_steps": 1001},
    ),
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
        "baselines on the meta device",
        NotImplementedError,
        "baselines",
        "",
        {"baselines": torch.zeros(2, 3, 8, 8, device="meta", **F64)},
        upstream="Cannot copy out of meta tensor",
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
        "finite values",
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
        "finite values, got NaN or Inf",
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
        "",
        {"grad_kwargs": {"no_such_option": True}},
        before_forward=False,
        upstream="unexpected keyword argument 'no_such_option'",
    ),
    BadCall(
        "grad_kwargs sets the differentiated tensors",
        TypeError,
        "grad_kwargs",
        "",
        {"grad_kwargs": {"inputs": ()}},
        before_forward=False,
        upstream="multiple values for argument 'inputs'",
    ),
    BadCall(
        "grad_kwargs not a dict",
        TypeError,
        "grad_kwargs",
        "",
        {"grad_kwargs": [("create_graph", True)]},
        before_forward=False,
        upstream="must be a mapping, not list",
    ),
    BadCall(
        "inputs on the meta device",
        RuntimeError,
        "inputs",
        "",
        inputs=lambda x: x.to("meta"),
        upstream="cannot be called on meta tensors",
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
                "an integer index, got 1.0",
            ),
            ("bool", True, TypeError, "target", "an integer index, got True"),
            ("numpy bool", np.bool_(True), TypeError, "target", "an integer index"),
            (
                "bool tensor",
                torch.tensor([True, False]),
                TypeError,
                "target[0]",
                "an integer index, got True",
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
                "target[0]",
                "an integer index, got 1.0",
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
    with pytest.raises(bad.error, match=bad.upstream or pattern):
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
        (
            (torch.zeros(1, 3), "x"),
            None,
            "inputs[1]",
            "a floating-point Tensor, got str",
        ),
        (torch.zeros(1, 3), "zero", "baselines", "a number or a Tensor, got str"),
        (torch.zeros(1, 3), [0.0], "baselines", "a number or a Tensor, got list"),
        (torch.zeros(1, 3), True, "baselines", "a number or a Tensor, got bool"),
    ],
)
@pytest.mark.parametrize(
    "explainer_class", [IntegratedLayerGradCam, LayerSpaceIntegratedGradCam]
)
def test_wrong_input_and_baseline_types_raise_type_errors(
    inputs, baselines, parameter, expected, explainer_class
):
    """Captum's own formatting asserts on these; the classes raise TypeError."""
    model = make_model()
    explainer = explainer_class(model, model.conv2)
    pattern = f"^{re.escape(parameter)}: expected .*{re.escape(expected)}"
    with pytest.raises(TypeError, match=pattern):
        explainer.attribute(inputs, target=0, baselines=baselines)
    assert model.batch_sizes == []


def test_broadcast_and_number_baselines_equal_the_full_tensors():
    model = make_model(SumOfInputsNet)
    image, other = make_inputs(), make_inputs()
    explainer = IntegratedLayerGradCam(model, model.conv2)
    short = explainer.attribute(
        (image, other),
        target=1,
        n_steps=3,
        baselines=(torch.ones(3, 1, 1, dtype=torch.float64), 0.5),
    )
    full = explainer.attribute(
        (image, other),
        target=1,
        n_steps=3,
        baselines=(torch.ones_like(image), torch.full_like(other, 0.5)),
    )
    assert torch.equal(short, full)


def test_layer_outside_the_model_is_rejected_at_the_first_pass():
    """Construction takes any layer, as LayerGradCam does; the first forward
    pass finds that it is not called (a string has no hooks: Python says so)."""
    model = make_model()
    explainer = IntegratedLayerGradCam(model, nn.Conv2d(4, 4, 3))
    with pytest.raises(
        ValueError, match="^layer: expected a submodule that forward_func calls"
    ):
        explainer.attribute(make_inputs(), target=0, n_steps=2)
    assert len(model.batch_sizes) == 1
    with pytest.raises(AttributeError, match="'str' object has no attribute"):
        IntegratedLayerGradCam(model, "conv2").attribute(make_inputs(), target=0)


def test_baselines_of_another_dtype_are_converted_to_the_inputs():
    model, inputs = make_model(), make_inputs()
    explainer = IntegratedLayerGradCam(model, model.conv2)
    ones = torch.ones_like(inputs)
    expected = explainer.attribute(inputs, target=1, n_steps=3, baselines=ones)
    for baselines in (ones.float(), ones.to(torch.int64)):
        result = explainer.attribute(inputs, target=1, n_steps=3, baselines=baselines)
        assert torch.equal(result, expected)


@pytest.mark.parametrize("wrap_in_function", [False, True])
def test_layer_never_called_is_rejected_after_the_first_pass(wrap_in_function):
    """A plain function hides the model, so a foreign layer is found only here."""
    model, inputs = make_model(UnusedLayerNet), make_inputs()
    forward = (lambda x: model(x)) if wrap_in_function else model
    layer = nn.Conv2d(4, 4, 1) if wrap_in_function else model.unused
    before = model_state(model, (inputs,))
    with pytest.raises(
        ValueError,
        match="^layer: expected a submodule that forward_func calls, got one the "
        "forward pass never called",
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


def test_gauss_legendre_limit_is_inclusive_and_riemann_rules_have_none():
    model, inputs = make_model(), make_inputs()[:1]
    explainer = IntegratedLayerGradCam(model, model.conv2)
    for n_steps, method in ((1000, "gausslegendre"), (1001, "riemann_right")):
        maps = explainer.attribute(
            inputs, target=1, n_steps=n_steps, method=method, internal_batch_size=500
        )
        assert maps.shape == (1, 1, 8, 8) and torch.isfinite(maps).all()


def test_every_plugin_error_is_built_in_the_one_message_form():
    """Every exception the plugin raises is made by ``bad_type`` or
    ``bad_value`` ("<parameter>: expected ..., got ..."), so the form of the
    messages holds by construction."""
    import ast
    from pathlib import Path

    import captum_igcam
    from captum_igcam import _checks

    builders = {"bad_type", "bad_value"}
    others = []
    for path in Path(captum_igcam.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Raise) or node.exc is None:
                continue
            called = node.exc.func if isinstance(node.exc, ast.Call) else None
            name = getattr(called, "id", getattr(called, "attr", None))
            if name not in builders:
                others.append(f"{path.name}:{node.lineno}")
    assert others == ["__init__.py:47"]  # module __getattr__'s AttributeError
    assert str(_checks.bad_value("x", "1", 2, "do 3")) == "x: expected 1, got 2; do 3"
    assert (
        str(_checks.bad_type("x", "an int", 2.5)) == "x: expected an int, got float 2.5"
    )
    assert str(_checks.bad_type("x", "an int", [])) == "x: expected an int, got list"


class EmbeddingNet(nn.Module):
    """Token ids (as floats) through an embedding: its input is integer."""

    def __init__(self) -> None:
        super().__init__()
        self.embedding = nn.Embedding(10, 4)
        self.fc = nn.Linear(4, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.embedding(x.long()).mean(dim=1))


@pytest.mark.parametrize(
    "explainer_class", [IntegratedLayerGradCam, LayerSpaceIntegratedGradCam]
)
def test_integer_tensor_at_the_layer_input_is_refused_naming_the_layer(
    explainer_class,
):
    model = EmbeddingNet().eval()
    ids = torch.tensor([[1.0, 4.0, 2.0], [7.0, 0.0, 3.0]])
    with pytest.raises(
        TypeError,
        match=r"^layer: expected floating-point Tensors at the layer's input .*"
        r"got \[torch.int64\]",
    ):
        explainer_class(model, model.embedding).attribute(
            ids, target=0, attribute_to_layer_input=True, n_steps=2
        )
