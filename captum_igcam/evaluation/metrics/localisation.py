"""Localisation metrics: does the map fall on the annotated objects?

- :func:`pointing_game_hits` / :func:`pointing_game_accuracy`: TorchRay's
  pointing game (Zhang et al., "Top-down Neural Attention by Excitation
  Backprop", ECCV 2016; TorchRay's benchmark code).
- :func:`energy_pointing_game`: energy-based pointing game (Wang et al.,
  "Score-CAM", CVPR-W 2020).
- :func:`localisation_auroc`: the pixel AUROC of the map against the boxes.

Boxes are given per image as an ``(M, 4)`` array of
``(x_min, y_min, x_max, y_max)`` in input pixels, half-open: the box covers
columns ``x_min <= x < x_max`` and rows ``y_min <= y < y_max``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from captum_igcam.evaluation.metrics.resolution import to_input_size

BoxesLike = Tensor | np.ndarray | Sequence[Sequence[float]]

#: TorchRay's pointing-game tolerance, in pixels.
POINTING_TOLERANCE = 15


def box_mask(boxes: BoxesLike, size: tuple[int, int]) -> Tensor:
    """Rasterise boxes into a boolean mask.

    Args:
        boxes (Tensor or array-like): ``(M, 4)`` boxes
            ``(x_min, y_min, x_max, y_max)``, half-open, in pixels. Coordinates
            are rounded to the nearest pixel edge and clipped to the image.
        size (tuple[int, int]): Mask height and width ``(H, W)``.

    Returns:
        Tensor: ``(H, W)`` bool mask, True inside any box.
    """
    corners = _as_boxes(boxes)
    height, width = size
    mask = torch.zeros(height, width, dtype=torch.bool)
    for x_min, y_min, x_max, y_max in corners.round().long().tolist():
        mask[max(y_min, 0) : min(y_max, height), max(x_min, 0) : min(x_max, width)] = (
            True
        )
    return mask


def pointing_game_hits(
    maps: Tensor,
    boxes: Sequence[BoxesLike],
    size: tuple[int, int],
    tolerance: float = POINTING_TOLERANCE,
) -> Tensor:
    r"""Pointing game: does each map's maximum fall on the object?

    Definition (TorchRay's, after Zhang et al. 2016): the map is resized
    bilinearly to ``size`` (TorchRay uses the original image's size, with the
    boxes in the original image's pixels); the point is the first arg-max of
    the resized map (row-major order); it is a hit when the Euclidean
    distance between its pixel and the nearest pixel of the ground-truth
    region (the union of the boxes) is strictly less than ``tolerance``
    pixels, TorchRay's ``(du**2 + dv**2) < tolerance**2``. Objects marked
    difficult are left out by the data sources before this point.

    Args:
        maps (Tensor): ``(N, 1, h, w)`` or ``(N, h, w)`` saliency maps.
        boxes (sequence): One ``(M_i, 4)`` box array per map, in input pixels.
        size (tuple[int, int]): Input height and width ``(H, W)``.
        tolerance (float, optional): Hit radius in input pixels.
            Default: 15 (TorchRay)

    Returns:
        Tensor: ``(N,)`` bool, True for a hit.

    Raises:
        ValueError: If ``boxes`` does not have one entry per map or
            ``tolerance`` is negative.

    Example::

        >>> maps = torch.zeros(1, 100, 100)
        >>> maps[0, 50, 63] = 1.0  # 14 px right of a box ending at column 49
        >>> pointing_game_hits(maps, [[[10, 10, 50, 90]]], (100, 100))
        tensor([True])
        >>> maps[0, 50, 63], maps[0, 50, 64] = 0.0, 1.0  # 15 px: not < 15
        >>> pointing_game_hits(maps, [[[10, 10, 50, 90]]], (100, 100))
        tensor([False])
    """
    if tolerance < 0:
        raise ValueError(f"tolerance: expected a non-negative number, got {tolerance}")
    maps = to_input_size(maps, size)
    _check_boxes_per_map(boxes, maps)
    width = maps.shape[2]
    peaks = maps.flatten(1).argmax(dim=1)
    hits = []
    for peak, image_boxes in zip(peaks.tolist(), boxes, strict=True):
        row, col = divmod(peak, width)
        hits.append(_distance_to_boxes(row, col, _as_boxes(image_boxes)) < tolerance)
    return torch.tensor(hits, dtype=torch.bool)


def pointing_game_accuracy(hits: Tensor, labels: Sequence[int] | Tensor) -> float:
    r"""Pointing-game accuracy averaged over classes, as TorchRay reports it.

    Definition: for each class ``c``, ``acc_c = #hits_c / (#hits_c + #misses_c)``;
    the accuracy is the mean of ``acc_c`` over the classes that occur.

    Args:
        hits (Tensor): ``(N,)`` bool, from :func:`pointing_game_hits`.
        labels (sequence of int or Tensor): ``(N,)`` class of each map.

    Returns:
        float: Accuracy in [0, 1]; NaN when ``hits`` is empty.

    Raises:
        ValueError: If ``labels`` and ``hits`` differ in length.

    Example::

        >>> pointing_game_accuracy(torch.tensor([True, False, True]), [0, 0, 1])
        0.75
    """
    labels = torch.as_tensor(labels)
    if labels.shape != hits.shape:
        raise ValueError(
            f"labels: expected {tuple(hits.shape)} like hits, got {tuple(labels.shape)}"
        )
    if hits.numel() == 0:
        return float("nan")
    per_class = [hits[labels == c].float().mean() for c in labels.unique()]
    return float(torch.stack(per_class).mean())


def energy_pointing_game(
    maps: Tensor, boxes: Sequence[BoxesLike], size: tuple[int, int]
) -> Tensor:
    r"""Energy-based pointing game: share of the map's energy inside the boxes.

    Definition (Wang et al., Score-CAM, 2020): with the non-negative part of
    the map at input resolution, ``L = max(map, 0)``,

    .. math::
        \mathrm{EBPG} = \frac{\sum_{p \in \mathrm{boxes}} L_p}{\sum_p L_p}.

    A map with no positive value puts no energy in the boxes and scores 0.

    Args:
        maps (Tensor): ``(N, 1, h, w)`` or ``(N, h, w)`` saliency maps.
        boxes (sequence): One ``(M_i, 4)`` box array per map, in input pixels.
        size (tuple[int, int]): Input height and width ``(H, W)``.

    Returns:
        Tensor: ``(N,)`` shares in [0, 1].

    Raises:
        ValueError: If ``boxes`` does not have one entry per map.

    Example::

        >>> maps = torch.ones(1, 10, 10)
        >>> energy_pointing_game(maps, [[[0, 0, 5, 10]]], (10, 10))
        tensor([0.5000])
    """
    maps = to_input_size(maps, size)
    _check_boxes_per_map(boxes, maps)
    energy = maps.clamp(min=0)
    masks = torch.stack([box_mask(b, size) for b in boxes]).to(maps.device)
    inside = (energy * masks).flatten(1).sum(1)
    total = energy.flatten(1).sum(1)
    return torch.where(total > 0, inside / total.clamp(min=1e-30), 0.0)


def localisation_auroc(
    maps: Tensor, boxes: Sequence[BoxesLike], size: tuple[int, int]
) -> Tensor:
    r"""Pixel AUROC of the map against the box mask: a rank-only localisation score.

    Definition: the probability that a pixel inside the boxes has a higher
    map value than a pixel outside, ties counting one half; the Mann-Whitney
    statistic ``U / (n_in * n_out)`` of the map values (as
    :func:`scipy.stats.mannwhitneyu` computes it, with average ranks for
    ties). Unlike EBPG it is unchanged by adding a constant to the map or by
    any increasing transform of it, so a uniform offset that acts as a
    threshold cannot move it. 0.5 is chance, 1 a map whose every in-box
    pixel outranks every pixel outside.

    Args:
        maps (Tensor): ``(N, 1, h, w)`` or ``(N, h, w)`` saliency maps.
        boxes (sequence): One ``(M_i, 4)`` box array per map, in pixels of
            ``size``.
        size (tuple[int, int]): Height and width ``(H, W)`` the maps are
            resized to.

    Returns:
        Tensor: ``(N,)`` AUROCs in [0, 1]; NaN where the boxes cover no pixel
        or every pixel.

    Raises:
        ValueError: If ``boxes`` does not have one entry per map.

    Example::

        >>> maps = torch.zeros(1, 10, 10)
        >>> maps[0, :, :5] = 1.0  # high on the left half, the box's half
        >>> localisation_auroc(maps, [[[0, 0, 5, 10]]], (10, 10))
        tensor([1.])
    """
    maps = to_input_size(maps, size)
    _check_boxes_per_map(boxes, maps)
    masks = torch.stack([box_mask(b, size) for b in boxes]).to(maps.device)
    values, inside = maps.flatten(1).double(), masks.flatten(1)
    order = values.argsort(dim=1)
    values, inside = values.gather(1, order), inside.gather(1, order)
    # Average rank (1-based) of each run of equal values.
    new_run = torch.ones_like(inside)
    new_run[:, 1:] = values[:, 1:] != values[:, :-1]
    run = new_run.long().cumsum(dim=1) - 1
    positions = torch.arange(1, values.shape[1] + 1, dtype=torch.float64)
    positions = positions.to(maps.device).expand_as(values)
    first = torch.full_like(values, float("inf")).scatter_reduce(
        1, run, positions, "amin"
    )
    last = torch.zeros_like(values).scatter_reduce(1, run, positions, "amax")
    ranks = ((first + last) / 2).gather(1, run)
    n_in = inside.sum(dim=1).double()
    n_out = inside.shape[1] - n_in
    u_statistic = (ranks * inside).sum(dim=1) - n_in * (n_in + 1) / 2
    auroc = u_statistic / (n_in * n_out)
    return torch.where((n_in > 0) & (n_out > 0), auroc, float("nan")).float()


def box_area_fraction(boxes: BoxesLike, size: tuple[int, int]) -> float:
    """Share of the image covered by the union of the boxes.

    Args:
        boxes (Tensor or array-like): ``(M, 4)`` boxes, half-open, in pixels.
        size (tuple[int, int]): Image height and width ``(H, W)``.

    Returns:
        float: Fraction in [0, 1], for reports by object size.

    Example::

        >>> box_area_fraction([[0, 0, 5, 10]], (10, 10))
        0.5
    """
    return float(box_mask(boxes, size).float().mean())


def _as_boxes(boxes: BoxesLike) -> Tensor:
    corners = torch.as_tensor(np.asarray(boxes, dtype=np.float64)).float()
    if corners.numel() == 0:
        return corners.reshape(0, 4)
    if corners.dim() != 2 or corners.shape[1] != 4:
        raise ValueError(
            "boxes: expected (M, 4) boxes (x_min, y_min, x_max, y_max), "
            f"got shape {tuple(corners.shape)}"
        )
    return corners


def _distance_to_boxes(row: int, col: int, corners: Tensor) -> float:
    """Euclidean distance from a pixel to the nearest pixel of half-open boxes."""
    if len(corners) == 0:
        return float("inf")
    corners = corners.round()
    dx = (corners[:, 0] - col).clamp(min=0) + (col + 1 - corners[:, 2]).clamp(min=0)
    dy = (corners[:, 1] - row).clamp(min=0) + (row + 1 - corners[:, 3]).clamp(min=0)
    return float(torch.sqrt(dx**2 + dy**2).min())


def _check_boxes_per_map(boxes: Sequence[BoxesLike], maps: Tensor) -> None:
    if len(boxes) != len(maps):
        raise ValueError(
            f"boxes: expected one box array per map ({len(maps)}), got {len(boxes)}"
        )
