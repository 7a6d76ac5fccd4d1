"""What the Integrated Grad-CAM classes share: the checks, the gradients, the integral.

:class:`GradCamPath` checks and formats an ``attribute`` call's arguments,
runs one forward and backward pass for a chunk of path points
(``_gradients``) and finishes the maps; :class:`Term` sums the Grad-CAM term
over a chunk's path points. The subclasses say where the path runs.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from captum.attr import GradientAttribution, LayerAttribution
from torch import Tensor
from torch.nn import Module

from captum_igcam._captum_compat import _format_additional_forward_args, _format_output
from captum_igcam._checks import check_options, format_inputs_and_baselines
from captum_igcam._layer_hook import LayerProbe, Tensors
from captum_igcam.reshapes import (
    ReshapeTransform,
    check_reshape_transform,
    to_channel_grid,
)

# warnings.warn's stacklevel for the caller of ``attribute``: the warning is
# issued in a GradCamPath method called by ``attribute`` under two wrappers
# (Captum's ``log_usage``, ``torch.inference_mode``).
_CALLER = 5


@dataclass(frozen=True)
class Term:
    """How a path point's Grad-CAM term is formed and summed (the options of
    ``attribute`` of the same names)."""

    reshape_transform: ReshapeTransform | None
    attr_dim_summation: bool
    per_step_relu: bool

    def integral(
        self,
        n_examples: int,
        step_sizes: Sequence[float],
        gradients: Tensor,
        activations: Tensor,
        baseline: Tensor | None = None,
    ) -> Tensor:
        """``sum_m s_m ReLU(D_m)`` with ``D_m = sum_k w_k(m) (A_k(m) - A'_k)``.

        Args:
            n_examples (int): ``N``.
            step_sizes (Sequence[float]): The ``M`` quadrature weights ``s_m``.
            gradients (Tensor): ``dS/dA`` at the ``M`` path points of the ``N``
                        examples, ``(M * N, ...)``, point major.
            activations (Tensor): ``A(m)``, ``(M * N, ...)``, or ``(N, ...)``
                        shared by every point.
            baseline (Tensor, optional): ``A'``, ``(N, ...)``; None for zero.

        Returns:
            Tensor: ``(N, 1, ...)`` (``(N, K, ...)`` per channel) in at least
            float32.
        """

        # Summed in at least float32, also under autocast.
        with torch.autocast(gradients.device.type, enabled=False):

            def per_point(tensor: Tensor) -> Tensor:  # (M or 1, N, K, ...)
                grid = to_channel_grid(self.reshape_transform, tensor.detach())
                return grid.unflatten(0, (-1, n_examples))

            gradients, activations = per_point(gradients), per_point(activations)
            dtype = torch.promote_types(activations.dtype, torch.float32)
            spatial = tuple(range(3, gradients.dim()))
            weights = (
                gradients.mean(spatial, dtype=dtype) if spatial else gradients.to(dtype)
            )
            activations = activations.to(dtype)
            if baseline is not None:
                activations = activations - per_point(baseline).to(dtype)
            if self.attr_dim_summation:
                terms = torch.einsum("mnk...,mnk->mn...", activations, weights)
                terms = terms.unsqueeze(2)
            else:
                terms = (
                    weights.reshape(*weights.shape, *[1] * len(spatial)) * activations
                )
            if self.per_step_relu:  # on the summed term, masking every channel's
                terms = terms * (terms.sum(dim=2, keepdim=True) > 0)
            scale = torch.tensor(step_sizes, dtype=dtype, device=terms.device)
            return (scale.reshape(-1, *[1] * (terms.dim() - 1)) * terms).sum(dim=0)


def memory_format(tensor: Tensor) -> torch.memory_format:
    """``torch.channels_last(_3d)`` when ``tensor`` is stored so (and not also
    contiguous), else ``torch.contiguous_format``."""
    for layout in (torch.channels_last, torch.channels_last_3d):
        if not tensor.is_contiguous() and tensor.is_contiguous(memory_format=layout):
            return layout
    return torch.contiguous_format


@torch.no_grad()
def points_on_line(start: Tensor, end: Tensor, alphas: Sequence[float]) -> Tensor:
    """``start + a (end - start)`` for every ``a``, stacked along dimension 0
    (point major), in ``end``'s memory format."""
    difference = end - start
    shape = (len(alphas) * start.shape[0], *start.shape[1:])
    points = torch.empty(
        shape, dtype=start.dtype, device=start.device, memory_format=memory_format(end)
    )
    for alpha, rows in zip(alphas, points.split(start.shape[0])):
        torch.add(start, difference, alpha=alpha, out=rows)
    return points


def _normal_tensors(value: Any) -> Any:
    """``value`` with inference tensors replaced by normal copies (autograd
    cannot record them); looks into tuples, lists and dicts."""
    if isinstance(value, Tensor):
        return value.clone() if value.is_inference() else value
    if isinstance(value, (tuple, list)):
        return type(value)(map(_normal_tensors, value))
    if isinstance(value, dict):
        return {key: _normal_tensors(item) for key, item in value.items()}
    return value


def _warn_in_training_mode(forward_func: Callable[..., Any]) -> None:
    """Warns when the model behind ``forward_func`` is in training mode."""
    model = getattr(forward_func, "__self__", forward_func)
    if not isinstance(model, Module):
        return
    # DataParallel-like wrappers hold the model as their only submodule
    # `.module` and nothing of their own; their train/eval flag is not the model's.
    while (
        list(model._modules) == ["module"]
        and isinstance(model.module, Module)
        and not [*model.parameters(recurse=False), *model.buffers(recurse=False)]
    ):
        model = model.module
    if any(module.training for module in model.modules()):
        warnings.warn(
            "forward_func: the model is in training mode, so dropout and batch "
            "norm make the map random; call model.eval() first",
            UserWarning,
            stacklevel=_CALLER + 1,
        )


class GradCamPath(LayerAttribution, GradientAttribution):
    """Base of the Integrated Grad-CAM classes (not used directly)."""

    def __init__(
        self,
        forward_func: Callable[..., Tensor],
        layer: Module,
        device_ids: list[int] | None = None,
    ) -> None:
        r"""
        Args:
            forward_func (Callable): The forward function of the model or any
                        modification of it.
            layer (torch.nn.Module): Layer for which attributions are computed;
                        the maps have its output's shape (input's, with
                        ``attribute_to_layer_input=True``), with one channel
                        when channels are summed.
            device_ids (list[int], optional): Device ID list, necessary only if
                        forward_func applies a DataParallel model.
        """
        LayerAttribution.__init__(self, forward_func, layer, device_ids)
        GradientAttribution.__init__(self, forward_func)

    def _formatted(
        self,
        inputs: Any,
        baselines: Any,
        additional_forward_args: Any,
        target: Any,
        options: tuple[Any, Any, Any, Any],
    ) -> tuple[Tensors, Tensors, Any, Any]:
        """Checks the call; returns inputs, baselines (expanded), extra
        arguments (a tuple or None) and target, with normal tensors for
        inference tensors. ``options``: ``n_steps``, ``method``,
        ``internal_batch_size``, ``reshape_transform``."""
        n_steps, method, internal_batch_size, reshape_transform = options
        check_options(n_steps, method, internal_batch_size)
        check_reshape_transform(reshape_transform)
        _warn_in_training_mode(self.forward_func)
        inputs, baselines = format_inputs_and_baselines(
            _normal_tensors(inputs), _normal_tensors(baselines)
        )
        args = _format_additional_forward_args(_normal_tensors(additional_forward_args))
        return inputs, baselines, args, _normal_tensors(target)

    @staticmethod
    def _gradients(
        probe: LayerProbe,
        inputs: Tensors,
        additional_forward_args: Any,
        scores: Callable[[Tensor], Tensor],
        grad_kwargs: dict[str, Any] | None,
        replace: Callable[[Tensors], Tensors] | None = None,
    ) -> tuple[Tensor, Tensors, Tensors]:
        """One pass (``probe.run``) and the gradient of the summed
        ``scores(output)`` at the layer: the output, leaves and gradients."""
        with torch.enable_grad():  # the probe sets grad mode for its passes
            output, leaves = probe.run(inputs, additional_forward_args, replace)
            gradients = torch.autograd.grad(
                scores(output).sum(), leaves, **(grad_kwargs or {})
            )
        return output, leaves, gradients

    @staticmethod
    def _output(
        maps: Tensors, probe: LayerProbe, relu_attributions: bool
    ) -> Tensor | Tensors:
        """The maps as ``attribute`` returns them (a warning for a layer called
        several times per pass)."""
        if probe.layer_calls > 1:
            warnings.warn(
                f"layer: the explained layer was called {probe.layer_calls} "
                "times in one forward pass; attributing to its last call, as "
                "LayerGradCam does",
                UserWarning,
                stacklevel=_CALLER,
            )
        if relu_attributions:
            maps = tuple(torch.relu(attribution) for attribution in maps)
        return _format_output(len(maps) > 1, maps)
