"""Metrics that score saliency maps: localisation and faithfulness.

Every function takes a batch of maps shaped ``(N, 1, h, w)`` or ``(N, h, w)``,
at the explained layer's resolution or at the input's. Maps smaller than the
input are upsampled bilinearly to the input size first (the protocol of
Grad-CAM and of the Integrated Grad-CAM paper), so layer maps and input-space
maps are scored on the same pixel grid.

Localisation (needs ground-truth boxes):

- :func:`pointing_game_hits` / :func:`pointing_game_accuracy`: TorchRay's
  pointing game (Zhang et al., "Top-down Neural Attention by Excitation
  Backprop", ECCV 2016; TorchRay's benchmark code).
- :func:`energy_pointing_game`: energy-based pointing game (Wang et al.,
  "Score-CAM", CVPR-W 2020).

Faithfulness (any image, target = the model's prediction by default):

- :func:`masked_confidence`, :func:`average_drop`,
  :func:`increase_in_confidence`: Chattopadhay et al., "Grad-CAM++", WACV 2018.
- :func:`perturbation_curve`, :func:`deletion_auc`, :func:`insertion_auc`:
  Petsiuk et al., "RISE", BMVC 2018.
- :func:`input_space_attributions` and :func:`input_space_explanation` adapt a
  layer-resolution method to Captum's :func:`captum.metrics.infidelity` and
  :func:`captum.metrics.sensitivity_max`; :func:`noisy_perturbation` is a
  perturbation for ``infidelity``.

Boxes are given per image as an ``(M, 4)`` array of
``(x_min, y_min, x_max, y_max)`` in input pixels, half-open: the box covers
columns ``x_min <= x < x_max`` and rows ``y_min <= y < y_max``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np
import torch
from torch import Tensor
from torchvision.transforms.v2.functional import gaussian_blur

from captum_igcam.app.maps import normalize, upsample
from captum_igcam.app.settings import check_positive_int

ForwardFunc = Callable[[Tensor], Tensor]
BoxesLike = Tensor | np.ndarray | Sequence[Sequence[float]]

#: TorchRay's pointing-game tolerance, in pixels.
POINTING_TOLERANCE = 15
#: RISE's blur for the insertion canvas: kernel size and standard deviation.
RISE_BLUR_SIZE = 11
RISE_BLUR_SIGMA = 5.0


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


def predicted_target(forward_func: ForwardFunc, inputs: Tensor) -> Tensor:
    """The class each input is predicted as (arg-max of the model's output).

    Args:
        forward_func (Callable): Model, ``(N, C, H, W) -> (N, classes)``.
        inputs (Tensor): Model inputs.

    Returns:
        Tensor: ``(N,)`` long class indices.
    """
    with torch.no_grad():
        return forward_func(inputs).argmax(dim=1)


def masked_confidence(
    forward_func: ForwardFunc,
    inputs: Tensor,
    maps: Tensor,
    target: Tensor | None = None,
    apply_softmax: bool = True,
) -> tuple[Tensor, Tensor]:
    """Class scores of each input and of the input multiplied by its map.

    The map is upsampled to the input size, min-max normalised to [0, 1] per
    image (:func:`captum_igcam.app.maps.normalize`) and multiplied into every
    channel of the model input (so a map value of 0 sets the model input to
    0, the usual IG baseline).

    Args:
        forward_func (Callable): Model, ``(N, C, H, W) -> (N, classes)``.
        inputs (Tensor): ``(N, C, H, W)`` model inputs.
        maps (Tensor): ``(N, 1, h, w)`` or ``(N, h, w)`` saliency maps.
        target (Tensor, optional): ``(N,)`` classes to score.
            Default: None (the model's prediction on ``inputs``)
        apply_softmax (bool, optional): Score with softmax probabilities
            (the published protocol); ``False`` uses the raw outputs.
            Default: True

    Returns:
        tuple[Tensor, Tensor]: ``(Y, O)``, each ``(N,)``: the score of the
        target on the inputs and on the masked inputs.
    """
    saliency = normalize(to_input_size(maps, _spatial_size(inputs)))
    masked = inputs * saliency.unsqueeze(1)
    scores = _scores(forward_func, torch.cat([inputs, masked]), apply_softmax)
    original, on_masked = scores.split(len(inputs))
    if target is None:
        target = original.argmax(dim=1)
    target = _resolve_target(forward_func, inputs, target)
    return _pick(original, target), _pick(on_masked, target)


def average_drop(original: Tensor, masked: Tensor) -> Tensor:
    r"""Per-image drop in confidence, in percent (Grad-CAM++'s Average Drop %).

    Definition: ``100 * max(0, Y - O) / Y``; its mean over images is the
    Average Drop %. Lower is better.

    Args:
        original (Tensor): ``(N,)`` scores ``Y`` on the inputs.
        masked (Tensor): ``(N,)`` scores ``O`` on the masked inputs.

    Returns:
        Tensor: ``(N,)`` drops in percent.

    Example::

        >>> average_drop(torch.tensor([0.8, 0.5]), torch.tensor([0.4, 0.6]))
        tensor([50.,  0.])
    """
    _check_same_shape(original, masked)
    return 100.0 * (original - masked).clamp(min=0) / original


def increase_in_confidence(original: Tensor, masked: Tensor) -> Tensor:
    """Per-image indicator of a confidence increase, in percent (Grad-CAM++).

    Definition: ``100 * [O > Y]``; its mean over images is the Increase in
    Confidence %. Higher is better.

    Args:
        original (Tensor): ``(N,)`` scores ``Y`` on the inputs.
        masked (Tensor): ``(N,)`` scores ``O`` on the masked inputs.

    Returns:
        Tensor: ``(N,)`` values, 100 where the score rose and 0 elsewhere.

    Example::

        >>> increase_in_confidence(torch.tensor([0.8, 0.5]), torch.tensor([0.4, 0.6]))
        tensor([  0., 100.])
    """
    _check_same_shape(original, masked)
    return 100.0 * (masked > original).float()


def perturbation_curve(
    forward_func: ForwardFunc,
    inputs: Tensor,
    maps: Tensor,
    mode: Literal["deletion", "insertion"],
    target: Tensor | None = None,
    n_steps: int = 50,
    baselines: Tensor | float | None = None,
    batch_size: int = 64,
    apply_softmax: bool = True,
    seed: int = 0,
) -> Tensor:
    r"""Score of the target as pixels are deleted or inserted in map order.

    Definition (Petsiuk et al., RISE, 2018): pixels are ranked by the map at
    input resolution, highest first; pixels with equal map values are ranked
    in a random order drawn from ``seed`` (the same order for every image, so
    a map with many exact zeros gains nothing from where they lie). At step
    ``i = 0..n_steps`` the first ``round(i * P / n_steps)`` of the ``P``
    pixels are, for ``"deletion"``, replaced by the baseline in the input,
    and for ``"insertion"``, copied from the input onto the baseline. All
    channels of a pixel move together. As in RISE, deletion starts from the
    input and ends at zeros, and insertion starts from a blurred copy of the
    input (:func:`blurred_canvas`).

    Args:
        forward_func (Callable): Model, ``(N, C, H, W) -> (N, classes)``.
        inputs (Tensor): ``(N, C, H, W)`` model inputs.
        maps (Tensor): ``(N, 1, h, w)`` or ``(N, h, w)`` saliency maps.
        mode (str): ``"deletion"`` or ``"insertion"``.
        target (Tensor, optional): ``(N,)`` classes to score.
            Default: None (the model's prediction on ``inputs``)
        n_steps (int, optional): Number of steps; the curve has
            ``n_steps + 1`` points.
            Default: 50
        baselines (Tensor or float, optional): What deleted pixels become and
            what insertion starts from; a scalar or a tensor broadcastable to
            ``inputs``.
            Default: None (RISE's: zeros for deletion, the blurred input for
            insertion)
        batch_size (int, optional): Most perturbed inputs per forward pass.
            Default: 64
        apply_softmax (bool, optional): Score with softmax probabilities.
            Default: True
        seed (int, optional): Seed of the order among equal map values.
            Default: 0

    Returns:
        Tensor: ``(N, n_steps + 1)`` scores, step 0 first.

    Raises:
        ValueError: For an unknown ``mode`` or a non-positive ``n_steps`` or
            ``batch_size``.
    """
    if mode not in ("deletion", "insertion"):
        raise ValueError(f"mode: expected 'deletion' or 'insertion', got {mode!r}")
    check_positive_int("n_steps", n_steps)
    check_positive_int("batch_size", batch_size)
    target = _resolve_target(forward_func, inputs, target)
    size = _spatial_size(inputs)
    n_pixels = size[0] * size[1]
    shuffle = torch.randperm(n_pixels, generator=torch.Generator().manual_seed(seed))
    shuffled = to_input_size(maps, size).flatten(1).cpu()[:, shuffle]
    order = shuffle[shuffled.argsort(dim=1, descending=True, stable=True)]
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(n_pixels).expand_as(order).contiguous())
    counts = torch.round(torch.arange(n_steps + 1) * (n_pixels / n_steps)).long()
    if baselines is None:
        baselines = 0.0 if mode == "deletion" else blurred_canvas(inputs)
    baselines = torch.as_tensor(baselines, dtype=inputs.dtype, device=inputs.device)
    baselines = baselines.expand_as(inputs)
    start, end = (inputs, baselines) if mode == "deletion" else (baselines, inputs)

    points = n_steps + 1
    scores = []
    for first in range(0, len(inputs) * points, batch_size):
        flat = torch.arange(first, min(first + batch_size, len(inputs) * points))
        image, step = flat // points, flat % points
        changed = (rank[image] < counts[step].unsqueeze(1)).view(-1, 1, *size)
        batch = torch.where(changed.to(inputs.device), end[image], start[image])
        scores.append(_pick(_scores(forward_func, batch, apply_softmax), target[image]))
    return torch.cat(scores).view(len(inputs), points)


def blurred_canvas(inputs: Tensor) -> Tensor:
    """The inputs blurred as RISE's insertion canvas (Gaussian, size 11, sigma 5).

    Args:
        inputs (Tensor): ``(N, C, H, W)`` model inputs.

    Returns:
        Tensor: The blurred inputs (reflect padding at the borders).
    """
    return gaussian_blur(inputs, [RISE_BLUR_SIZE] * 2, [RISE_BLUR_SIGMA])


def curve_auc(curve: Tensor) -> Tensor:
    """Area under curves sampled at evenly spaced points of [0, 1] (trapezoids).

    Args:
        curve (Tensor): ``(N, K)`` values, ``K >= 2``.

    Returns:
        Tensor: ``(N,)`` areas.

    Example::

        >>> curve_auc(torch.tensor([[1.0, 0.0, 0.0]]))
        tensor([0.2500])
    """
    if curve.dim() != 2 or curve.shape[1] < 2:
        raise ValueError(
            f"curve: expected shape (N, K) with K >= 2, got {tuple(curve.shape)}"
        )
    return torch.trapezoid(curve, dx=1.0 / (curve.shape[1] - 1), dim=1)


def perturbation_auc(
    forward_func: ForwardFunc,
    inputs: Tensor,
    maps: Tensor,
    mode: Literal["deletion", "insertion"],
    **kwargs: object,
) -> Tensor:
    """Area under the deletion or insertion curve (RISE).

    Args:
        forward_func (Callable): Model, ``(N, C, H, W) -> (N, classes)``.
        inputs (Tensor): ``(N, C, H, W)`` model inputs.
        maps (Tensor): ``(N, 1, h, w)`` or ``(N, h, w)`` saliency maps.
        mode (str): ``"deletion"`` (lower means a more faithful map) or
            ``"insertion"`` (higher means a more faithful map).
        **kwargs: ``target``, ``n_steps``, ``baselines``, ``batch_size``,
            ``apply_softmax`` of :func:`perturbation_curve`.

    Returns:
        Tensor: ``(N,)`` areas.
    """
    return curve_auc(perturbation_curve(forward_func, inputs, maps, mode, **kwargs))


def deletion_auc(
    forward_func: ForwardFunc, inputs: Tensor, maps: Tensor, **kwargs: object
) -> Tensor:
    """:func:`perturbation_auc` of the deletion curve; lower is more faithful."""
    return perturbation_auc(forward_func, inputs, maps, "deletion", **kwargs)


def insertion_auc(
    forward_func: ForwardFunc, inputs: Tensor, maps: Tensor, **kwargs: object
) -> Tensor:
    """:func:`perturbation_auc` of the insertion curve; higher is more faithful."""
    return perturbation_auc(forward_func, inputs, maps, "insertion", **kwargs)


def input_space_attributions(maps: Tensor, inputs: Tensor) -> Tensor:
    """Turn maps into attributions shaped like the inputs, for Captum metrics.

    The map is upsampled bilinearly to the input size and repeated over the
    channels, so every channel of a pixel gets the pixel's map value. Use it
    for the ``attributions`` argument of :func:`captum.metrics.infidelity`
    (with ``normalize=True``, as map scales differ between methods).

    Args:
        maps (Tensor): ``(N, 1, h, w)`` or ``(N, h, w)`` maps.
        inputs (Tensor): ``(N, C, H, W)`` inputs the maps explain.

    Returns:
        Tensor: Attributions with the shape, dtype and device of ``inputs``.

    Example::

        >>> attributions = input_space_attributions(maps, inputs)
        >>> infidelity(model, noisy_perturbation(0.1), inputs, attributions,
        ...            target=target, normalize=True)
    """
    upsampled = to_input_size(maps, _spatial_size(inputs)).unsqueeze(1)
    # Contiguous: Captum's metrics ``view`` the attributions.
    expanded = upsampled.expand_as(inputs).contiguous()
    return expanded.to(dtype=inputs.dtype, device=inputs.device)


def input_space_explanation(
    explain: Callable[..., Tensor],
) -> Callable[..., tuple[Tensor]]:
    """Wrap a map-producing function as an explanation function for Captum.

    :func:`captum.metrics.sensitivity_max` calls its explanation function
    with the inputs as a tensor or as a 1-tuple, and iterates over what the
    *unperturbed* call returns: a bare tensor would be iterated over its batch
    rows, silently comparing the wrong maps (captum 0.8-0.9). The wrapper
    accepts both input forms and always returns a 1-tuple holding
    :func:`input_space_attributions` of the maps.

    Args:
        explain (Callable): ``explain(inputs, **kwargs) -> maps`` for a single
            input tensor, e.g. ``LayerGradCam(model, layer).attribute``.

    Returns:
        Callable: ``f(inputs, **kwargs) -> (attributions,)``.

    Example::

        >>> gradcam = LayerGradCam(model, layer)
        >>> sensitivity_max(input_space_explanation(gradcam.attribute),
        ...                 inputs, target=target)
    """

    def explanation(inputs: Tensor | tuple[Tensor], **kwargs: object) -> tuple[Tensor]:
        if isinstance(inputs, tuple):
            if len(inputs) != 1:
                raise ValueError(
                    f"inputs: expected one input tensor, got a tuple of {len(inputs)}"
                )
            (inputs,) = inputs
        return (input_space_attributions(explain(inputs, **kwargs), inputs),)

    return explanation


def noisy_perturbation(std: float) -> Callable[[Tensor], tuple[Tensor, Tensor]]:
    """Gaussian perturbation for :func:`captum.metrics.infidelity`.

    Args:
        std (float): Standard deviation of the noise, in model-input units.

    Returns:
        Callable: ``perturb(inputs) -> (noise, inputs - noise)``, Captum's
        ``(perturbations, perturbed_inputs)`` convention.

    Raises:
        ValueError: If ``std`` is not positive.
    """
    if not std > 0:
        raise ValueError(f"std: expected a positive number, got {std}")

    def perturb(inputs: Tensor) -> tuple[Tensor, Tensor]:
        noise = torch.randn_like(inputs) * std
        return noise, inputs - noise

    return perturb


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


def _check_same_shape(original: Tensor, masked: Tensor) -> None:
    if original.shape != masked.shape:
        raise ValueError(
            f"masked: expected shape {tuple(original.shape)} like original, "
            f"got {tuple(masked.shape)}"
        )


def _spatial_size(inputs: Tensor) -> tuple[int, int]:
    if inputs.dim() != 4:
        raise ValueError(
            f"inputs: expected shape (N, C, H, W), got {tuple(inputs.shape)}"
        )
    return int(inputs.shape[2]), int(inputs.shape[3])


def _scores(forward_func: ForwardFunc, inputs: Tensor, apply_softmax: bool) -> Tensor:
    with torch.no_grad():
        outputs = forward_func(inputs)
    return outputs.softmax(dim=1) if apply_softmax else outputs


def _resolve_target(
    forward_func: ForwardFunc, inputs: Tensor, target: Tensor | None
) -> Tensor:
    if target is None:
        return predicted_target(forward_func, inputs)
    target = torch.as_tensor(target, device=inputs.device).long().reshape(-1)
    if len(target) == 1:
        return target.expand(len(inputs))
    if len(target) != len(inputs):
        raise ValueError(
            f"target: expected one class per input ({len(inputs)}), got {len(target)}"
        )
    return target


def _pick(scores: Tensor, target: Tensor) -> Tensor:
    return scores.gather(1, target.view(-1, 1)).squeeze(1)
