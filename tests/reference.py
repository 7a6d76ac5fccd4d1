"""A deliberately naive Integrated Grad-CAM, independent of the package.

One example, one path point, one forward and one backward pass at a time, in
float64, with explicit loops over channels. The quadrature rules are written
out from their definitions (Captum's documented rules), not taken from Captum.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn


def quadrature(method: str, n_steps: int) -> tuple[list[float], list[float]]:
    """Points ``a_m`` in [0, 1] and weights ``s_m`` of Captum's rules."""
    m = np.arange(n_steps, dtype=np.float64)
    if method == "riemann_left":
        return list(m / n_steps), [1.0 / n_steps] * n_steps
    if method == "riemann_right":
        return list((m + 1) / n_steps), [1.0 / n_steps] * n_steps
    if method == "riemann_middle":
        return list((m + 0.5) / n_steps), [1.0 / n_steps] * n_steps
    if method == "riemann_trapezoid":
        # Captum's trapezoid: points 0..1 inclusive, weights 1/M with the two
        # end weights halved.
        weights = [1.0 / n_steps] * n_steps
        weights[0] /= 2
        weights[-1] /= 2
        return list(np.linspace(0.0, 1.0, n_steps)), weights
    if method == "gausslegendre":
        nodes, weights = np.polynomial.legendre.leggauss(n_steps)
        return list((nodes + 1) / 2), list(weights / 2)
    raise ValueError(method)


@dataclass(frozen=True)
class TokenLayout:
    """ViT tokens ``(T, C)``: ``prefix`` special tokens, then h x w patches."""

    prefix: int
    height: int
    width: int


CHANNELS_LAST = "channels_last"  # Swin's (H, W, C)


def as_channel_grid(layout: TokenLayout | str | None, tensor: torch.Tensor):
    """One example's layer tensor as ``(C, h, w)``, position by position."""
    if layout is None:
        return tensor
    if layout == CHANNELS_LAST:
        height, width, channels = tensor.shape
        grid = torch.zeros(channels, height, width, dtype=tensor.dtype)
        for i in range(height):
            for j in range(width):
                grid[:, i, j] = tensor[i, j, :]
        return grid
    grid = torch.zeros(tensor.shape[1], layout.height, layout.width, dtype=tensor.dtype)
    for i in range(layout.height):
        for j in range(layout.width):
            grid[:, i, j] = tensor[layout.prefix + i * layout.width + j, :]
    return grid


