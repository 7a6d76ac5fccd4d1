"""Bootstrap statistics: what the docs promise, on data with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from captum_igcam.evaluation import statistics


def test_mean_interval_matches_the_normal_approximation() -> None:
    # 400 coin flips with p = 0.3: the 95% interval of the mean has a half
    # width of about 1.96 * sqrt(0.3 * 0.7 / 400) = 0.045.
    values = np.zeros(400)
    values[:120] = 1.0
    result = statistics.estimate(values, n_resamples=4000)
    assert result.mean == pytest.approx(0.3)
    assert result.low < 0.3 < result.high
    assert (result.high - result.low) / 2 == pytest.approx(0.0449, rel=0.15)


def test_class_mean_weights_classes_equally() -> None:
    values = [1, 0, 0, 1, 1]
    labels = ["cat", "cat", "cat", "cup", "cup"]
    result = statistics.estimate(values, labels)
    assert result.mean == pytest.approx((1 / 3 + 1) / 2)  # not the image mean 0.6
    assert 0.0 <= result.low <= result.mean <= result.high <= 1.0


def test_paired_difference_accounts_for_the_pairing() -> None:
    rng = np.random.default_rng(0)
    reference = rng.uniform(0, 1, 200)  # images differ a lot...
    method = reference + 0.02 + rng.normal(0, 0.01, 200)  # ...the methods little
    paired = statistics.paired_difference(method, reference)
    assert paired.mean == pytest.approx(0.02, abs=0.003)
    assert 0.0 < paired.low < 0.02 < paired.high < 0.04
    # The two means' own intervals overlap almost completely.
    first, second = statistics.estimate(method), statistics.estimate(reference)
    assert first.low < second.high
    constant = statistics.paired_difference(reference + 0.05, reference)
    assert constant.low == pytest.approx(0.05) and constant.high == pytest.approx(0.05)


def test_nan_pairs_are_left_out_and_tiny_samples_have_no_interval() -> None:
    first = [0.5, float("nan"), 0.7, 0.9]
    second = [0.4, 0.1, float("nan"), 0.8]
    result = statistics.paired_difference(first, second)
    assert result.mean == pytest.approx(0.1)  # images 1 and 4 only
    single = statistics.estimate([0.3, float("nan")])
    assert single.mean == pytest.approx(0.3)
    assert math.isnan(single.low) and math.isnan(single.high)


def test_seed_fixes_the_interval_and_lengths_must_agree() -> None:
    values = np.random.default_rng(1).normal(size=50)
    assert statistics.estimate(values, seed=3) == statistics.estimate(values, seed=3)
    assert statistics.estimate(values, seed=3) != statistics.estimate(values, seed=4)
    with pytest.raises(ValueError, match="^second: expected 3 values"):
        statistics.paired_difference([1.0, 2.0, 3.0], [1.0, 2.0])
