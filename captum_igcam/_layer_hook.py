"""Forward passes with the explained layer's tensors captured as autograd leaves.

Nothing before the layer needs a gradient, so a pass runs with autograd off
until the layer is reached; the hook there detaches the layer's tensors, makes
them leaves that require grad, switches grad mode on and hands a copy on, so
only the rest of the network is recorded. A model that switches grad mode
itself, or calls the layer more than once, makes :meth:`LayerProbe.run` fall
back to recording the whole pass (as Captum's layer methods do): same numbers,
usual cost.

Hooks are state of the module, seen by every thread that runs it. A hook here
acts only in the thread of the call that registered it (and on DataParallel's
replicas, which run in worker threads); in any other thread, such as another
call explaining the same module at the same time, it does nothing.
"""

from __future__ import annotations

import sys
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from captum.attr import LayerAttribution
from torch import Tensor
from torch.nn import Module

from captum_igcam._captum_compat import _run_forward, _sort_key_list

Tensors = tuple[Tensor, ...]


@dataclass
class _Capture:
    """Records (and may replace) the layer's tensors during one forward pass:
    as fresh leaves handed on (``as_leaves``) or as detached copies."""

    layer: Module
    as_leaves: bool
    start_graph: bool = False
    replace: Callable[[Tensors], Tensors] | None = None
    thread: int = field(default_factory=threading.get_ident)
    calls: Counter[torch.device] = field(default_factory=Counter)
    tensors: dict[torch.device, Tensors] = field(default_factory=dict)

    def hook(self, module: Module, args: Any, *output: Any) -> Any:
        """A forward hook (``output`` given) or a forward pre-hook."""
        if module is self.layer and threading.get_ident() != self.thread:
            return None  # another thread's forward pass through the same module
        tensors = output[0] if output else args
        if not output and not args:
            raise ValueError(
                "attribute_to_layer_input: expected the explained layer to receive "
                "its input as positional arguments (Captum's layer input), not "
                "keyword arguments only; or use attribute_to_layer_input=False"
            )
        is_sequence = isinstance(tensors, (tuple, list))
        items = tuple(tensors) if is_sequence else (tensors,)
        if not all(isinstance(item, Tensor) for item in items):
            raise ValueError(
                "layer: expected the layer's tensors to be a Tensor or a tuple of "
                f"Tensors, got {[type(item).__name__ for item in items]}"
            )
        if self.replace is not None:
            items = self.replace(items)
        if self.start_graph:
            torch.set_grad_enabled(True)
        # Kept as detached copies (or fresh leaves): in-place operations
        # downstream change what the forward pass goes on with, not these.
        leaves = tuple(
            item.detach().requires_grad_() if self.as_leaves else item.detach().clone()
            for item in items
        )
        self.calls[items[0].device] += 1
        self.tensors[items[0].device] = leaves
        if not self.as_leaves:
            return None
        forwarded = tuple(leaf.clone() for leaf in leaves)
        return type(tensors)(forwarded) if is_sequence else forwarded[0]


def _eager(hook: Callable[..., Any]) -> Callable[..., Any]:
    """``hook`` run eagerly under torch.compile (a graph break at the layer),
    so that its bookkeeping runs on every call. A compiled model has loaded
    ``torch._dynamo``; without one, importing it (about 900 modules, sympy
    among them) is not needed."""
    if "torch._dynamo" in sys.modules:
        return torch.compiler.disable(hook)
    return hook


class LayerProbe:
    """Forward passes of ``method.forward_func`` with a hook on
    ``method.layer``.

    One probe serves one ``attribute`` call. ``layer_calls`` is the most calls
    of the layer seen in one pass.
    """

    def __init__(self, method: LayerAttribution, to_layer_input: bool) -> None:
        self.forward_func, self.layer = method.forward_func, method.layer
        self.to_input, self.device_ids = to_layer_input, method.device_ids
        self.start_graph_at_layer = True
        self.layer_calls = 0

    def capture(self, inputs: Tensors, additional_forward_args: Any) -> Tensors:
        """The layer's tensors in one forward pass without autograd."""
        capture = _Capture(self.layer, as_leaves=False)
        self._forward(capture, inputs, additional_forward_args)
        return self._gathered(capture)

    def run(
        self,
        inputs: Tensors,
        additional_forward_args: Any,
        replace: Callable[[Tensors], Tensors] | None = None,
    ) -> tuple[Tensor, Tensors]:
        """The model's output and the layer's tensors as autograd leaves (the
        ``replace`` ment of the layer's tensors, if given, and the rest of the
        pass runs on it)."""
        while True:
            start = self.start_graph_at_layer
            capture = _Capture(self.layer, True, start, replace)
            output = self._forward(capture, inputs, additional_forward_args)
            has_graph = isinstance(output, Tensor) and output.requires_grad
            if not start or (max(capture.calls.values()) == 1 and has_graph):
                break
            self.start_graph_at_layer = False
        self.layer_calls = max(self.layer_calls, *capture.calls.values())
        if not isinstance(output, Tensor):
            raise TypeError(
                f"forward_func: expected a Tensor output, got {type(output).__name__}"
            )
        if not has_graph:
            raise ValueError(
                "forward_func: expected an output computed from the explained "
                "layer's output with grad mode left on; it has no gradient there"
            )
        return output, self._gathered(capture)

    def bypasses_layer(self, inputs: Tensors, additional_forward_args: Any) -> bool:
        """Whether a gradient route from ``inputs`` to the output goes around
        the layer: one pass with the layer's tensors cut out of the graph."""
        inputs = tuple(inp.detach().requires_grad_() for inp in inputs)
        capture = _Capture(self.layer, as_leaves=True)
        with torch.enable_grad():
            output = self._forward(capture, inputs, additional_forward_args)
            if not (isinstance(output, Tensor) and output.requires_grad):
                return False
            gradients = torch.autograd.grad(output.sum(), inputs, allow_unused=True)
        return any(gradient is not None for gradient in gradients)

    def _gathered(self, capture: _Capture) -> Tensors:
        """The last call's tensors, concatenated over devices in batch order."""
        devices = _sort_key_list(list(capture.tensors), self.device_ids)
        parts = [capture.tensors[device] for device in devices]
        return parts[0] if len(parts) == 1 else tuple(map(torch.cat, zip(*parts)))

    def _forward(
        self, capture: _Capture, inputs: Tensors, additional_forward_args: Any
    ) -> Any:
        """One pass with ``capture``'s hook on the layer; autograd is on from
        the start only where leaves are wanted and the hook does not start it."""
        register = self.layer.register_forward_hook
        if self.to_input:
            register = self.layer.register_forward_pre_hook
        handle = register(_eager(capture.hook))
        try:
            with torch.set_grad_enabled(capture.as_leaves and not capture.start_graph):
                output = _run_forward(
                    self.forward_func, inputs, None, additional_forward_args
                )
        finally:
            handle.remove()
        if capture.calls:
            return output
        hint = ""
        if hasattr(self.forward_func, "_orig_mod") or getattr(
            self.forward_func, "_compiled_call_impl", None
        ):
            hint = (
                " (the torch.compile'd model reused a graph traced without the "
                "layer's hook: set torch._dynamo.config.skip_nnmodule_hook_guards "
                "= False before its first call, or explain it before compiling it)"
            )
        raise ValueError(
            "layer: the forward pass never called the explained layer; expected "
            f"a submodule that forward_func runs on every call{hint}"
        )
