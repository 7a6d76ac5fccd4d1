"""Argument checks of the Integrated Grad-CAM classes.

Captum's own formatting asserts (and ``python -O`` skips asserts), so every
check here raises a ``TypeError`` or ``ValueError`` whose message starts with
the parameter's name and says what was expected. All of them run before any
forward pass, except :func:`check_target`, which needs the model's output.
"""

from __future__ import annotations

import inspect
import numbers
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.nn import Module

from captum_igcam._captum_compat import SUPPORTED_METHODS

#: The most path points for ``gausslegendre``: Captum builds its nodes by an
#: eigenproblem of size ``n_steps`` (cubic time, twice per call);
#: ``benchmarks/gauss_legendre_nodes.py`` prints the cost around the limit.
MAX_GAUSS_LEGENDRE_STEPS = 1000


def _name(parameter: str, index: int, count: int) -> str:
    return f"{parameter}[{index}]" if count > 1 else parameter


def _check_count(name: str, value: Any, low: int, method: str | None = None) -> None:
    optional = "" if method else "None or "
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(
            f"{name}: expected {optional}a positive integer, got "
            f"{type(value).__name__} {value!r}"
        )
    if value < low:
        rule = f" for method={method!r}" if method else ""
        raise ValueError(
            f"{name}: expected {optional}an integer >= {low}{rule}, got {value}"
        )


def _check_finite(tensor: Tensor, name: str) -> Tensor:
    if not torch.isfinite(tensor).all():
        raise ValueError(f"{name}: expected finite values, found NaN or Inf")
    return tensor


def check_options(
    n_steps: Any, method: Any, internal_batch_size: Any, grad_kwargs: Any
) -> None:
    """Checks the path's options and ``grad_kwargs``."""
    if method not in SUPPORTED_METHODS:
        raise ValueError(
            f"method: expected one of {list(SUPPORTED_METHODS)}, got {method!r}"
        )
    _check_count("n_steps", n_steps, 2 if method.startswith("riemann") else 1, method)
    if method == "gausslegendre" and n_steps > MAX_GAUSS_LEGENDRE_STEPS:
        raise ValueError(
            f"n_steps: expected at most {MAX_GAUSS_LEGENDRE_STEPS} for "
            f"method='gausslegendre' (Captum builds its nodes in time cubic in "
            f"n_steps), got {n_steps}; use a riemann_* method for more steps"
        )
    if internal_batch_size is not None:
        _check_count("internal_batch_size", internal_batch_size, 1)
    if not isinstance(grad_kwargs, (dict, type(None))):
        raise TypeError(
            "grad_kwargs: expected None or a dict of keyword arguments for "
            f"torch.autograd.grad, got {type(grad_kwargs).__name__}"
        )
    parameters = inspect.signature(torch.autograd.grad).parameters.values()
    options = [p.name for p in parameters if p.default is not p.empty]
    for key in (grad_kwargs or {}).keys() - options:
        sets_itself = key in ("outputs", "inputs")
        raise (ValueError if sets_itself else TypeError)(
            "grad_kwargs: expected keyword arguments of torch.autograd.grad "
            f"({', '.join(options)}), got {key!r}"
            + (", which attribute sets itself" if sets_itself else "")
        )


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


def format_inputs_and_baselines(
    inputs: Any, baselines: Any
) -> tuple[tuple[Tensor, ...], tuple[Tensor, ...]]:
    """Checks ``inputs`` and ``baselines``; returns them as tuples of the
    inputs' shapes (numbers and broadcastable baselines expanded)."""
    if isinstance(inputs, Tensor):
        inputs = (inputs,)
    if not isinstance(inputs, tuple):
        raise TypeError(
            "inputs: expected a Tensor or a tuple of Tensors, got "
            f"{type(inputs).__name__}"
        )
    if not inputs:
        raise ValueError("inputs: expected at least one Tensor, got an empty tuple")
    for index, inp in enumerate(inputs):
        name = _name("inputs", index, len(inputs))
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
        if inp.shape[0] != inputs[0].shape[0]:
            raise ValueError(
                f"{name}: expected {inputs[0].shape[0]} examples like "
                f"inputs[0], got {inp.shape[0]}"
            )
        _check_finite(inp, name)
    if baselines is None:
        baselines = (0.0,) * len(inputs)
    elif not isinstance(baselines, tuple):
        baselines = (baselines,)
    if len(baselines) != len(inputs):
        raise ValueError(
            f"baselines: expected {len(inputs)} baseline(s), one per input "
            f"tensor, got {len(baselines)}"
        )
    return inputs, tuple(
        _expanded_baseline(base, inp, _name("baselines", index, len(inputs)))
        for index, (inp, base) in enumerate(zip(inputs, baselines))
    )


