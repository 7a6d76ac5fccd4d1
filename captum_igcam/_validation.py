"""Argument checks for :class:`IntegratedLayerGradCam`.

Every check raises early, before any forward pass, with a message that names
the parameter and says what was expected; the target is checked against the
model's output as soon as the first forward pass has produced one.
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch.nn import Module

from captum_igcam._captum_compat import SUPPORTED_METHODS, _format_input_baseline

RIEMANN_METHODS = tuple(
    name for name in SUPPORTED_METHODS if name.startswith("riemann")
)


def check_n_steps(n_steps: Any, method: str) -> None:
    if isinstance(n_steps, bool) or not isinstance(n_steps, numbers.Integral):
        raise TypeError(
            f"n_steps: expected a positive integer, got {type(n_steps).__name__} "
            f"{n_steps!r}"
        )
    minimum = 2 if method in RIEMANN_METHODS else 1
    if n_steps < minimum:
        raise ValueError(
            f"n_steps: expected an integer >= {minimum} for method={method!r}, "
            f"got {n_steps}"
        )


def check_method(method: Any) -> None:
    if method not in SUPPORTED_METHODS:
        raise ValueError(
            f"method: expected one of {list(SUPPORTED_METHODS)}, got {method!r}"
        )


def check_grad_kwargs(grad_kwargs: Any) -> None:
    if grad_kwargs is not None and not isinstance(grad_kwargs, dict):
        raise TypeError(
            "grad_kwargs: expected None or a dict of keyword arguments for "
            f"torch.autograd.grad, got {type(grad_kwargs).__name__}"
        )


def check_internal_batch_size(internal_batch_size: Any) -> None:
    if internal_batch_size is None:
        return
    if isinstance(internal_batch_size, bool) or not isinstance(
        internal_batch_size, numbers.Integral
    ):
        raise TypeError(
            "internal_batch_size: expected None or a positive integer, got "
            f"{type(internal_batch_size).__name__} {internal_batch_size!r}"
        )
    if internal_batch_size < 1:
        raise ValueError(
            "internal_batch_size: expected None or an integer >= 1, got "
            f"{internal_batch_size}"
        )


def check_inputs(inputs: tuple[Tensor, ...]) -> int:
    """Checks the formatted inputs and returns the number of examples."""
    if len(inputs) == 0:
        raise ValueError("inputs: expected at least one Tensor, got an empty tuple")
    for index, inp in enumerate(inputs):
        name = f"inputs[{index}]" if len(inputs) > 1 else "inputs"
        if not isinstance(inp, Tensor):
            raise TypeError(f"{name}: expected a Tensor, got {type(inp).__name__}")
        if not inp.is_floating_point():
            raise TypeError(
                f"{name}: expected a floating-point Tensor (a path from the "
                f"baseline needs fractional inputs), got dtype {inp.dtype}"
            )
        if inp.is_meta:
            raise ValueError(
                f"{name}: expected a Tensor holding values, got one on the meta device"
            )
        if inp.dim() == 0 or inp.shape[0] == 0:
            raise ValueError(
                f"{name}: expected a batch of at least one example along "
                f"dimension 0, got shape {tuple(inp.shape)}"
            )
        if not torch.isfinite(inp).all():
            raise ValueError(f"{name}: expected finite values, found NaN or Inf")
    num_examples = inputs[0].shape[0]
    for index, inp in enumerate(inputs[1:], start=1):
        if inp.shape[0] != num_examples:
            raise ValueError(
                f"inputs[{index}]: expected {num_examples} examples like "
                f"inputs[0], got {inp.shape[0]}"
            )
    return num_examples


def format_inputs_and_baselines(
    inputs: Any, baselines: Any
) -> tuple[tuple[Tensor, ...], tuple[Tensor, ...], int]:
    """Checks ``inputs`` and ``baselines`` and puts them in Captum's tuple form.

    Wrong types raise a TypeError naming the parameter before Captum's
    ``_format_input_baseline`` (which asserts, and ``python -O`` skips
    asserts) formats them.

    Returns:
        The inputs as a tuple, the baselines broadcast to the inputs' shapes,
        and the number of examples.
    """
    if not isinstance(inputs, (Tensor, tuple)):
        raise TypeError(
            "inputs: expected a Tensor or a tuple of Tensors, got "
            f"{type(inputs).__name__}"
        )
    num_examples = check_inputs(inputs if isinstance(inputs, tuple) else (inputs,))
    if baselines is not None and not isinstance(baselines, (Tensor, tuple)):
        _check_baseline_type(baselines, "baselines")
    formatted_inputs, formatted_baselines = _format_input_baseline(inputs, baselines)
    return (
        formatted_inputs,
        check_baselines(formatted_inputs, formatted_baselines),
        num_examples,
    )


def _check_baseline_type(baseline: Any, name: str) -> None:
    if isinstance(baseline, bool) or not isinstance(baseline, (numbers.Real, Tensor)):
        raise TypeError(
            f"{name}: expected a number or a Tensor, got {type(baseline).__name__}"
        )


def check_baselines(
    inputs: tuple[Tensor, ...], baselines: tuple[Tensor | int | float, ...]
) -> tuple[Tensor, ...]:
    """Checks the formatted baselines and broadcasts them to the inputs' shapes."""
    if len(baselines) != len(inputs):
        raise ValueError(
            f"baselines: expected {len(inputs)} baseline(s), one per input "
            f"tensor, got {len(baselines)}"
        )
    expanded = []
    for index, (inp, baseline) in enumerate(zip(inputs, baselines)):
        name = f"baselines[{index}]" if len(inputs) > 1 else "baselines"
        _check_baseline_type(baseline, name)
        if not isinstance(baseline, Tensor):
            if not torch.isfinite(torch.tensor(float(baseline))):
                raise ValueError(f"{name}: expected a finite number, got {baseline}")
            expanded.append(torch.full_like(inp, float(baseline)))
            continue
        if baseline.dtype != inp.dtype:
            raise TypeError(
                f"{name}: expected dtype {inp.dtype} like the inputs, got "
                f"{baseline.dtype}"
            )
        if baseline.device != inp.device:
            raise ValueError(
                f"{name}: expected a Tensor on {inp.device} like the inputs, got "
                f"one on {baseline.device}"
            )
        if not _broadcasts_to_inputs(baseline.shape, inp.shape):
            per_example = tuple(inp.shape[1:])
            raise ValueError(
                f"{name}: expected a shape that broadcasts to the inputs' "
                f"{tuple(inp.shape)} with {inp.dim()} dims (batch size "
                f"{inp.shape[0]} or 1) or to one example's {per_example} with "
                f"{len(per_example)} dims, each size equal or 1, got "
                f"{tuple(baseline.shape)}"
            )
        if not torch.isfinite(baseline).all():
            raise ValueError(f"{name}: expected finite values, found NaN or Inf")
        expanded.append(baseline.expand_as(inp))
    return tuple(expanded)


