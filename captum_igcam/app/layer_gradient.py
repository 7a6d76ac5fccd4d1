"""Whether a layer makes Integrated Grad-CAM equal to path-averaged CAM.

At a layer followed only by global average pooling and a linear layer (the
embedded EfficientNet-Lite0's default ``_head_activation``, ResNet's
``layer4``), the gradient of a class score is the same at every position of
the layer and for every input. Grad-CAM, XGrad-CAM and HiResCAM then give the
same map (CAM), and Integrated Grad-CAM is the average of ReLU'd CAM maps
along the path: its gradient has nothing to integrate (``docs/peers.md``).
:func:`constant_gradient_note` tells, from one forward and backward pass,
whether the chosen layer is such a layer, for a one-line note.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from captum_igcam.reshapes import ReshapeTransform, to_channel_grid

#: Spread of the gradient over positions, relative to its largest magnitude,
#: below which it counts as constant (float32 rounding is about 1e-7).
RELATIVE_SPREAD = 1e-5


def gradient_is_constant_over_positions(
    model: nn.Module,
    layer: nn.Module,
    inputs: Tensor,
    target: int | Tensor | None,
    reshape_transform: ReshapeTransform | None = None,
) -> bool:
    """Whether the target score's gradient at ``layer`` is the same at every
    position, channel by channel, for every example of ``inputs``.

    One forward and backward pass; the model is left as it was (the hook is
    removed, also on error; parameter gradients are not touched).

    Args:
        model (nn.Module): The model.
        layer (nn.Module): The explained layer.
        inputs (Tensor): ``(N, ...)`` model inputs.
        target (int, Tensor or None): A class (one, or one per example), or
            None for a model that returns one score per example.
        reshape_transform (Callable, optional): The layer tensor's map to
            ``(N, channels, h, w)`` (see :mod:`captum_igcam.reshapes`).
            Default: None

    Returns:
        bool: True when, for every example and channel, the gradient's spread
        over positions is at most :data:`RELATIVE_SPREAD` times its largest
        magnitude (and the gradient is not zero everywhere).

    Example::

        >>> bundle = MethodSettings().load_model()
        >>> gradient_is_constant_over_positions(
        ...     bundle.model, bundle.layer(), torch.rand(1, 3, 224, 224), 281)
        True
    """
    captured: list[Tensor] = []

    def keep(module: nn.Module, args: Any, output: Tensor) -> None:
        captured.append(output)

    handle = layer.register_forward_hook(keep)
    try:
        with torch.enable_grad():
            outputs = model(inputs)
            scores = _scores(outputs, target)
            (gradient,) = torch.autograd.grad(scores.sum(), captured[-1])
    finally:
        handle.remove()
    grid = to_channel_grid(reshape_transform, gradient.detach()).flatten(2)
    scale = float(grid.abs().max())
    if scale == 0:
        return False
    spread = grid.amax(dim=2) - grid.amin(dim=2)
    return bool(spread.max() <= RELATIVE_SPREAD * scale)


def _scores(outputs: Tensor, target: int | Tensor | None) -> Tensor:
    if target is None:
        return outputs.reshape(len(outputs))
    index = torch.as_tensor(target, device=outputs.device).reshape(-1, 1)
    return outputs.gather(1, index.expand(len(outputs), 1))


def constant_gradient_note(
    model: nn.Module,
    layer: nn.Module,
    layer_name: str,
    inputs: Tensor,
    target: int | Tensor | None,
    reshape_transform: ReshapeTransform | None = None,
) -> str | None:
    """A one-line note when Integrated Grad-CAM equals path-averaged CAM.

    For ``explain`` to print once per run (on its first photo) when an
    Integrated Grad-CAM method is among the methods: informative, not a
    warning, since nothing is wrong (the embedded model's default layer is
    such a layer).

    Args:
        model (nn.Module): The model.
        layer (nn.Module): The explained layer.
        layer_name (str): Its dotted name, for the note.
        inputs (Tensor): The first photo's model input.
        target (int, Tensor or None): The explained class.
        reshape_transform (Callable, optional): As for
            :func:`gradient_is_constant_over_positions`.
            Default: None

    Returns:
        str or None: The note, or None when the gradient varies.
    """
    if not gradient_is_constant_over_positions(
        model, layer, inputs, target, reshape_transform
    ):
        return None
    return (
        f"at layer {layer_name} the class score's gradient is the same at every "
        "position, so Integrated Grad-CAM equals the path average of ReLU'd "
        "CAM maps, and Grad-CAM, XGrad-CAM and HiResCAM give one map; explain "
        "an earlier layer for the methods to differ (docs/peers.md)"
    )


__all__ = [
    "RELATIVE_SPREAD",
    "constant_gradient_note",
    "gradient_is_constant_over_positions",
]
