"""ROAD: RemOve And Debias, a perturbation metric without removal artefacts.

Rong et al. ("A Consistent and Efficient Evaluation Strategy for Attribution
Methods", ICML 2022) replace the removed pixels not by a constant, which makes
inputs the model never saw and lets the *shape* of the removed region leak
the map's ranking, but by a *noisy linear imputation* from their neighbours:
every removed pixel is the weighted mean of its 8 neighbours, direct
neighbours with weight 1/6 and diagonal ones with weight 1/12 (weights
renormalised at the image border, where neighbours are missing), which for
all removed pixels together is one sparse linear system, solved here with
:func:`scipy.sparse.linalg.spsolve`; Gaussian noise is then added to the
imputed pixels.

Two orders are scored at several removal percentages: *MoRF* (most relevant
first: a faithful map makes the score drop fast, lower is better) and *LeRF*
(least relevant first: the score should stay high, higher is better).
:func:`road_scores` gives, per image, the mean of the target's softmax
probability over the percentages for both orders, batched like the
deletion/insertion curves of :mod:`captum_igcam.evaluation.metrics`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Literal

import numpy as np
import torch
from scipy import sparse
from scipy.sparse.linalg import spsolve
from torch import Tensor

from captum_igcam.app.settings import check_positive_int
from captum_igcam.evaluation.metrics import pixel_ranks

#: Neighbour offsets (row, column) and their weights in the imputation.
NEIGHBOUR_WEIGHTS = (
    ((-1, 0), 1 / 6),
    ((1, 0), 1 / 6),
    ((0, -1), 1 / 6),
    ((0, 1), 1 / 6),
    ((-1, -1), 1 / 12),
    ((-1, 1), 1 / 12),
    ((1, -1), 1 / 12),
    ((1, 1), 1 / 12),
)
#: Standard deviation of the noise added to imputed pixels (ROAD's default),
#: in model-input units.
ROAD_NOISE_STD = 0.01
#: Percentages of pixels removed: every other point of the paper's 10 %
#: grid (each point costs one sparse solve per image, map and order).
ROAD_PERCENTAGES = (10, 30, 50, 70, 90)
ORDERS = ("morf", "lerf")

ForwardFunc = Callable[[Tensor], Tensor]


def linear_imputation(image: Tensor, removed: Tensor) -> Tensor:
    """Fill removed pixels with the weighted mean of their 8 neighbours.

    Each removed pixel ``p`` satisfies
    ``x_p * sum_q w_q = sum_q w_q x_q`` over its neighbours ``q`` inside the
    image (weights :data:`NEIGHBOUR_WEIGHTS`); neighbours that are kept
    contribute their value, removed ones are unknowns, so all removed pixels
    are solved together as one sparse system (one right-hand side per
    channel).

    Args:
        image (Tensor): ``(C, H, W)`` image.
        removed (Tensor): ``(H, W)`` boolean mask of the pixels to replace.

    Returns:
        Tensor: The image with removed pixels imputed (same dtype and device).

    Raises:
        ValueError: If the shapes do not match or every pixel is removed
            (the system would have no known value to start from).

    Example::

        >>> image = torch.tensor([[[6.0, 6.0, 6.0], [6.0, 0.0, 6.0], [6.0, 6.0, 6.0]]])
        >>> removed = torch.zeros(3, 3, dtype=torch.bool)
        >>> removed[1, 1] = True
        >>> linear_imputation(image, removed)[0, 1, 1]
        tensor(6.)
    """
    if image.dim() != 3 or removed.shape != image.shape[1:]:
        raise ValueError(
            f"removed: expected an (H, W) mask for an image of shape "
            f"{tuple(image.shape)} (C, H, W), got shape {tuple(removed.shape)}"
        )
    mask = removed.cpu().numpy().astype(bool)
    if mask.all():
        raise ValueError("removed: at least one pixel must be kept")
    if not mask.any():
        return image.clone()
    height, width = mask.shape
    values = image.detach().cpu().double().numpy().reshape(image.shape[0], -1)
    unknown = np.flatnonzero(mask)
    index_of = np.full(mask.size, -1)
    index_of[unknown] = np.arange(len(unknown))
    rows, cols = np.divmod(unknown, width)
    diagonal = np.zeros(len(unknown))
    right = np.zeros((len(unknown), image.shape[0]))
    entries = ([], [], [])  # row, column, value of the off-diagonal terms
    for (dr, dc), weight in NEIGHBOUR_WEIGHTS:
        r, c = rows + dr, cols + dc
        inside = (r >= 0) & (r < height) & (c >= 0) & (c < width)
        equation = np.flatnonzero(inside)
        neighbour = r[inside] * width + c[inside]
        diagonal[equation] += weight
        known = index_of[neighbour] < 0
        right[equation[known]] += weight * values[:, neighbour[known]].T
        entries[0].append(equation[~known])
        entries[1].append(index_of[neighbour[~known]])
        entries[2].append(np.full(int((~known).sum()), -weight))
    size = len(unknown)
    system = sparse.coo_matrix(
        (
            np.concatenate([diagonal, *entries[2]]),
            (
                np.concatenate([np.arange(size), *entries[0]]),
                np.concatenate([np.arange(size), *entries[1]]),
            ),
        ),
        shape=(size, size),
    ).tocsc()
    solution = np.asarray(spsolve(system, right)).reshape(size, -1)
    filled = values.copy()
    filled[:, unknown] = solution.T
    return torch.as_tensor(filled.reshape(image.shape)).to(image)


def noisy_linear_imputation(
    image: Tensor,
    removed: Tensor,
    noise_std: float = ROAD_NOISE_STD,
    generator: torch.Generator | None = None,
) -> Tensor:
    """ROAD's imputation: :func:`linear_imputation` plus Gaussian noise.

    Args:
        image (Tensor): ``(C, H, W)`` image.
        removed (Tensor): ``(H, W)`` boolean mask of the pixels to replace.
        noise_std (float, optional): Standard deviation of the noise added to
            each channel of each imputed pixel.
            Default: 0.01
        generator (torch.Generator, optional): Source of the noise (CPU).
            Default: None (torch's global generator)

    Returns:
        Tensor: The imputed image; kept pixels are unchanged.
    """
    if noise_std < 0:
        raise ValueError(f"noise_std: expected a value >= 0, got {noise_std!r}")
    filled = linear_imputation(image, removed)
    noise = torch.randn(filled.shape, generator=generator, dtype=filled.dtype)
    mask = removed.to(filled.device)
    return filled + noise_std * noise.to(filled.device) * mask


def road_curve(
    forward_func: ForwardFunc,
    inputs: Tensor,
    maps: Tensor,
    order: Literal["morf", "lerf"],
    target: Tensor,
    percentages: Sequence[float] = ROAD_PERCENTAGES,
    noise_std: float = ROAD_NOISE_STD,
    batch_size: int = 64,
    seed: int = 0,
) -> Tensor:
    """Softmax probability of the target after ROAD removal at each percentage.

    Args:
        forward_func (Callable): Model, ``(N, C, H, W) -> (N, classes)``.
        inputs (Tensor): ``(N, C, H, W)`` model inputs.
        maps (Tensor): ``(N, 1, h, w)`` or ``(N, h, w)`` saliency maps.
        order (str): ``"morf"`` removes the most relevant pixels first,
            ``"lerf"`` the least relevant.
        target (Tensor): ``(N,)`` classes to score.
        percentages (sequence of float, optional): Shares of the pixels
            removed, in percent, each in (0, 100).
            Default: :data:`ROAD_PERCENTAGES` (10, 30, 50, 70, 90)
        noise_std (float, optional): Imputation noise.
            Default: 0.01
        batch_size (int, optional): Most imputed inputs per forward pass
            (imputed images are made one pass at a time, so memory stays
            bounded by it).
            Default: 64
        seed (int, optional): Seed of the tie order and of the noise.
            Default: 0

    Returns:
        Tensor: ``(N, len(percentages))`` probabilities.

    Raises:
        ValueError: For an unknown order, percentages outside (0, 100) or a
            non-positive batch size.
    """
    if order not in ORDERS:
        raise ValueError(f"order: expected 'morf' or 'lerf', got {order!r}")
    check_positive_int("batch_size", batch_size)
    if not percentages or not all(0 < p < 100 for p in percentages):
        raise ValueError(
            f"percentages: expected values in (0, 100), got {list(percentages)!r}"
        )
    size = (int(inputs.shape[2]), int(inputs.shape[3]))
    ranks = pixel_ranks(maps, size, seed)
    if order == "lerf":
        ranks = size[0] * size[1] - 1 - ranks
    counts = [round(p / 100 * size[0] * size[1]) for p in percentages]
    generator = torch.Generator().manual_seed(seed)
    jobs = [(i, count) for i in range(len(inputs)) for count in counts]
    scores = []
    for chunk in _chunks(jobs, batch_size):
        batch = torch.stack(
            [
                noisy_linear_imputation(
                    inputs[i], ranks[i] < count, noise_std, generator
                )
                for i, count in chunk
            ]
        )
        rows = torch.tensor([i for i, _ in chunk], device=inputs.device)
        with torch.no_grad():
            probabilities = forward_func(batch).softmax(dim=1)
        scores.append(probabilities.gather(1, target[rows].unsqueeze(1)).squeeze(1))
    return torch.cat(scores).view(len(inputs), len(counts))


def road_scores(
    forward_func: ForwardFunc,
    inputs: Tensor,
    maps: Tensor,
    target: Tensor,
    **kwargs: object,
) -> dict[str, Tensor]:
    """ROAD's MoRF and LeRF scores: mean probability over the percentages.

    Args:
        forward_func (Callable): Model, ``(N, C, H, W) -> (N, classes)``.
        inputs (Tensor): ``(N, C, H, W)`` model inputs.
        maps (Tensor): ``(N, 1, h, w)`` or ``(N, h, w)`` saliency maps.
        target (Tensor): ``(N,)`` classes to score.
        **kwargs: ``percentages``, ``noise_std``, ``batch_size`` and ``seed``
            of :func:`road_curve`.

    Returns:
        dict[str, Tensor]: ``"road_morf"`` (lower is more faithful) and
        ``"road_lerf"`` (higher is more faithful), ``(N,)`` each.

    Example::

        >>> scores = road_scores(model, inputs, maps, target, percentages=(20, 50, 80))
        >>> scores["road_lerf"] - scores["road_morf"]  # larger: a more faithful map
    """
    return {
        f"road_{order}": road_curve(
            forward_func, inputs, maps, order, target, **kwargs
        ).mean(dim=1)
        for order in ORDERS
    }


def _chunks(items: list, size: int) -> Iterator[list]:
    for first in range(0, len(items), size):
        yield items[first : first + size]
