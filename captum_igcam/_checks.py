"""Argument checks of the Integrated Grad-CAM classes.

Captum's own formatting asserts (and ``python -O`` skips asserts), so every
check here raises a ``TypeError`` or ``ValueError`` in one form,
``"<parameter>: expected <what>, got <what>"`` (:func:`bad_type`,
:func:`bad_value`). All of them run before any forward pass, except
:func:`check_target`, which needs the model's output. What torch states
clearly itself (``grad_kwargs`` keys, a baseline's device) is left to torch.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np
import torch
from torch import Tensor

from captum_igcam._captum_compat import SUPPORTED_METHODS

#: The most path points for ``gausslegendre``: Captum builds its nodes by an
#: eigenproblem of size ``n_steps`` (cubic time, twice per call);
#: ``benchmarks/measurements/gauss_legendre_nodes.py`` prints the cost around the limit.
MAX_GAUSS_LEGENDRE_STEPS = 1000


def bad_type(name: str, expected: str, value: Any, got: str = "") -> TypeError:
    """``TypeError("<name>: expected <expected>, got <got>")``; by default
    ``got`` is the value's type, and the value itself if it is a number or a
    string."""
    shown = f" {value!r:.40}" if isinstance(value, (numbers.Number, str)) else ""
    got = got or f"{type(value).__name__}{shown}"
    return TypeError(f"{name}: expected {expected}, got {got}")


def bad_value(name: str, expected: str, got: Any, remedy: str = "") -> ValueError:
    """``ValueError("<name>: expected <expected>, got <got>[; <remedy>]")``."""
    return ValueError(
        f"{name}: expected {expected}, got {got}{remedy and '; '}{remedy}"
    )


def _is_integer(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _check_count(name: str, value: Any, low: int, method: str | None = None) -> None:
    optional = "" if method else "None or "
    if not _is_integer(value):
        raise bad_type(name, f"{optional}a positive integer", value)
    if value < low:
        rule = f" for method={method!r}" if method else ""
        raise bad_value(name, f"{optional}an integer >= {low}{rule}", value)


def check_options(n_steps: Any, method: Any, internal_batch_size: Any) -> None:
    """Checks the path's options."""
    if method not in SUPPORTED_METHODS:
        raise bad_value("method", f"one of {list(SUPPORTED_METHODS)}", repr(method))
    _check_count("n_steps", n_steps, 2 if method.startswith("riemann") else 1, method)
    if method == "gausslegendre" and n_steps > MAX_GAUSS_LEGENDRE_STEPS:
        limit = f"at most {MAX_GAUSS_LEGENDRE_STEPS} for method='gausslegendre'"
        raise bad_value("n_steps", limit, n_steps, "use a riemann_* method")
    if internal_batch_size is not None:
        _check_count("internal_batch_size", internal_batch_size, 1)


def _check_input(inp: Any, name: str, first: Tensor) -> None:
    if not isinstance(inp, Tensor) or not inp.is_floating_point():
        got = f"dtype {inp.dtype}" if isinstance(inp, Tensor) else ""
        raise bad_type(name, "a floating-point Tensor", inp, got)
    if inp.dim() == 0 or inp.shape[0] == 0:
        expected = "a batch of at least one example along dimension 0"
        raise bad_value(name, expected, f"shape {tuple(inp.shape)}")
    if len(inp) != len(first):
        raise bad_value(name, f"{len(first)} examples like inputs[0]", len(inp))
    if not torch.isfinite(inp).all():
        raise bad_value(name, "finite values", "NaN or Inf")


def _expanded_baseline(base: Any, inp: Tensor, name: str) -> Tensor:
    if isinstance(base, bool) or not isinstance(base, (numbers.Real, Tensor)):
        raise bad_type(name, "a number or a Tensor", base)
    if not isinstance(base, Tensor):
        if not math.isfinite(base):
            raise bad_value(name, "finite values", base)
        return torch.full_like(inp, base)
    base = base.to(inp)  # the inputs' dtype and device
    # The inputs' number of dims or one example's, each size 1 or equal.
    aligned = inp.shape[inp.dim() - base.dim() :]
    if base.dim() not in (inp.dim(), inp.dim() - 1) or any(
        size not in (1, full) for size, full in zip(base.shape, aligned)
    ):
        expected = (
            f"a shape that broadcasts to the inputs' {tuple(inp.shape)} (batch size "
            f"{len(inp)} or 1) or to one example's {tuple(inp.shape[1:])}"
        )
        raise bad_value(name, expected, tuple(base.shape))
    if not torch.isfinite(base).all():
        raise bad_value(name, "finite values", "NaN or Inf")
    return base.expand_as(inp)


