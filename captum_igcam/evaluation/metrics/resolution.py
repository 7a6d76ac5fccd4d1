"""Maps at the model input's resolution, where every metric scores them."""

from __future__ import annotations

from torch import Tensor

from captum_igcam.app.maps import upsample


def to_input_size(maps: Tensor, size: tuple[int, int]) -> Tensor:
    """Bring a batch of maps to ``(N, H, W)`` at the input resolution.

    Args:
        maps (Tensor): ``(N, 1, h, w)`` or ``(N, h, w)`` maps.
        size (tuple[int, int]): Input height and width ``(H, W)``.

    Returns:
        Tensor: ``(N, H, W)`` float maps, upsampled bilinearly with
        :func:`captum_igcam.app.maps.upsample` when ``(h, w) != (H, W)``.

    Raises:
        ValueError: If ``maps`` has another shape.
    """
    if maps.dim() == 4 and maps.shape[1] == 1:
        maps = maps[:, 0]
    if maps.dim() != 3:
        raise ValueError(
            f"maps: expected shape (N, 1, h, w) or (N, h, w), got {tuple(maps.shape)}"
        )
    maps = maps.detach().float()
    if tuple(maps.shape[1:]) == tuple(size):
        return maps
    return upsample(maps.unsqueeze(1), size)[:, 0]


def spatial_size(inputs: Tensor) -> tuple[int, int]:
    """Height and width of ``(N, C, H, W)`` inputs (else a ValueError)."""
    if inputs.dim() != 4:
        raise ValueError(
            f"inputs: expected shape (N, C, H, W), got {tuple(inputs.shape)}"
        )
    return int(inputs.shape[2]), int(inputs.shape[3])
