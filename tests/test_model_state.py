"""The user's model and grad mode are left exactly as they were, whatever
happens inside a call (failures injected half way included).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import torch
from helpers import (
    CLASSES,
    N_EXAMPLES,
    N_STEPS,
    InjectedFailure,
    ProbeNet,
    assert_same_state,
    make_inputs,
    make_model,
    model_state,
    nth_pass_with_batch,
)
from torch import Tensor, nn

from captum_igcam import IntegratedLayerGradCam


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
# The model is left exactly as it was, whatever happens inside a call.

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
