"""Points on the straight line between two tensors, in their memory format."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def memory_format(tensor: Tensor) -> torch.memory_format:
    """The layout new tensors shaped like ``tensor`` should keep.

    ``torch.channels_last`` (or ``channels_last_3d``) when ``tensor`` is
    stored that way and not also contiguous, else ``torch.contiguous_format``.
    """
    if tensor.is_contiguous():
        return torch.contiguous_format
    for layout, dims in ((torch.channels_last, 4), (torch.channels_last_3d, 5)):
        if tensor.dim() == dims and tensor.is_contiguous(memory_format=layout):
            return layout
    return torch.contiguous_format


@torch.no_grad()
def points_on_line(start: Tensor, end: Tensor, alphas: Sequence[float]) -> Tensor:
    """``start + a (end - start)`` for every ``a``, stacked along dimension 0.

    The points keep ``end``'s memory format (e.g. ``torch.channels_last``).
    """
    difference = end - start
    points = torch.empty(
        (len(alphas) * start.shape[0], *start.shape[1:]),
        dtype=start.dtype,
        device=start.device,
        memory_format=memory_format(end),
    )
    for alpha, rows in zip(alphas, points.split(start.shape[0])):
        torch.add(start, difference, alpha=alpha, out=rows)
    return points
