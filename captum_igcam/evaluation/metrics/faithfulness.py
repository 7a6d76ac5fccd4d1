"""Faithfulness metrics: does the model's score follow the map?

- :func:`masked_confidence`, :func:`average_drop`,
  :func:`increase_in_confidence`: Chattopadhay et al., "Grad-CAM++", WACV 2018.
- :func:`perturbation_curve`, :func:`deletion_auc`, :func:`insertion_auc`:
  Petsiuk et al., "RISE", BMVC 2018.

The target is the model's prediction unless given.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Literal

import torch
from torch import Tensor
from torchvision.transforms.v2.functional import gaussian_blur

from captum_igcam.app.maps import normalize
from captum_igcam.app.settings import check_positive_int
from captum_igcam.evaluation.metrics.resolution import spatial_size, to_input_size

ForwardFunc = Callable[[Tensor], Tensor]

#: RISE's blur for the insertion canvas: kernel size and standard deviation.
RISE_BLUR_SIZE = 11
RISE_BLUR_SIGMA = 5.0
#: The perturbation curves, in the order :func:`perturbation_curves` returns.
MODES = ("deletion", "insertion")


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
    masked = masked_inputs(inputs, maps)
    scores = _scores(forward_func, torch.cat([inputs, masked]), apply_softmax)
    original, on_masked = scores.split(len(inputs))
    if target is None:
        target = original.argmax(dim=1)
    target = _resolve_target(forward_func, inputs, target)
    return pick(original, target), pick(on_masked, target)


def masked_inputs(inputs: Tensor, maps: Tensor) -> Tensor:
    """The inputs multiplied by their maps, as Grad-CAM++'s confidence metrics do.

    Args:
        inputs (Tensor): ``(N, C, H, W)`` model inputs.
        maps (Tensor): ``(N, 1, h, w)`` or ``(N, h, w)`` saliency maps,
            upsampled to the input size and min-max normalised to [0, 1] per
            image (:func:`captum_igcam.app.maps.normalize`).

    Returns:
        Tensor: ``(N, C, H, W)``; a map value of 0 sets the input to 0.
    """
    saliency = normalize(to_input_size(maps, spatial_size(inputs)))
    return inputs * saliency.unsqueeze(1).to(inputs.dtype)


def class_scores(
    forward_func: ForwardFunc,
    inputs: Tensor,
    target: Tensor,
    apply_softmax: bool = True,
    batch_size: int = 64,
) -> Tensor:
    """The target's score on each input, in no-grad passes of ``batch_size``.

    Args:
        forward_func (Callable): Model, ``(N, C, H, W) -> (N, classes)``.
        inputs (Tensor): ``(N, C, H, W)`` model inputs.
        target (Tensor): ``(N,)`` classes to score.
        apply_softmax (bool, optional): Score with softmax probabilities.
            Default: True
        batch_size (int, optional): Most inputs per forward pass.
            Default: 64

    Returns:
        Tensor: ``(N,)`` scores.
    """
    check_positive_int("batch_size", batch_size)
    return torch.cat(
        [
            pick(_scores(forward_func, chunk, apply_softmax), chunk_target)
            for chunk, chunk_target in zip(
                inputs.split(batch_size), target.split(batch_size), strict=True
            )
        ]
    )


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
    if mode not in MODES:
        raise ValueError(f"mode: expected 'deletion' or 'insertion', got {mode!r}")
    baselines_of = None if baselines is None else {mode: baselines}
    curves = perturbation_curves(
        forward_func,
        inputs,
        [maps],
        (mode,),
        target,
        n_steps,
        baselines_of,
        batch_size,
        apply_softmax,
        seed,
    )
    return curves[mode][0]


def perturbation_curves(
    forward_func: ForwardFunc,
    inputs: Tensor,
    maps: Sequence[Tensor],
    modes: Sequence[str] = MODES,
    target: Tensor | None = None,
    n_steps: int = 50,
    baselines: Mapping[str, Tensor | float] | None = None,
    batch_size: int = 64,
    apply_softmax: bool = True,
    seed: int = 0,
) -> dict[str, Tensor]:
    r"""Deletion and insertion curves of several maps of the same inputs at once.

    The values are those of :func:`perturbation_curve` for each map and
    mode; the model passes are shared. A curve's first and last points do not
    depend on the map (the input, the baseline, the insertion canvas), so
    each is scored once per image for all maps and modes (the input once for
    deletion's first and insertion's last point), and every other point once:
    ``N * (3 + len(maps) * len(modes) * (n_steps - 1))`` perturbed images in
    passes of ``batch_size``, instead of
    ``N * len(maps) * len(modes) * (n_steps + 1)``.

    Args:
        forward_func (Callable): Model, ``(N, C, H, W) -> (N, classes)``.
        inputs (Tensor): ``(N, C, H, W)`` model inputs.
        maps (sequence of Tensor): One ``(N, 1, h, w)`` or ``(N, h, w)`` map
            batch per method.
        modes (sequence of str, optional): Curves to compute, from
            ``("deletion", "insertion")``.
            Default: both
        target (Tensor, optional): ``(N,)`` classes to score.
            Default: None (the model's prediction on ``inputs``)
        n_steps (int, optional): Number of steps; each curve has
            ``n_steps + 1`` points.
            Default: 50
        baselines (Mapping, optional): Mode -> what deleted pixels become or
            insertion starts from (see :func:`perturbation_curve`); a mode
            left out gets RISE's (zeros, the blurred input).
            Default: None
        batch_size (int, optional): Most perturbed inputs per forward pass.
            Default: 64
        apply_softmax (bool, optional): Score with softmax probabilities.
            Default: True
        seed (int, optional): Seed of the order among equal map values.
            Default: 0

    Returns:
        dict[str, Tensor]: Mode -> ``(len(maps), N, n_steps + 1)`` scores.

    Raises:
        ValueError: For an unknown mode, no maps, or a non-positive
            ``n_steps`` or ``batch_size``.

    Example::

        >>> curves = perturbation_curves(model, inputs, [gradcam_maps, igcam_maps])
        >>> curve_auc(curves["deletion"][1])  # the second method's deletion AUCs
    """
    unknown = [mode for mode in modes if mode not in MODES]
    if unknown or not modes:
        raise ValueError(f"modes: expected names from {MODES}, got {tuple(modes)!r}")
    if not maps:
        raise ValueError("maps: expected at least one map batch")
    check_positive_int("n_steps", n_steps)
    check_positive_int("batch_size", batch_size)
    target = _resolve_target(forward_func, inputs, target)
    size = spatial_size(inputs)
    n_images, n_pixels = len(inputs), size[0] * size[1]
    rank = torch.stack([pixel_ranks(m, size, seed).flatten(1) for m in maps])
    counts = torch.round(torch.arange(n_steps + 1) * (n_pixels / n_steps)).long()
    # Canvases: 0 the inputs, then each mode's baseline; a mode's curve runs
    # from its start canvas to its end canvas.
    canvases = [inputs]
    ends = {}
    for mode in modes:
        given = (baselines or {}).get(mode)
        if given is None:
            given = 0.0 if mode == "deletion" else blurred_canvas(inputs)
        canvases.append(_as_canvas(given, inputs))
        ends[mode] = (0, len(canvases) - 1)[:: 1 if mode == "deletion" else -1]
    canvases = torch.stack(canvases)
    # One row per distinct perturbed image: (start, end, map, image, count).
    rows = [(c, c, 0, i, 0) for c in range(len(canvases)) for i in range(n_images)]
    interior = [
        (*ends[mode], m, i, int(counts[step]))
        for mode in modes
        for m in range(len(maps))
        for i in range(n_images)
        for step in range(1, n_steps)
    ]
    spec = torch.tensor(rows + interior, dtype=torch.long).view(-1, 5)
    scores = torch.cat(
        [
            pick(
                _scores(forward_func, _perturbed(canvases, rank, chunk), apply_softmax),
                target[chunk[:, 3].to(target.device)],
            )
            for chunk in spec.split(batch_size)
        ]
    )
    first_scores = scores[: len(rows)].view(len(canvases), 1, n_images).cpu()
    middle = scores[len(rows) :].view(len(modes), len(maps), n_images, n_steps - 1)
    curves = {}
    for index, mode in enumerate(modes):
        start, end = ends[mode]
        curves[mode] = torch.cat(
            [
                first_scores[start].expand(len(maps), -1).unsqueeze(2),
                middle[index].cpu(),
                first_scores[end].expand(len(maps), -1).unsqueeze(2),
            ],
            dim=2,
        )
    return curves


def pixel_ranks(maps: Tensor, size: tuple[int, int], seed: int = 0) -> Tensor:
    """Rank of every input pixel by map value, highest first.

    Pixels with equal values are ranked in a random order drawn from
    ``seed``, as in :func:`perturbation_curve` and ROAD.

    Args:
        maps (Tensor): ``(N, 1, h, w)`` or ``(N, h, w)`` maps, resized
            bilinearly to ``size``.
        size (tuple[int, int]): Input ``(H, W)``.
        seed (int, optional): Seed of the order among equal values.
            Default: 0

    Returns:
        Tensor: ``(N, H, W)`` ranks, 0 for the most relevant pixel.
    """
    n_pixels = size[0] * size[1]
    shuffle = torch.randperm(n_pixels, generator=torch.Generator().manual_seed(seed))
    shuffled = to_input_size(maps, size).flatten(1).cpu()[:, shuffle]
    order = shuffle[shuffled.argsort(dim=1, descending=True, stable=True)]
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(n_pixels).expand_as(order).contiguous())
    return ranks.view(-1, *size)


def _as_canvas(baselines: Tensor | float, inputs: Tensor) -> Tensor:
    baselines = torch.as_tensor(baselines, dtype=inputs.dtype, device=inputs.device)
    return baselines.expand_as(inputs)


def _perturbed(canvases: Tensor, rank: Tensor, rows: Tensor) -> Tensor:
    """The perturbed images of ``rows`` of ``(start, end, map, image, count)``."""
    changed = rank[rows[:, 2], rows[:, 3]] < rows[:, 4].unsqueeze(1)
    changed = changed.view(len(rows), 1, *canvases.shape[-2:])
    start, end, _, image, _ = rows.to(canvases.device).unbind(1)
    return torch.where(
        changed.to(canvases.device), canvases[end, image], canvases[start, image]
    )


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


def pick(scores: Tensor, target: Tensor) -> Tensor:
    """Each row's score of its target class: ``scores[i, target[i]]``.

    Args:
        scores (Tensor): ``(N, classes)`` scores.
        target (Tensor): ``(N,)`` class indices.

    Returns:
        Tensor: ``(N,)`` scores.
    """
    return scores.gather(1, target.view(-1, 1)).squeeze(1)
