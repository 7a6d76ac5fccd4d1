"""What the Integrated Grad-CAM classes share: the call, the chunks, the integral.

:class:`GradCamPath` checks and formats an ``attribute`` call, evaluates the
Grad-CAM term at the path points in chunks of at most ``internal_batch_size``
examples x points (Captum's ``_batch_attribution``), and sums the quadrature.
A subclass says how a chunk's forward pass reaches the layer (``_forward``)
and what the integrand is (``_integrate``).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from captum.attr import GradientAttribution, LayerAttribution
from torch import Tensor
from torch.nn import Module

from captum_igcam import _checks
from captum_igcam._captum_compat import (
    _batch_attribution,
    _expand_target,
    _format_additional_forward_args,
    _format_output,
    _select_targets,
)
from captum_igcam._layer_hook import LayerProbe, Tensors
from captum_igcam.reshapes import (
    ReshapeTransform,
    check_reshape_transform,
    to_channel_grid,
)

#: A chunk's quadrature weights and points, as Captum's _batch_attribution
#: passes them.
Steps = tuple[Sequence[float], Sequence[float]]

# warnings.warn's stacklevel for the caller of ``attribute``: the warning is
# issued in GradCamPath._attribute_path, called by ``attribute`` under
# Captum's ``log_usage`` wrapper.
_CALLER = 4


@dataclass
class PathCall:
    """One ``attribute`` call's arguments (formatted by ``_attribute_path``)
    and what the call computes once."""

    inputs: Tensors
    target: Any
    additional_forward_args: Any
    attribute_to_layer_input: bool
    relu_attributions: bool
    attr_dim_summation: bool
    grad_kwargs: dict[str, Any] | None
    baselines: Tensors
    n_steps: int
    method: str
    internal_batch_size: int | None
    per_step_relu: bool
    reshape_transform: ReshapeTransform | None
    subtract_baseline_activations: bool = True
    probe: LayerProbe = field(init=False)
    # The layer's tensors at the baselines (and at the inputs), when needed.
    baseline_activations: Tensors | None = None
    input_activations: Tensors | None = None

    @property
    def n_examples(self) -> int:
        return self.inputs[0].shape[0]

    def grid(self, tensor: Tensor) -> Tensor:
        """A layer tensor as ``(N, K, *spatial)`` (see ``reshape_transform``)."""
        return to_channel_grid(self.reshape_transform, tensor)


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


def owning_model(forward_func: Callable[..., Any]) -> Module | None:
    """The ``nn.Module`` behind ``forward_func`` (itself or a bound method's)."""
    owner = getattr(forward_func, "__self__", forward_func)
    return owner if isinstance(owner, Module) else None


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


def _check_model(model: Module | None) -> None:
    """Refuses inference-tensor parameters; warns about training mode."""
    if model is None:
        return
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        if tensor.is_inference():
            expected = "a model whose parameters and buffers autograd can use"
            remedy = "create or load it outside torch.inference_mode()"
            got = f"{name!r}, an inference tensor"
            raise _checks.bad_value("forward_func", expected, got, remedy)
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


def integral(
    call: PathCall,
    step_sizes: Sequence[float],
    gradients: Tensor,
    activations: Tensor,
    baseline: Tensor | None = None,
) -> Tensor:
    """``sum_m s_m ReLU(D_m)`` with ``D_m = sum_k w_k(m) (A_k(m) - A'_k)``.

    Args:
        call: Its ``reshape_transform``, ``per_step_relu`` and
                    ``attr_dim_summation`` apply.
        step_sizes: The ``M`` quadrature weights ``s_m``.
        gradients: ``dS/dA`` at the ``M`` path points of the ``N`` examples,
                    ``(M * N, ...)``, point major.
        activations: ``A(m)``, ``(M * N, ...)``, or ``(N, ...)`` shared by
                    every point.
        baseline: ``A'``, ``(N, ...)``, or None for zero.

    Returns:
        ``(N, 1, ...)`` (``(N, K, ...)`` per channel) in at least float32.
    """

    def per_point(tensor: Tensor) -> Tensor:  # (M or 1, N, K, ...)
        return call.grid(tensor.detach()).unflatten(0, (-1, call.n_examples))

    gradients, activations = per_point(gradients), per_point(activations)
    dtype = torch.promote_types(activations.dtype, torch.float32)
    spatial = tuple(range(3, gradients.dim()))
    weights = gradients.mean(spatial, dtype=dtype) if spatial else gradients.to(dtype)
    activations = activations.to(dtype)
    if baseline is not None:
        activations = activations - per_point(baseline).to(dtype)
    if call.attr_dim_summation:
        terms = torch.einsum("mnk...,mnk->mn...", activations, weights).unsqueeze(2)
    else:
        terms = weights.reshape(*weights.shape, *[1] * len(spatial)) * activations
    if call.per_step_relu:  # on the summed term, masking every channel's
        terms = terms * (terms.sum(dim=2, keepdim=True) > 0)
    scale = torch.tensor(step_sizes, dtype=dtype, device=terms.device)
    return (scale.reshape(-1, *[1] * (terms.dim() - 1)) * terms).sum(dim=0)


class GradCamPath(LayerAttribution, GradientAttribution):
    """Base of the Integrated Grad-CAM classes (not used directly).

    A subclass defines ``_prepare(call)`` (work done once per call before
    the path points), ``_forward(call, alphas)`` (the output at a chunk's
    points, point major, and the layer's tensors as autograd leaves) and
    ``_integrate(call, steps, leaves, gradients)`` (the chunk's
    part of the integral, one map per layer tensor).
    """

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
        _checks.check_layer(layer, owning_model(forward_func))
        LayerAttribution.__init__(self, forward_func, layer, device_ids)
        GradientAttribution.__init__(self, forward_func)

    def _attribute_path(self, call: PathCall) -> Tensor | Tensors:
        """``attribute``'s shared body: checks, chunks, output."""
        _checks.check_options(
            call.n_steps, call.method, call.internal_batch_size, call.grad_kwargs
        )
        check_reshape_transform(call.reshape_transform)
        _check_model(owning_model(self.forward_func))
        # Autograd records nothing in inference mode: off for the call.
        with torch.inference_mode(False):
            call.inputs, call.baselines = _checks.format_inputs_and_baselines(
                _normal_tensors(call.inputs), _normal_tensors(call.baselines)
            )
            call.additional_forward_args = _format_additional_forward_args(
                _normal_tensors(call.additional_forward_args)
            )
            call.target = _normal_tensors(call.target)
            call.probe = LayerProbe(self, call.attribute_to_layer_input)
            self._prepare(call)
            n = call.n_examples
            chunk = call.internal_batch_size or n * call.n_steps
            maps = _batch_attribution(
                self, n, chunk, call.n_steps, call=call, method=call.method
            )
        if call.probe.layer_calls > 1:
            warnings.warn(
                f"layer: the explained layer was called {call.probe.layer_calls} "
                "times in one forward pass; attributing to its last call, as "
                "LayerGradCam does",
                UserWarning,
                stacklevel=_CALLER,
            )
        if call.relu_attributions:
            maps = tuple(torch.relu(attribution) for attribution in maps)
        return _format_output(len(maps) > 1, maps)

    def _attribute(
        self, call: PathCall, step_sizes_and_alphas: Steps, **_: Any
    ) -> Tensors:
        """Integrates over one chunk of path points (Captum's
        ``_batch_attribution`` passes the chunk's weights and points, and the
        call's ``method`` and the chunk's ``n_steps``, which are not needed)."""
        alphas = step_sizes_and_alphas[1]
        with torch.enable_grad():  # the probe sets grad mode for its passes
            output, leaves = self._forward(call, alphas)
            target = _checks.check_target(call.target, output, call.n_examples)
            scores = _select_targets(output, _expand_target(target, len(alphas)))
            gradients = torch.autograd.grad(
                scores.sum(), leaves, **(call.grad_kwargs or {})
            )
        # The integral is summed in at least float32, also under autocast.
        with torch.autocast(output.device.type, enabled=False):
            return self._integrate(call, step_sizes_and_alphas, leaves, gradients)
