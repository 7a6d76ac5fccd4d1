"""Capture a layer's tensors during a forward pass, as fresh autograd leaves.

Integrated Grad-CAM needs, at every path point, the explained layer's
activations ``A`` and the gradient ``dS/dA``. Nothing below the layer needs a
gradient, so the forward pass can run with autograd switched off until the
layer is reached: the hook below detaches the layer's tensors, makes them
leaves that require grad, switches grad mode on and hands a copy downstream.
Only the part of the network after the layer is recorded.

That trick relies on the forward pass leaving grad mode alone. When a model
switches it itself, or calls the layer more than once, :meth:`LayerProbe.run`
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

from captum_igcam import _validation
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

    # Under torch.compile the hooks run eagerly (a graph break at the layer):
    # traced, their bookkeeping on this object would be replayed from a
    # cached graph, guarded on dynamo's terms, instead of run on every call.
    @torch.compiler.disable
    def forward_hook(self, module: Module, args: Any, output: Any) -> Any:
        return self._capture(output)

    @torch.compiler.disable
    def forward_pre_hook(self, module: Module, args: Any) -> Any:
        _validation.check_layer_input(args)
        return self._capture(args)


class LayerProbe:
    """Forward passes of ``forward_func`` with a hook on the explained layer.

    One probe serves one ``attribute`` call: :meth:`capture` records the
    layer's tensors without autograd, :meth:`run` makes them autograd leaves
    and records the graph from the layer on. The probe starts optimistic
    (autograd starts at the layer) and switches to recording the whole pass
    for the rest of the call as soon as one pass shows that the model does
    not allow it; ``layer_calls`` is the most calls of the layer seen in one
    pass.

    Args:
        forward_func (Callable): The model or a function calling it.
        layer (torch.nn.Module): The explained layer.
        attribute_to_layer_input (bool): Hook the layer's input instead of
                    its output.
        device_ids (list[int], optional): Devices of a DataParallel model
                    called inside ``forward_func``, to order the replicas'
                    tensors.
    """

    def __init__(
        self,
        forward_func: Callable[..., Any],
        layer: Module,
        attribute_to_layer_input: bool,
        device_ids: list[int] | None,
    ) -> None:
        self.forward_func = forward_func
        self.layer = layer
        self.attribute_to_layer_input = attribute_to_layer_input
        self.device_ids = device_ids
        self.start_graph_at_layer = True
        self.layer_calls = 0

    def capture(
        self, inputs: tuple[Tensor, ...], additional_forward_args: Any
    ) -> tuple[Tensor, ...]:
        """Runs one forward pass without autograd; returns the layer's tensors."""
        hook = _CaptureHook(as_leaves=False, start_graph=False)
        self._forward(hook, inputs, additional_forward_args, grad_enabled=False)
        return hook.seen.gathered(self.device_ids)

    def run(
        self,
        inputs: tuple[Tensor, ...],
        additional_forward_args: Any,
        transform: LayerTransform | None = None,
    ) -> tuple[Tensor, tuple[Tensor, ...]]:
        """Runs the forward pass with the layer's tensors as autograd leaves.

        With a ``transform``, the leaves are the transformed tensors and the
        rest of the forward pass runs on them.

        Returns:
            The model's output and the leaves (last call of the layer,
            gathered over devices), from which ``torch.autograd.grad`` gives
            ``dS/dA``.
        """
        while True:
            hook = _CaptureHook(
                as_leaves=True,
                start_graph=self.start_graph_at_layer,
                transform=transform,
            )
            output = self._forward(
                hook,
                inputs,
                additional_forward_args,
                grad_enabled=not self.start_graph_at_layer,
            )
            if self.start_graph_at_layer and _needs_full_graph(hook.seen, output):
                self.start_graph_at_layer = False
                continue
            break
        self.layer_calls = max(self.layer_calls, hook.seen.max_calls)
        if not isinstance(output, Tensor):
            raise TypeError(
                "forward_func: expected it to return a Tensor, got "
                f"{type(output).__name__}"
            )
        if not output.requires_grad:
            raise ValueError(
                "forward_func: its output does not depend on the explained layer "
                "through operations that record gradients; expected a Tensor "
                "computed from the layer's output with grad mode left on"
            )
        return output, hook.seen.gathered(self.device_ids)

    def bypasses_layer(
        self, inputs: tuple[Tensor, ...], additional_forward_args: Any
    ) -> bool:
        """Whether the output depends on ``inputs`` other than through the layer.

        Runs one forward pass with autograd on and the layer's tensors
        replaced by fresh leaves, which cuts every route through the layer;
        a gradient route still left from the output to the inputs goes
        around the layer (a residual connection that skips it, say).
        """
        inputs = tuple(inp.detach().requires_grad_() for inp in inputs)
        hook = _CaptureHook(as_leaves=True, start_graph=False)
        output = self._forward(hook, inputs, additional_forward_args, grad_enabled=True)
        if not (isinstance(output, Tensor) and output.requires_grad):
            return False
        with torch.enable_grad():
            total = output.sum()
        gradients = torch.autograd.grad(total, inputs, allow_unused=True)
        return any(gradient is not None for gradient in gradients)

    def _forward(
        self,
        hook: _CaptureHook,
        inputs: tuple[Tensor, ...],
        additional_forward_args: Any,
        grad_enabled: bool,
    ) -> Any:
        if self.attribute_to_layer_input:
            handle = self.layer.register_forward_pre_hook(hook.forward_pre_hook)
        else:
            handle = self.layer.register_forward_hook(hook.forward_hook)
        try:
            with torch.set_grad_enabled(grad_enabled):
                output = _run_forward(
                    self.forward_func, inputs, None, additional_forward_args
                )
        finally:
            handle.remove()
        if hook.seen.max_calls == 0:
            if _is_compiled(self.forward_func):
                raise ValueError(
                    "layer: the explained layer's hook never ran: forward_func is "
                    "a torch.compile'd model that reused a graph traced before "
                    "the hook existed (by default dynamo does not guard on module "
                    "hooks). Set torch._dynamo.config.skip_nnmodule_hook_guards "
                    "= False before the compiled model's first call, or explain "
                    "the model before compiling it"
                )
            raise ValueError(
                "layer: the forward pass never called the explained layer; "
                "expected a submodule that forward_func runs on every call"
            )
        return output


def _is_compiled(forward_func: Callable[..., Any]) -> bool:
    """Whether ``forward_func`` is a module compiled by ``torch.compile``
    (wrapped, or in place with ``Module.compile``)."""
    return hasattr(forward_func, "_orig_mod") or (
        getattr(forward_func, "_compiled_call_impl", None) is not None
    )


def _needs_full_graph(seen: LayerTensors, output: Any) -> bool:
    output_has_graph = isinstance(output, Tensor) and output.requires_grad
    return seen.max_calls > 1 or not output_has_graph