def _expanded_baseline(baseline: Any, inp: Tensor, name: str) -> Tensor:
    if isinstance(baseline, bool) or not isinstance(baseline, (numbers.Real, Tensor)):
        raise TypeError(
            f"{name}: expected a number or a Tensor, got {type(baseline).__name__}"
        )
    if not isinstance(baseline, Tensor):
        baseline = torch.full_like(inp, float(baseline))
    if baseline.dtype != inp.dtype:
        raise TypeError(
            f"{name}: expected dtype {inp.dtype} like the inputs, got {baseline.dtype}"
        )
    if baseline.device != inp.device:
        raise ValueError(
            f"{name}: expected a Tensor on {inp.device} like the inputs, got one "
            f"on {baseline.device}"
        )
    # The inputs' number of dims or one example's, each size equal or 1.
    aligned = inp.shape[inp.dim() - baseline.dim() :]
    if baseline.dim() not in (inp.dim(), inp.dim() - 1) or any(
        size not in (1, full) for size, full in zip(baseline.shape, aligned)
    ):
        raise ValueError(
            f"{name}: expected a shape that broadcasts to the inputs' "
            f"{tuple(inp.shape)} (batch size {inp.shape[0]} or 1) or to one "
            f"example's {tuple(inp.shape[1:])}, got {tuple(baseline.shape)}"
        )
    return _check_finite(baseline, name).expand_as(inp)


def check_target(target: Any, output: Tensor, n_examples: int) -> Any:
    """Checks ``target`` against the model's output (a whole number of copies
    of the ``n_examples`` examples); returns it in the form Captum selects
    with: ints, tuples of ints, or a list of them per example."""
    sizes = tuple(output.shape[1:])
    if target is None:
        if any(size != 1 for size in sizes):
            raise ValueError(
                "target: expected a class index (or one per example) because the "
                f"model's output has shape {(n_examples, *sizes)}, not one scalar "
                "per example"
            )
        return None
    if not sizes:
        raise ValueError(
            f"target: expected None because the model's output has shape "
            f"{(n_examples,)}, one scalar per example; got {target!r}"
        )
    if isinstance(target, (Tensor, np.ndarray)):
        if target.ndim > 1:
            raise ValueError(
                f"target: expected a scalar or a 1-D Tensor of length {n_examples}, "
                f"got shape {tuple(target.shape)}"
            )
        # As in Captum, one element selects the same index for every example.
        target = target.tolist() if target.ndim and len(target) != 1 else target.item()
    per_example = isinstance(target, list)
    if per_example and len(target) != n_examples:
        raise ValueError(
            f"target: expected one target per example ({n_examples}), got a "
            f"list of {len(target)}"
        )
    checked = [
        _indices(item, sizes, f"target[{position}]" if per_example else "target")
        for position, item in enumerate(target if per_example else [target])
    ]
    return checked if per_example else checked[0]


def _indices(item: Any, sizes: tuple[int, ...], name: str) -> int | tuple[int, ...]:
    """One example's target as Captum's index into an output with ``sizes``
    per example: an int, or a tuple of ints (any integer kinds, no bools)."""
    index = item if isinstance(item, tuple) else (item,)
    if len(index) != len(sizes):
        raise ValueError(
            f"{name}: expected {len(sizes)} index(es) per example for a model "
            f"output with shape {sizes} per example, got {item!r}"
        )
    checked = []
    for value, size in zip(index, sizes):
        if isinstance(value, (np.ndarray, Tensor)) and value.ndim == 0:
            value = value.item()
        if isinstance(value, (bool, np.bool_)) or not isinstance(
            value, numbers.Integral
        ):
            raise TypeError(f"{name}: expected an integer index, got {value!r}")
        if not 0 <= value < size:
            raise ValueError(
                f"{name}: expected an index in [0, {size - 1}] for a model output "
                f"of size {size} along that dimension, got {value}"
            )
        checked.append(int(value))
    return checked[0] if len(checked) == 1 else tuple(checked)
