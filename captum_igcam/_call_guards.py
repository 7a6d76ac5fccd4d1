"""Conditions that an ``attribute`` call sets up around its forward passes.

Integrated Grad-CAM hooks the explained layer and runs autograd through the
part of the model after it, so a call needs two things that the caller's
context can take away:

- **Autograd.** Under the caller's ``torch.inference_mode()`` nothing is
  recorded, and tensors created in inference mode ("inference tensors") can
  never enter a recorded computation. The call therefore runs with inference
  mode switched off and works on normal copies of the inference tensors
  among its arguments. A model whose own parameters or buffers are inference
  tensors cannot be differentiated at all: that is refused with a message
  naming inference mode.
- **The model's hooks to itself.** Hooks are state of the module, seen by
  every thread that runs it: two threads explaining the same model at once
  would each capture (and replace) the other's activations. Calls are
  therefore serialised by one lock per process; they run one after the other
  and give the same maps as when run alone. A lock per model would not do:
  a ``forward_func`` that is a plain function hides its model, and models
  may share submodules.
"""

from __future__ import annotations

import functools
import inspect
import threading
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any, TypeVar

import torch
from torch import Tensor
from torch.nn import Module

from captum_igcam import _validation

# The arguments of ``attribute`` that may hold the caller's tensors.
TENSOR_ARGUMENTS = ("inputs", "target", "additional_forward_args", "baselines")

# Held by every attribute call around its hooked forward and backward passes;
# re-entrant, so that a call nested in the same thread cannot deadlock.
_HOOKED_PASSES = threading.RLock()

Attribute = TypeVar("Attribute", bound=Callable[..., Any])


def _normal_tensors(value: Any) -> Any:
    """``value`` with every inference tensor replaced by a normal copy.

    Looks into tuples, lists and dicts (the containers Captum passes on);
    must run with inference mode off, where a clone is a normal tensor.
    """
    if isinstance(value, Tensor):
        return value.clone() if value.is_inference() else value
    if isinstance(value, (tuple, list)):
        return type(value)(_normal_tensors(item) for item in value)
    if isinstance(value, dict):
        return {key: _normal_tensors(item) for key, item in value.items()}
    return value


def check_no_inference_tensors(model: Module | None) -> None:
    """Refuses a model whose parameters or buffers autograd cannot use."""
    if model is None:
        return
    tensors = [*model.named_parameters(), *model.named_buffers()]
    for name, tensor in tensors:
        if tensor.is_inference():
            raise ValueError(
                "forward_func: expected a model whose parameters and buffers can "
                f"be used by autograd, but {name!r} is an inference tensor (the "
                "model was created or loaded under torch.inference_mode()); "
                "create or load it outside inference mode (torch.no_grad() is "
                "fine)"
            )


def guarded_attribute(attribute: Attribute) -> Attribute:
    """Wraps ``IntegratedLayerGradCam.attribute`` in the conditions above.

    The wrapped method's own checks and computation are unchanged; it runs
    with inference mode off, on normal copies of inference tensors among
    ``inputs``, ``target``, ``additional_forward_args`` and ``baselines``,
    and while holding the process-wide lock of the hooked passes.
    """
    signature = inspect.signature(attribute)

    @functools.wraps(attribute)
    def guarded(self: Any, *args: Any, **kwargs: Any) -> Any:
        model = _validation.owning_model(self.forward_func)
        check_no_inference_tensors(model)
        with ExitStack() as stack:
            if torch.is_inference_mode_enabled():
                stack.enter_context(torch.inference_mode(False))
            stack.enter_context(_HOOKED_PASSES)
            bound = signature.bind(self, *args, **kwargs)
            for name in TENSOR_ARGUMENTS:
                if name in bound.arguments:
                    bound.arguments[name] = _normal_tensors(bound.arguments[name])
            return attribute(*bound.args, **bound.kwargs)

    return guarded  # type: ignore[return-value]
