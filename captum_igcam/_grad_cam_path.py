"""What the two Integrated Grad-CAM classes share: chunks, gradients, output.

:class:`GradCamAlongPath` evaluates the Grad-CAM term at the path
points of a :class:`PathChunks` (the input-space path of
:class:`~captum_igcam.IntegratedLayerGradCam` or the layer-space path of
:class:`~captum_igcam.LayerSpaceIntegratedGradCam`), in chunks of at most
``internal_batch_size`` examples x points as Captum's path methods do, and
sums the quadrature.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

import torch
from captum.attr import GradientAttribution, LayerAttribution
from torch import Tensor
from torch.nn import Module

from captum_igcam import _validation
from captum_igcam._captum_compat import (
    BaselineType,
    TargetType,
    _batch_attribution,
    _expand_additional_forward_args,
    _expand_target,
    _format_additional_forward_args,
    _format_output,
    _select_targets,
    approximation_parameters,
)
from captum_igcam._layer_capture import LayerProbe
from captum_igcam._path_points import memory_format, points_on_line

Tensors = tuple[Tensor, ...]


class Chunk(NamedTuple):
    """Path points ``a_m`` of one chunk and their quadrature weights ``s_m``."""

    alphas: Sequence[float]
    step_sizes: Sequence[float]


@dataclass(frozen=True)
class PathCall:
    """One ``attribute`` call's formatted arguments and its layer probe."""

    inputs: Tensors
    baselines: Tensors
    additional_forward_args: Any
    n_examples: int
    probe: LayerProbe

    def input_points(self, alphas: Sequence[float]) -> Tensors:
        """The input-space path points ``x' + a (x - x')``, point major."""
        return tuple(
            points_on_line(base, inp, alphas)
            for inp, base in zip(self.inputs, self.baselines)
        )

    def baselines_then_inputs(self) -> Tensors:
        """Each input tensor after its baseline, in one batch of ``2 N`` rows."""
        return tuple(
            torch.cat([base, inp]).contiguous(memory_format=memory_format(inp))
            for inp, base in zip(self.inputs, self.baselines)
        )

    def repeated_inputs(self, times: int) -> Tensors:
        """The inputs repeated ``times`` along dimension 0."""
        return _expand_additional_forward_args(self.inputs, times)

    def repeated_args(self, times: int) -> Any:
        """``additional_forward_args`` with tensors repeated ``times``."""
        return _expand_additional_forward_args(self.additional_forward_args, times)


class PathChunks(Protocol):
    """One ``attribute`` call's path, evaluated a chunk of path points at a time."""

    call: PathCall

    def forward(self, chunk: Chunk) -> tuple[Tensor, Tensors]:
        """The model's output at the chunk's points (point major) and the
        layer's tensors there as autograd leaves."""

    def integrate(self, chunk: Chunk, leaves: Tensors, gradients: Tensors) -> Tensors:
        """``sum_m s_m ReLU(D_m)`` over the chunk, one map per layer tensor."""


class GradCamAlongPath(LayerAttribution, GradientAttribution):
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
            layer (torch.nn.Module): Layer for which attributions are computed.
                        The output of ``attribute`` has this layer's output
                        shape (or input shape, with
                        ``attribute_to_layer_input=True``), with 1 channel when
                        channels are summed.
            device_ids (list[int], optional): Device ID list, necessary only if
                        forward_func applies a DataParallel model; lets the
                        layer's tensors be reassembled from the replicas. Not
                        needed when forward_func is the DataParallel model.
        """
        _validation.check_layer(layer, _validation.owning_model(forward_func))
        LayerAttribution.__init__(self, forward_func, layer, device_ids)
        GradientAttribution.__init__(self, forward_func)

    @staticmethod
    def _check_path_arguments(
        method: Any, n_steps: Any, internal_batch_size: Any, grad_kwargs: Any
    ) -> None:
        _validation.check_method(method)
        _validation.check_n_steps(n_steps, method)
        _validation.check_internal_batch_size(internal_batch_size)
        _validation.check_grad_kwargs(grad_kwargs)

    def _prepare(
        self,
        inputs: Tensor | Tensors,
        baselines: BaselineType,
        additional_forward_args: Any,
        attribute_to_layer_input: bool,
    ) -> PathCall:
        """Checks and formats the inputs and baselines; makes the call's probe."""
        formatted_inputs, expanded_baselines, n_examples = (
            _validation.format_inputs_and_baselines(inputs, baselines)
        )
        return PathCall(
            formatted_inputs,
            expanded_baselines,
            _format_additional_forward_args(additional_forward_args),
            n_examples,
            LayerProbe(
                self.forward_func,
                self.layer,
                attribute_to_layer_input,
                self.device_ids,
            ),
        )

    def _integrate(
        self,
        path: PathChunks,
        target: TargetType,
        n_steps: int,
        method: str,
        internal_batch_size: int | None,
        grad_kwargs: dict[str, Any] | None,
    ) -> Tensors:
        """Integrates over all path points, a chunk at a time."""
        n_examples = path.call.n_examples
        chunk_kwargs = dict(
            path=path, target=target, method=method, grad_kwargs=grad_kwargs
        )
        if internal_batch_size is None:
            integrated = self._attribute(n_steps=n_steps, **chunk_kwargs)
        else:
            integrated = _batch_attribution(
                self, n_examples, internal_batch_size, n_steps, **chunk_kwargs
            )
        layer_calls = path.call.probe.layer_calls
        if layer_calls > 1:
            warnings.warn(
                f"layer: the explained layer was called {layer_calls} times in "
                "one forward pass; attributing to its last call, as LayerGradCam "
                "does. Explain a module that runs once to avoid the ambiguity.",
                stacklevel=4,
            )
        return integrated

    @staticmethod
    def _output(maps: Tensors, relu_attributions: bool) -> Tensor | Tensors:
        """The maps as ``attribute`` returns them: a Tensor or a tuple."""
        if relu_attributions:
            maps = tuple(torch.relu(attr) for attr in maps)
        return _format_output(len(maps) > 1, maps)

    def _attribute(
        self,
        path: PathChunks,
        target: TargetType,
        method: str,
        grad_kwargs: dict[str, Any] | None,
        n_steps: int,
        step_sizes_and_alphas: tuple[list[float], list[float]] | None = None,
    ) -> Tensors:
        """Integrates over one chunk of path points (all of them by default)."""
        if step_sizes_and_alphas is None:
            step_sizes_func, alphas_func = approximation_parameters(method)
            step_sizes_and_alphas = step_sizes_func(n_steps), alphas_func(n_steps)
        step_sizes, alphas = step_sizes_and_alphas
        chunk = Chunk(alphas, step_sizes)
        output, leaves = path.forward(chunk)
        _validation.check_target(target, output, path.call.n_examples)
        with torch.enable_grad():
            scores = _select_targets(output, _expand_target(target, n_steps))
            if scores.numel() != output.shape[0]:
                raise ValueError(
                    "target: expected it to select one score per example, got "
                    f"{scores.numel() // output.shape[0]} per example"
                )
            gradients = torch.autograd.grad(scores.sum(), leaves, **(grad_kwargs or {}))
        # The integrand is summed in at least float32, also under autocast.
        with torch.autocast(output.device.type, enabled=False):
            return path.integrate(chunk, leaves, gradients)

    def has_convergence_delta(self) -> bool:
        return False
