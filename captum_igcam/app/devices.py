"""Where a model runs: :func:`device_of`."""

from __future__ import annotations

import torch
from torch import nn


def device_of(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (CPU for a parameterless one).

    Args:
        model (nn.Module): The model.

    Returns:
        torch.device: Where its inputs should be.

    Example::

        >>> device_of(torch.nn.Linear(2, 2))
        device(type='cpu')
    """
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")