def format_inputs_and_baselines(
    inputs: Any, baselines: Any
) -> tuple[tuple[Tensor, ...], tuple[Tensor, ...]]:
    """Checks ``inputs`` and ``baselines``; returns them as tuples of the
    inputs' shapes (numbers and broadcastable baselines expanded, tensors in
    the inputs' dtype and device)."""
    inputs = (inputs,) if isinstance(inputs, Tensor) else inputs
    if not isinstance(inputs, tuple):
        raise bad_type("inputs", "a Tensor or a tuple of Tensors", inputs)
    if not inputs:
        raise bad_value("inputs", "at least one Tensor", "an empty tuple")
    baselines = (0.0,) * len(inputs) if baselines is None else baselines
    baselines = baselines if isinstance(baselines, tuple) else (baselines,)
    if len(baselines) != len(inputs):
        expected = f"{len(inputs)} baseline(s), one per input tensor"
        raise bad_value("baselines", expected, len(baselines))
    names = [f"[{index}]" if len(inputs) > 1 else "" for index in range(len(inputs))]
    for inp, suffix in zip(inputs, names):
        _check_input(inp, f"inputs{suffix}", inputs[0])
    return inputs, tuple(
        _expanded_baseline(base, inp, f"baselines{suffix}")
        for inp, base, suffix in zip(inputs, baselines, names)
    )


def check_target(target: Any, output: Tensor, n_examples: int) -> Any:
    """Checks ``target`` against the model's output (a whole number of copies
    of the ``n_examples`` examples); returns it in the form Captum selects
    with: ints, tuples of ints, or a list of them per example."""
    sizes = tuple(output.shape[1:])
    if target is None:
        if any(size != 1 for size in sizes):
            expected = (
                "a class index (or one per example) because the model's output has "
                f"shape {(n_examples, *sizes)}, not one scalar per example"
            )
            raise bad_value("target", expected, None)
        return None
    if not sizes:
        expected = f"None because the model's output has shape {(n_examples,)}"
        raise bad_value("target", f"{expected}, one scalar per example", repr(target))
    if isinstance(target, (Tensor, np.ndarray)):
        if target.ndim > 1:
            expected = f"a scalar or a 1-D Tensor of length {n_examples}"
            raise bad_value("target", expected, f"shape {tuple(target.shape)}")
        # As in Captum, one element selects the same index for every example.
        target = target.tolist() if target.ndim and len(target) != 1 else target.item()
    if not isinstance(target, list):
        return _indices(target, sizes, "target")
    if len(target) != n_examples:
        expected = f"one target per example ({n_examples})"
        raise bad_value("target", expected, f"a list of {len(target)}")
    return [_indices(item, sizes, f"target[{n}]") for n, item in enumerate(target)]


def _indices(item: Any, sizes: tuple[int, ...], name: str) -> int | tuple[int, ...]:
    """One example's target as Captum's index into an output with ``sizes``
    per example: an int, or a tuple of ints (any integer kinds, no bools)."""
    index = item if isinstance(item, tuple) else (item,)
    if len(index) != len(sizes):
        expected = f"{len(sizes)} index(es) per example for outputs of shape {sizes}"
        raise bad_value(name, expected, repr(item))
    checked = []
    for value, size in zip(index, sizes):
        if isinstance(value, (np.ndarray, Tensor)) and value.ndim == 0:
            value = value.item()
        if not _is_integer(value):
            raise bad_type(name, "an integer index", value, repr(value))
        if not 0 <= value < size:
            expected = f"an index in [0, {size - 1}] for a model output of size {size}"
            raise bad_value(name, f"{expected} along that dimension", value)
        checked.append(int(value))
    return checked[0] if len(checked) == 1 else tuple(checked)
