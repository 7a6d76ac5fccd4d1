"""Capture a layer's tensors during a forward pass, as fresh autograd leaves.

Integrated Grad-CAM needs, at every path point, the explained layer's
activations ``A`` and the gradient ``dS/dA``. Nothing below the layer needs a
gradient, so the forward pass can run with autograd switched off until the
layer is reached: the hook below detaches the layer's tensors, makes them
leaves that require grad, switches grad mode on and hands a copy downstream.
Only the part of the network after the layer is recorded.

That trick relies on the forward pass leaving grad mode alone. When a model
switches it itself, or calls the layer more than once, :func:`run_forward`
falls back to recording the whole pass (as Captum's own layer methods do),
which gives the same numbers at the usual cost.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor
from torch.nn import Module

from captum_igcam._captum_compat import _run_forward, _sort_key_list


@dataclass
class LayerTensors:
    """The layer's tensors seen during one forward pass.

    ``calls`` counts the layer's calls per device; ``tensors`` keeps, per
    device, the tensors of the last call (the one attributed, as in Captum).
    """

    calls: dict[torch.device, int] = field(default_factory=lambda: defaultdict(int))
    tensors: dict[torch.device, tuple[Tensor, ...]] = field(default_factory=dict)

    @property
    def max_calls(self) -> int:
        return max(self.calls.values(), default=0)

    def gathered(self, device_ids: list[int] | None) -> tuple[Tensor, ...]:
        """The last call's tensors, concatenated over devices in batch order."""
        devices = _sort_key_list(list(self.tensors.keys()), device_ids)
        if len(devices) == 1:
            return self.tensors[devices[0]]
        per_device = [self.tensors[device] for device in devices]
        return tuple(torch.cat(parts, dim=0) for parts in zip(*per_device))


LayerTransform = Callable[[tuple[Tensor, ...]], tuple[Tensor, ...]]


class _CaptureHook:
    """Forward (pre-)hook that records the layer's output (or input) tensors.

    With ``as_leaves`` each tensor is replaced by a leaf requiring grad (the
    forward continues on a clone of it, so in-place operations downstream
    are allowed); with ``start_graph`` the hook also switches grad mode on,
    so that autograd records only what follows the layer. A ``transform``
    replaces the layer's tensors by others (the layer-space path) before
    they become leaves.
    """

    def __init__(
        self,
        as_leaves: bool,
        start_graph: bool,
        transform: LayerTransform | None = None,
    ) -> None:
        self.as_leaves = as_leaves
        self.start_graph = start_graph
        self.transform = transform
        self.seen = LayerTensors()
        self._lock = threading.Lock()

    def _capture(self, tensors: Any) -> Any:
        is_sequence = isinstance(tensors, (tuple, list))
        items = tuple(tensors) if is_sequence else (tensors,)
        if not all(isinstance(item, Tensor) for item in items):
            raise ValueError(
                "layer: expected the explained layer's "
                "tensors to be a Tensor or a tuple of Tensors, got "
                f"{[type(item).__name__ for item in items]}"
            )
        if self.transform is not None:
            with torch.no_grad():
                items = self.transform(items)
        if self.start_graph:
            torch.set_grad_enabled(True)
        if self.as_leaves:
            leaves = tuple(item.detach().requires_grad_() for item in items)
            forwarded = tuple(leaf.clone() for leaf in leaves)
        else:
            # The forward pass goes on with the original tensors, which an
            # in-place operation downstream may change: keep a copy.
            leaves = tuple(item.detach().clone() for item in items)
            forwarded = None
        device = items[0].device
        with self._lock:
            self.seen.calls[device] += 1
            self.seen.tensors[device] = leaves
        if forwarded is None:
            return None
        if not is_sequence:
            return forwarded[0]
        return type(tensors)(forwarded)

    def forward_hook(self, module: Module, args: Any, output: Any) -> Any:
        return self._capture(output)

    def forward_pre_hook(self, module: Module, args: Any) -> Any:
        return self._capture(args)


