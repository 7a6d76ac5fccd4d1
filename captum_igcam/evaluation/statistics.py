"""Means and paired differences with bootstrap 95% confidence intervals.

All intervals are percentile-bootstrap intervals from
:func:`scipy.stats.bootstrap` (``method="percentile"``). A paired difference
resamples the images once and evaluates both methods on the same resample
(``paired=True``), so the interval accounts for the pairing. Statistics are
either plain means or, for the pointing game as TorchRay reports it, the mean
over classes of the per-class means. NaN values (a metric not defined for an
image, e.g. faithfulness where the model is wrong) are left out, pairwise.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

#: Bootstrap resamples used unless a caller asks for another number.
N_RESAMPLES = 2000
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Estimate:
    """A statistic with a bootstrap 95% confidence interval.

    Args:
        mean (float): The statistic on all images.
        low (float): Lower end of the interval (2.5th percentile).
        high (float): Upper end (97.5th percentile). Both are NaN when fewer
            than two images have a value.
    """

    mean: float
    low: float
    high: float


def estimate(
    values: Sequence[float] | np.ndarray,
    labels: Sequence[object] | None = None,
    n_resamples: int = N_RESAMPLES,
    seed: int = 0,
) -> Estimate:
    """Mean of ``values`` (or mean over classes of the class means) with its CI.

    Args:
        values (sequence of float): One value per image or object.
        labels (sequence, optional): Class of each value; when given, the
            statistic is the mean over classes of the per-class means
            (TorchRay's pointing-game accuracy).
            Default: None (plain mean)
        n_resamples (int, optional): Bootstrap resamples.
            Default: 2000
        seed (int, optional): Seed of the resampling.
            Default: 0

    Returns:
        Estimate: The statistic and its percentile-bootstrap 95% interval.

    Example::

        >>> estimate([1.0, 0.0, 1.0, 1.0], labels=["a", "a", "b", "b"]).mean
        0.75
    """
    return paired_difference(values, None, labels, n_resamples, seed)


def paired_difference(
    first: Sequence[float] | np.ndarray,
    second: Sequence[float] | np.ndarray | None,
    labels: Sequence[object] | None = None,
    n_resamples: int = N_RESAMPLES,
    seed: int = 0,
) -> Estimate:
    """Statistic of ``first`` minus that of ``second`` on the same images.

    Args:
        first (sequence of float): The method's values, one per image.
        second (sequence of float or None): The reference's values on the same
            images, in the same order; ``None`` estimates ``first`` alone.
        labels (sequence, optional): Class of each image, for the mean over
            classes (see :func:`estimate`).
            Default: None
        n_resamples (int, optional): Bootstrap resamples.
            Default: 2000
        seed (int, optional): Seed of the resampling.
            Default: 0

    Returns:
        Estimate: The difference and its paired percentile-bootstrap interval.

    Raises:
        ValueError: If the sequences differ in length.

    Example::

        >>> paired_difference([0.9, 0.8, 0.7], [0.5, 0.6, 0.7]).mean
        0.2
    """
    columns = [np.asarray(first, dtype=np.float64)]
    if second is not None:
        columns.append(np.asarray(second, dtype=np.float64))
    codes = _class_codes(labels, len(columns[0]))
    columns.append(codes.astype(np.float64))
    for name, column in zip(("second", "labels"), columns[1:]):
        if column.shape != columns[0].shape:
            raise ValueError(
                f"{name}: expected {len(columns[0])} values like first, "
                f"got {len(column)}"
            )
    defined = np.all([~np.isnan(column) for column in columns], axis=0)
    columns = [column[defined] for column in columns]
    statistic = _statistic(np.unique(columns[-1]), second is not None)
    mean = float(statistic(*columns, axis=-1))
    if len(columns[0]) < 2:
        return Estimate(mean, float("nan"), float("nan"))
    result = stats.bootstrap(
        columns,
        statistic,
        n_resamples=n_resamples,
        confidence_level=CONFIDENCE,
        method="percentile",
        paired=True,
        vectorized=True,
        rng=np.random.default_rng(seed),
    )
    interval = result.confidence_interval
    return Estimate(mean, float(interval.low), float(interval.high))


def _class_codes(labels: Sequence[object] | None, size: int) -> np.ndarray:
    if labels is None:
        return np.zeros(size, dtype=np.int64)
    _, codes = np.unique(
        np.asarray(labels, dtype=object).astype(str), return_inverse=True
    )
    return codes.reshape(-1)


def _statistic(classes: np.ndarray, paired: bool) -> Callable[..., np.ndarray]:
    """Mean over ``classes`` of class means, of one column or of a difference."""

    def class_mean(values: np.ndarray, codes: np.ndarray, axis: int) -> np.ndarray:
        per_class = []
        for code in classes:
            member = codes == code
            with np.errstate(invalid="ignore", divide="ignore"):
                per_class.append((values * member).sum(axis) / member.sum(axis))
        return np.nanmean(np.stack(per_class), axis=0)

    if paired:
        return lambda first, second, codes, axis: (
            class_mean(first, codes, axis) - class_mean(second, codes, axis)
        )
    return lambda values, codes, axis: class_mean(values, codes, axis)