def _broadcasts_to_inputs(baseline_shape: torch.Size, input_shape: torch.Size) -> bool:
    """Whether a baseline of this shape broadcasts to the inputs unambiguously.

    Accepted: the inputs' number of dims, or one example's (one fewer), with
    every size equal to the inputs' or 1. Captum's ``IntegratedGradients``
    accepts the same full-rank shapes; the one-example form is broadcast over
    the batch.
    """
    if len(baseline_shape) not in (len(input_shape), len(input_shape) - 1):
        return False
    aligned = input_shape[len(input_shape) - len(baseline_shape) :]
    return all(size in (1, full) for size, full in zip(baseline_shape, aligned))


def _check_index(value: Any, size: int, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected an integer index, got {value!r}")
    if not 0 <= value < size:
        raise ValueError(
            f"{name}: expected an index in [0, {size - 1}] for a model output "
            f"of size {size} along that dimension, got {value}"
        )


def check_target(target: Any, output: Tensor, num_examples: int) -> None:
    """Checks ``target`` against one forward pass's output.

    Args:
        target: The user's (unexpanded) target.
        output: The model's output for a batch that holds a whole number of
                copies of the ``num_examples`` examples.
        num_examples: Number of examples in the user's inputs.
    """
    per_example = tuple(output.shape[1:])
    if target is None:
        if any(size != 1 for size in per_example):
            raise ValueError(
                "target: expected a class index (or one per example) because the "
                f"model's output has shape {(num_examples, *per_example)}, not "
                "one scalar per example"
            )
        return
    if isinstance(target, Tensor):
        if target.is_floating_point() or target.is_complex():
            raise TypeError(f"target: expected an integer Tensor, got {target.dtype}")
        if target.numel() == 1:
            target = int(target.item())
        elif target.dim() == 1:
            target = target.tolist()
        else:
            raise ValueError(
                "target: expected a scalar or a 1-D Tensor of length "
                f"{num_examples}, got shape {tuple(target.shape)}"
            )
    if not per_example:
        raise ValueError(
            "target: expected None because the model's output has shape "
            f"{(num_examples,)}, one scalar per example; got {target!r}"
        )
    targets = target if isinstance(target, list) else [target] * num_examples
    if len(targets) != num_examples:
        raise ValueError(
            f"target: expected one target per example ({num_examples}), got a "
            f"list of {len(targets)}"
        )
    for position, item in enumerate(targets):
        index = item if isinstance(item, tuple) else (item,)
        if len(index) != len(per_example):
            raise ValueError(
                f"target: expected {len(per_example)} index(es) per example for a "
                f"model output of shape {(num_examples, *per_example)}, got "
                f"{item!r}"
            )
        for value, size in zip(index, per_example):
            _check_index(
                value,
                size,
                f"target[{position}]" if isinstance(target, list) else "target",
            )


def owning_model(forward_func: Callable[..., Any]) -> Module | None:
    """The ``nn.Module`` behind ``forward_func`` (itself or a bound method's owner)."""
    if isinstance(forward_func, Module):
        return forward_func
    owner = getattr(forward_func, "__self__", None)
    return owner if isinstance(owner, Module) else None


def check_layer(layer: Any, model: Module | None) -> None:
    if not isinstance(layer, Module):
        raise TypeError(
            f"layer: expected a torch.nn.Module, got {type(layer).__name__}"
        )
    if model is not None and not any(module is layer for module in model.modules()):
        raise ValueError(
            f"layer: expected a submodule of the model, got a {type(layer).__name__} "
            "that is not among model.modules()"
        )


def warn_if_training(model: Module | None) -> None:
    if model is not None and any(module.training for module in model.modules()):
        warnings.warn(
            "forward_func: the model is in training mode, so dropout and batch "
            "norm make the map random; call model.eval() first",
            stacklevel=4,
        )