def _forward_with_hook(
    forward_func: Callable[..., Any],
    layer: Module,
    inputs: tuple[Tensor, ...],
    additional_forward_args: Any,
    attribute_to_layer_input: bool,
    hook: _CaptureHook,
    grad_enabled: bool,
) -> Any:
    if attribute_to_layer_input:
        handle = layer.register_forward_pre_hook(hook.forward_pre_hook)
    else:
        handle = layer.register_forward_hook(hook.forward_hook)
    try:
        with torch.set_grad_enabled(grad_enabled):
            return _run_forward(forward_func, inputs, None, additional_forward_args)
    finally:
        handle.remove()


def _check_layer_called(seen: LayerTensors) -> None:
    if seen.max_calls == 0:
        raise ValueError(
            "layer: the forward pass never called the explained layer; expected "
            "a submodule that forward_func runs on every call"
        )


def capture_activations(
    forward_func: Callable[..., Any],
    layer: Module,
    inputs: tuple[Tensor, ...],
    additional_forward_args: Any,
    attribute_to_layer_input: bool,
    device_ids: list[int] | None,
) -> tuple[Tensor, ...]:
    """Runs one forward pass without autograd and returns the layer's tensors."""
    hook = _CaptureHook(as_leaves=False, start_graph=False)
    _forward_with_hook(
        forward_func,
        layer,
        inputs,
        additional_forward_args,
        attribute_to_layer_input,
        hook,
        grad_enabled=False,
    )
    _check_layer_called(hook.seen)
    return hook.seen.gathered(device_ids)


@dataclass
class GraphPolicy:
    """Whether the next forward passes may skip the graph below the layer.

    Starts optimistic; :func:`run_forward` switches it off for the rest of an
    ``attribute`` call as soon as one pass shows that the model does not
    allow it. ``layer_calls`` records the most calls of the layer seen in one
    forward pass.
    """

    start_graph_at_layer: bool = True
    layer_calls: int = 0


def _needs_full_graph(seen: LayerTensors, output: Any) -> bool:
    output_has_graph = isinstance(output, Tensor) and output.requires_grad
    return seen.max_calls > 1 or not output_has_graph


def run_forward(
    forward_func: Callable[..., Any],
    layer: Module,
    inputs: tuple[Tensor, ...],
    additional_forward_args: Any,
    attribute_to_layer_input: bool,
    device_ids: list[int] | None,
    policy: GraphPolicy,
    transform: LayerTransform | None = None,
) -> tuple[Any, tuple[Tensor, ...]]:
    """Runs the forward pass with the layer's tensors as autograd leaves.

    With a ``transform``, the leaves are the transformed tensors and the rest
    of the forward pass runs on them.

    Returns:
        The model's output and the leaves (last call of the layer, gathered
        over devices), from which ``torch.autograd.grad`` gives ``dS/dA``.
    """
    while True:
        hook = _CaptureHook(
            as_leaves=True,
            start_graph=policy.start_graph_at_layer,
            transform=transform,
        )
        output = _forward_with_hook(
            forward_func,
            layer,
            inputs,
            additional_forward_args,
            attribute_to_layer_input,
            hook,
            grad_enabled=not policy.start_graph_at_layer,
        )
        _check_layer_called(hook.seen)
        if policy.start_graph_at_layer and _needs_full_graph(hook.seen, output):
            policy.start_graph_at_layer = False
            continue
        break
    policy.layer_calls = max(policy.layer_calls, hook.seen.max_calls)
    if not isinstance(output, Tensor):
        raise TypeError(
            f"forward_func: expected it to return a Tensor, got {type(output).__name__}"
        )
    if not output.requires_grad:
        raise ValueError(
            "forward_func: its output does not depend on the explained layer "
            "through operations that record gradients; expected a Tensor "
            "computed from the layer's output with grad mode left on"
        )
    return output, hook.seen.gathered(device_ids)
