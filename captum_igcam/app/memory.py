"""Chunk sizes of model passes, derived from a memory budget.

A path method's pass keeps, for every path point in it, what autograd saves
for the backward pass (of the whole model, or of the part after the layer for
the layer-space method); the deletion/insertion curves run no-grad passes whose
memory follows the largest activation. :func:`chunk_sizes` measures both for
one example of the model (one small pass each) and divides the budget by
them, so that no pass of the path methods in
:data:`~captum_igcam.app.methods.METHODS` (explain, explain-dataset) or of
the benchmark's loop needs much more than the budget, whatever the model and
input size.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from captum_igcam.app.settings import DEFAULT_MEMORY_BUDGET_MB, check_positive_int

#: Most perturbed images per curve pass: larger passes are no faster on a CPU.
MAX_CURVE_ROWS = 64
#: A backward pass holds about as much again as the forward saved (the
#: gradients of the activations), and the forward's temporaries come on top.
BACKWARD_FACTOR = 2.5
#: A no-grad pass holds a layer's input and output, plus the perturbed
#: batch and the two images it is made from.
NO_GRAD_FACTOR = 3.0


@dataclass(frozen=True)
class ChunkSizes:
    """Rows (examples x path points, or perturbed images) per model pass.

    Args:
        path_rows (int): ``internal_batch_size`` of the path methods.
        curve_rows (int): Perturbed images per no-grad pass of the
            deletion/insertion curves and the masked-confidence scores.
        saved_bytes (int): Bytes autograd saved for one example's backward.
        activation_bytes (int): Bytes of the largest activation of one example.
    """

    path_rows: int
    curve_rows: int
    saved_bytes: int
    activation_bytes: int


def chunk_sizes(
    model: nn.Module,
    example: Tensor,
    budget_mb: int = DEFAULT_MEMORY_BUDGET_MB,
    after: nn.Module | None = None,
) -> ChunkSizes:
    """Rows per pass that keep each pass of ``model`` within ``budget_mb``.

    Args:
        model (nn.Module): The classifier, in eval mode.
        example (Tensor): One model input ``(1, C, H, W)`` (or a batch, of
            which the first example is used).
        budget_mb (int, optional): Memory one pass may use, in MiB.
            Default: :data:`DEFAULT_MEMORY_BUDGET_MB`
        after (nn.Module, optional): A layer of ``model`` whose output the
            path points replace (``LayerSpaceIntegratedGradCam``): a path row
            then holds what the part after it saves, the part before it runs
            once on the example, without a graph.
            Default: None (a path row runs the whole model)

    Returns:
        ChunkSizes: At least one row each; curve rows at most
        :data:`MAX_CURVE_ROWS`.

    Raises:
        ValueError: If ``budget_mb`` is not a positive integer.

    Example::

        >>> sizes = chunk_sizes(bundle.model, inputs[:1], budget_mb=1024)
        >>> settings = dataclasses.replace(
        ...     settings, internal_batch_size=sizes.path_rows)
    """
    check_positive_int("budget_mb", budget_mb)
    example = example[:1].detach()
    budget = budget_mb * 2**20
    saved = _saved_bytes(model, example, after)
    activation = _largest_activation_bytes(model, example)
    return ChunkSizes(
        path_rows=max(1, int(budget / (BACKWARD_FACTOR * max(saved, 1)))),
        curve_rows=max(
            1,
            min(MAX_CURVE_ROWS, int(budget / (NO_GRAD_FACTOR * max(activation, 1)))),
        ),
        saved_bytes=saved,
        activation_bytes=activation,
    )


def _saved_bytes(
    model: nn.Module, example: Tensor, after: nn.Module | None = None
) -> int:
    """Bytes of the tensors autograd saves for one example, parameters
    excepted: for the whole model, or for the part after the layer ``after``
    (whose output starts the graph)."""
    parameters = {p.untyped_storage().data_ptr() for p in model.parameters()}
    storages: dict[int, int] = {}

    def pack(tensor: Tensor) -> Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in parameters:
            storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    def start_graph(module: nn.Module, args: object, output: Tensor) -> Tensor:
        torch.set_grad_enabled(True)
        return output.detach().requires_grad_()

    handle = after.register_forward_hook(start_graph) if after is not None else None
    inputs = example.clone().requires_grad_(after is None)
    try:
        with torch.set_grad_enabled(after is None):
            with torch.autograd.graph.saved_tensors_hooks(pack, _same):
                model(inputs)
    finally:
        if handle is not None:
            handle.remove()
    return sum(storages.values())


def _same(tensor: Tensor) -> Tensor:
    return tensor


def _largest_activation_bytes(model: nn.Module, example: Tensor) -> int:
    """Bytes of the largest tensor a module of ``model`` outputs for one example."""
    largest = example.numel() * example.element_size()

    def record(module: nn.Module, inputs: object, output: object) -> None:
        nonlocal largest
        if isinstance(output, Tensor):
            largest = max(largest, output.numel() * output.element_size())

    handles = [module.register_forward_hook(record) for module in model.modules()]
    try:
        with torch.no_grad():
            model(example)
    finally:
        for handle in handles:
            handle.remove()
    return largest