def _layer_tensor_and_score(
    forward: Callable[..., torch.Tensor],
    layer: nn.Module,
    inputs: Sequence[torch.Tensor],
    extra_args: Sequence[object],
    target: object,
    to_layer_input: bool,
    tensor_index: int,
    replacement: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One forward pass; returns the layer tensor (hooked) and the target score.

    A ``replacement`` takes the place of the layer's tensor in the forward pass.
    """
    stored: list[torch.Tensor] = []

    def keep(tensors: object) -> object:
        items = list(tensors) if isinstance(tensors, (tuple, list)) else [tensors]
        if replacement is not None:
            items[tensor_index] = replacement.clone().requires_grad_()
        stored.append(items[tensor_index])
        items = [item.clone() for item in items]
        return tuple(items) if isinstance(tensors, (tuple, list)) else items[0]

    if to_layer_input:
        handle = layer.register_forward_pre_hook(lambda mod, args: keep(args))
    else:
        handle = layer.register_forward_hook(lambda mod, args, out: keep(out))
    try:
        with torch.enable_grad():
            leaf_inputs = [inp.clone().requires_grad_() for inp in inputs]
            output = forward(*leaf_inputs, *extra_args)
    finally:
        handle.remove()
    if target is None:
        score = output.reshape(-1)[0]
    elif isinstance(target, tuple):
        score = output[(0, *target)]
    else:
        score = output[0, target]
    return stored[-1], score


def naive_integrated_grad_cam(
    forward: Callable[..., torch.Tensor],
    layer: nn.Module,
    inputs: Sequence[torch.Tensor],
    baselines: Sequence[torch.Tensor],
    targets: Sequence[object],
    method: str,
    n_steps: int,
    extra_args: Sequence[object] = (),
    per_step_relu: bool = True,
    subtract_baseline_activations: bool = False,  # the class default
    to_layer_input: bool = False,
    tensor_index: int = 0,
    layout: TokenLayout | str | None = None,
) -> torch.Tensor:
    """Integrated Grad-CAM for every example, summed over channels.

    ``inputs`` and ``baselines`` are tuples of float64 tensors with a batch
    dimension; ``targets`` holds one target per example. Tensors in
    ``extra_args`` are sliced per example. ``layout`` says how the layer's
    tensor holds its channels and positions (None: channels first, as a
    CNN's). Grad-CAM is the case ``riemann_right``, one step, no per-step
    ReLU and no baseline subtraction.
    """
    alphas, step_sizes = quadrature(method, n_steps)
    maps = []
    for example in range(inputs[0].shape[0]):
        x = [inp[example : example + 1] for inp in inputs]
        x0 = [base[example : example + 1] for base in baselines]
        args = [
            arg[example : example + 1] if isinstance(arg, torch.Tensor) else arg
            for arg in extra_args
        ]

        def at(alpha: float, x=x, x0=x0, args=args, example=example):
            point = [b + alpha * (v - b) for v, b in zip(x, x0)]
            return _layer_tensor_and_score(
                forward,
                layer,
                point,
                args,
                targets[example],
                to_layer_input,
                tensor_index,
            )

        base_acts = (
            as_channel_grid(layout, at(0.0)[0].detach()[0])
            if subtract_baseline_activations
            else None
        )
        total = None
        for alpha, step in zip(alphas, step_sizes):
            acts, score = at(alpha)
            (grad,) = torch.autograd.grad(score, acts)
            acts = as_channel_grid(layout, acts.detach()[0])
            grad = as_channel_grid(layout, grad[0])
            if base_acts is not None:
                acts = acts - base_acts
            term = torch.zeros_like(acts[0:1])
            for k in range(acts.shape[0]):
                weight = grad[k].mean() if grad.dim() > 1 else grad[k]
                term = term + weight * acts[k : k + 1]
            if per_step_relu:
                term = torch.clamp(term, min=0)
            total = step * term if total is None else total + step * term
        maps.append(total)
    return torch.stack(maps)


def naive_layer_path_grad_cam(
    forward: Callable[..., torch.Tensor],
    layer: nn.Module,
    inputs: torch.Tensor,
    baselines: torch.Tensor,
    targets: Sequence[object],
    method: str,
    n_steps: int,
    extra_args: Sequence[object] = (),
) -> torch.Tensor:
    """The layer-space variant: the path runs from A(x') to A(x) in the layer.

    Tensors in ``extra_args`` are sliced per example.
    """
    alphas, step_sizes = quadrature(method, n_steps)
    maps = []
    for example in range(inputs.shape[0]):
        x = inputs[example : example + 1]
        x0 = baselines[example : example + 1]
        args = [
            arg[example : example + 1] if isinstance(arg, torch.Tensor) else arg
            for arg in extra_args
        ]
        target = targets[example]
        acts = _layer_tensor_and_score(forward, layer, [x], args, target, False, 0)[0]
        base = _layer_tensor_and_score(forward, layer, [x0], args, target, False, 0)[0]
        acts, base = acts.detach(), base.detach()
        total = 0.0
        for alpha, step in zip(alphas, step_sizes):
            point = base + alpha * (acts - base)
            hooked, score = _layer_tensor_and_score(
                forward, layer, [x], args, target, False, 0, replacement=point
            )
            (grad,) = torch.autograd.grad(score, hooked)
            term = torch.zeros_like(point[0, 0:1])
            for k in range(point.shape[1]):
                term = term + grad[0, k].mean() * (point[0, k : k + 1] - base[0, k])
            total = total + step * torch.clamp(term, min=0)
        maps.append(total)
    return torch.stack(maps)
