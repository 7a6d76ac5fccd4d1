"""How a layer's tensor maps to the spatial grid that Grad-CAM averages over.

Grad-CAM (and Integrated Grad-CAM) read a layer tensor as
``(N, K, *spatial)``: channels in dimension 1, positions after it. A CNN's
feature maps already have that layout. A vision transformer's do not: a ViT
block outputs ``(N, tokens, channels)`` with a class token in front of the
patch tokens, and a Swin stage outputs ``(N, H, W, channels)``, channels
last. Averaging gradients over "every dimension after the second", as
:class:`captum.attr.LayerGradCam` does, would then average over channels.

A *reshape transform* is any callable that takes a layer tensor with the
batch in dimension 0 and returns the same values as ``(N, K, *spatial)``
(it may drop positions, such as the class token, but must not mix them).
The methods apply it to the activations and to the gradients alike, so the
weights are averaged over positions and the map is ``(N, 1, *spatial)``.
This module offers the two layouts of the common vision transformers:

- :func:`vit_tokens` for ViT and DeiT (torchvision ``vit_*``, timm
  ``vit_*`` / ``deit_*``): the layer usually explained is the last block's
  first norm (``encoder.layers[-1].ln_1`` in torchvision,
  ``blocks[-1].norm1`` in timm), the input of the last attention. After it,
  patch tokens no longer reach the class token that the head reads, so their
  gradient at a block's output is zero.
- :func:`channels_last_grid` for Swin (torchvision ``swin_*``, timm
  ``swin_*``): the usual layer is the model's final norm (``norm``), the last
  stage's normalised ``(N, H, W, C)`` output that the head averages over
  positions, the counterpart of a CNN's last feature map.

:func:`to_channel_grid` applies a transform to a layer tensor and checks the
result, as the methods do.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor

from captum_igcam._checks import bad_type, bad_value

ReshapeTransform = Callable[[Tensor], Tensor]


@dataclass(frozen=True)
class TokenGrid:
    """Patch tokens ``(N, prefix + h * w, C)`` to ``(N, C, h, w)``.

    Built by :func:`vit_tokens`, which documents the arguments.
    """

    grid: tuple[int, int] | None
    prefix_tokens: int

    def __call__(self, tokens: Tensor) -> Tensor:
        if tokens.dim() != 3:
            expected = "a (N, tokens, channels) tensor for vit_tokens"
            raise bad_value("reshape_transform", expected, tuple(tokens.shape))
        patches = tokens.shape[1] - self.prefix_tokens
        side = math.isqrt(max(patches, 0))
        height, width = self.grid or (side, side)
        if patches <= 0 or height * width != patches:
            needed = "a square number of" if self.grid is None else height * width
            expected = f"{needed} patch tokens for vit_tokens(grid={self.grid})"
            got = f"{patches} after {self.prefix_tokens} prefix token(s)"
            remedy = "pass grid=(height, width)"
            raise bad_value("reshape_transform", expected, got, remedy)
        positions_last = tokens[:, self.prefix_tokens :].transpose(1, 2)
        return positions_last.unflatten(2, (height, width))


@dataclass(frozen=True)
class ChannelsLast:
    """``(N, *spatial, C)`` to ``(N, C, *spatial)``; see :func:`channels_last_grid`."""

    def __call__(self, tensor: Tensor) -> Tensor:
        if tensor.dim() < 3:
            expected = "a (N, H, W, C) tensor for channels_last_grid"
            raise bad_value("reshape_transform", expected, tuple(tensor.shape))
        return tensor.movedim(-1, 1)


def vit_tokens(
    grid: tuple[int, int] | None = None,
    drop_class_token: bool = True,
    extra_prefix_tokens: int = 0,
) -> TokenGrid:
    r"""
    Reshape transform for a ViT layer's ``(N, tokens, channels)`` output.

    The tokens are ``prefix`` special tokens followed by the patch tokens in
    row-major order (as torchvision and timm lay them out); the patch tokens
    become an ``(N, channels, height, width)`` grid and the prefix tokens are
    left out of both the weights and the map.

    Args:
        grid (tuple[int, int], optional): ``(height, width)`` of the patch
                    grid, e.g. ``(14, 14)`` for a 224 x 224 image and 16 x 16
                    patches. None infers a square grid from the token count.
                    Default: None
        drop_class_token (bool, optional): The first token is a class token.
                    Default: True
        extra_prefix_tokens (int, optional): Further special tokens between
                    the class token and the patches: distillation or register
                    tokens (timm's ``model.num_prefix_tokens - 1``).
                    Default: 0

    Returns:
        TokenGrid: The callable, for ``reshape_transform``.

    Example::

        >>> vit = torchvision.models.vit_b_16().eval()
        >>> igcam = IntegratedLayerGradCam(vit, vit.encoder.layers[-1].ln_1)
        >>> maps = igcam.attribute(images, target=281,
        ...                        reshape_transform=vit_tokens())  # Nx1x14x14
    """
    if grid is not None and (
        len(grid) != 2 or not all(isinstance(s, int) and s > 0 for s in grid)
    ):
        raise bad_value("grid", "(height, width) as two positive integers", grid)
    if not isinstance(extra_prefix_tokens, int) or extra_prefix_tokens < 0:
        expected = "a non-negative integer"
        raise bad_value("extra_prefix_tokens", expected, repr(extra_prefix_tokens))
    prefix = int(bool(drop_class_token)) + extra_prefix_tokens
    return TokenGrid(tuple(grid) if grid is not None else None, prefix)


def channels_last_grid() -> ChannelsLast:
    r"""
    Reshape transform for channels-last layers such as Swin's ``(N, H, W, C)``.

    Moves the last dimension to dimension 1: ``(N, *spatial, C)`` becomes
    ``(N, C, *spatial)``.

    Returns:
        ChannelsLast: The callable, for ``reshape_transform``.

    Example::

        >>> swin = torchvision.models.swin_t().eval()
        >>> igcam = IntegratedLayerGradCam(swin, swin.norm)
        >>> maps = igcam.attribute(images, target=281,
        ...                        reshape_transform=channels_last_grid())  # Nx1x7x7
    """
    return ChannelsLast()


def check_reshape_transform(reshape_transform: object) -> None:
    """Raise a TypeError unless ``reshape_transform`` is None or callable."""
    if reshape_transform is not None and not callable(reshape_transform):
        expected = "None or a callable mapping a layer tensor to (N, channels, ...)"
        raise bad_type("reshape_transform", expected, reshape_transform)


def to_channel_grid(
    reshape_transform: ReshapeTransform | None, tensor: Tensor
) -> Tensor:
    """Apply ``reshape_transform`` (None: keep the tensor) and check its result.

    Args:
        reshape_transform (Callable, optional): See the module docstring.
        tensor (Tensor): A layer tensor (activations or gradients), batch first.

    Returns:
        Tensor: The tensor as ``(N, K, *spatial)``.

    Raises:
        ValueError: If the transform does not return a tensor with the same
            batch size.
    """
    if reshape_transform is None:
        return tensor
    reshaped = reshape_transform(tensor)
    shape = getattr(reshaped, "shape", ())
    if not isinstance(reshaped, Tensor) or len(shape) < 2 or shape[0] != len(tensor):
        expected = (
            "it to return a (N, channels, *spatial) Tensor with the batch size "
            f"N = {len(tensor)} of the layer's {tuple(tensor.shape)}"
        )
        got = f"{type(reshaped).__name__} {tuple(shape)}"
        raise bad_value("reshape_transform", expected, got)
    return reshaped


__all__ = [
    "ChannelsLast",
    "ReshapeTransform",
    "TokenGrid",
    "channels_last_grid",
    "check_reshape_transform",
    "to_channel_grid",
    "vit_tokens",
]
