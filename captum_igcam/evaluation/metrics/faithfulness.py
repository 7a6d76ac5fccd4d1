"""Faithfulness metrics: does the model's score follow the map?

- :func:`masked_confidence`, :func:`average_drop`,
  :func:`increase_in_confidence`: Chattopadhay et al., "Grad-CAM++", WACV 2018.
- :func:`perturbation_curve`, :func:`deletion_auc`, :func:`insertion_auc`:
  Petsiuk et al., "RISE", BMVC 2018.

The target is the model's prediction unless given.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from torch import Tensor
from torchvision.transforms.v2.functional import gaussian_blur

from captum_igcam.app.settings import check_positive_int
from captum_igcam.evaluation.metrics.resolution import spatial_size, to_input_size
from captum_igcam.maps import normalize

ForwardFunc = Callable[[Tensor], Tensor]

#: RISE's blur for the insertion canvas: kernel size and standard deviation.
RISE_BLUR_SIZE = 11
RISE_BLUR_SIGMA = 5.0


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
    image (:func:`captum_igcam.maps.normalize`) and multiplied into every
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
    saliency = normalize(to_input_size(maps, spatial_size(inputs)))
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
    size = spatial_size(inputs)
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


def _check_same_shape(original: Tensor, masked: Tensor) -> None:
    if original.shape != masked.shape:
        raise ValueError(
            f"masked: expected shape {tuple(original.shape)} like original, "
            f"got {tuple(masked.shape)}"
        )


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
