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
from captum_igcam._checks import bad_type, bad_value

Tensors = tuple[Tensor, ...]


@dataclass
class _Capture:
    """Takes the layer's tensors as fresh leaves during one forward pass (and
    replaces them first, with ``replace``), and hands copies of them on."""

    layer: Module
    start_graph: bool
    replace: Callable[[Tensors], Tensors] | None = None
    thread: int = field(default_factory=threading.get_ident)
    calls: Counter[torch.device] = field(default_factory=Counter)
    leaves: dict[torch.device, Tensors] = field(default_factory=dict)

    def hook(self, module: Module, args: Any, *output: Any) -> Any:
        """A forward hook (``output`` given) or a forward pre-hook."""
        if module is self.layer and threading.get_ident() != self.thread:
            return None  # another thread's forward pass through the same module
        if not output and not args:
            expected = (
                "the explained layer to receive its input as positional arguments"
            )
            raise bad_value("attribute_to_layer_input", expected, "keyword arguments")
        tensors = output[0] if output else args
        is_sequence = isinstance(tensors, (tuple, list))
        items = tuple(tensors) if is_sequence else (tensors,)
        if not all(isinstance(t, Tensor) and t.is_floating_point() for t in items):
            got = [getattr(item, "dtype", type(item).__name__) for item in items]
            where = "output" if output else "input"
            expected = f"floating-point Tensors at the layer's {where} (autograd's)"
            raise bad_type("layer", expected, got, str(got))
        device = items[0].device
        if self.replace and not self.calls[device]:
            items = self.replace(items)
        if self.start_graph:
            torch.set_grad_enabled(True)
        leaves = tuple(item.detach().requires_grad_() for item in items)
        self.calls[device] += 1
        self.leaves[device] = leaves
        # Copies go on: in-place operations downstream change them, not the leaves.
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
            capture = _Capture(self.layer, start, replace)
            output = self._forward(capture, inputs, additional_forward_args)
            has_graph = isinstance(output, Tensor) and output.requires_grad
            if not start or (max(capture.calls.values()) == 1 and has_graph):
                break
            self.start_graph_at_layer = False
        self.layer_calls = max(self.layer_calls, *capture.calls.values())
        if not isinstance(output, Tensor):
            raise bad_type("forward_func", "a Tensor output", output)
        return output, self._gathered(capture)

    def bypasses_layer(self, inputs: Tensors, additional_forward_args: Any) -> bool:
        """Whether a gradient route from ``inputs`` to the output goes around
        the layer: one pass with the layer's tensors cut out of the graph."""
        inputs = tuple(inp.detach().requires_grad_() for inp in inputs)
        with torch.enable_grad():
            capture = _Capture(self.layer, start_graph=False)
            output = self._forward(capture, inputs, additional_forward_args)
            if not (isinstance(output, Tensor) and output.requires_grad):
                return False
            gradients = torch.autograd.grad(output.sum(), inputs, allow_unused=True)
        return any(gradient is not None for gradient in gradients)

    def _gathered(self, capture: _Capture) -> Tensors:
        """The last call's tensors, concatenated over devices in batch order."""
        devices = _sort_key_list(list(capture.leaves), self.device_ids)
        parts = [capture.leaves[device] for device in devices]
        return parts[0] if len(parts) == 1 else tuple(map(torch.cat, zip(*parts)))

    def _forward(
        self, capture: _Capture, inputs: Tensors, additional_forward_args: Any
    ) -> Any:
        """One pass with ``capture``'s hook on the layer; autograd is on from
        the start unless the hook starts it."""
        register = self.layer.register_forward_hook
        if self.to_input:
            register = self.layer.register_forward_pre_hook
        handle = register(_eager(capture.hook))
        try:
            with torch.set_grad_enabled(not capture.start_graph):
                output = _run_forward(
                    self.forward_func, inputs, None, additional_forward_args
                )
        finally:
            handle.remove()
        if capture.calls:
            return output
        remedy = ""
        if hasattr(self.forward_func, "_orig_mod") or getattr(
            self.forward_func, "_compiled_call_impl", None
        ):  # a graph traced without the hook: docs/guarantees.md, torch.compile
            remedy = "set torch._dynamo.config.skip_nnmodule_hook_guards = False"
        got = "one the forward pass never called"
        raise bad_value("layer", "a submodule that forward_func calls", got, remedy)
