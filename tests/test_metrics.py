"""Metrics on hand-built maps, boxes and toy models with known answers."""

from __future__ import annotations

import math

import pytest
import torch
from captum.metrics import infidelity, sensitivity_max
from helpers import TinyCNN

from captum_igcam.evaluation import metrics

SIZE = (100, 100)
# Columns 20..49 and rows 20..89: the last column inside is 49.
BOX = [[20, 20, 50, 90]]


def peak_map(row: int, col: int, size: tuple[int, int] = SIZE) -> torch.Tensor:
    maps = torch.zeros(1, 1, *size)
    maps[0, 0, row, col] = 1.0
    return maps


@pytest.mark.parametrize(
    ("row", "col", "hit"),
    [
        (50, 30, True),  # inside
        (50, 49 + 14, True),  # 14 px right of the box
        (50, 49 + 15, False),  # exactly the tolerance: TorchRay needs < 15
        (50, 49 + 16, False),  # 16 px right
        (20 - 14, 30, True),  # 14 px above
        (20 - 16, 30, False),  # 16 px above
        (89 + 10, 49 + 10, True),  # diagonal, sqrt(200) = 14.1 px
        (89 + 11, 49 + 11, False),  # diagonal, sqrt(242) = 15.6 px
    ],
)
def test_pointing_game_hit_strictly_within_15_px(row: int, col: int, hit: bool) -> None:
    size = (110, 110)
    hits = metrics.pointing_game_hits(peak_map(row, col, size), [BOX], size)
    assert hits.tolist() == [hit]


def test_pointing_game_nearest_of_several_boxes_and_batch() -> None:
    maps = torch.cat([peak_map(5, 95), peak_map(15, 15)])
    # (5, 95) is 14 px right of and 3 px below a small second box: 14.3 px.
    boxes = [BOX + [[80, 0, 82, 3]], BOX]
    # (15, 15) is 5 px left of and 5 px above the corner (20, 20): 7.07 px.
    hits = metrics.pointing_game_hits(maps, boxes, SIZE)
    assert hits.tolist() == [True, True]
    hits = metrics.pointing_game_hits(maps, boxes, SIZE, tolerance=7.1)
    assert hits.tolist() == [False, True]


def test_pointing_game_upsamples_layer_maps() -> None:
    # A 10x10 layer map whose peak cell covers input rows 50..59, cols 80..89.
    layer_map = torch.zeros(1, 1, 10, 10)
    layer_map[0, 0, 5, 8] = 1.0
    far_box = [[0, 0, 30, 30]]
    near_box = [[95, 50, 100, 60]]  # 6+ px right of the cell
    assert metrics.pointing_game_hits(layer_map, [far_box], SIZE).tolist() == [False]
    assert metrics.pointing_game_hits(layer_map, [near_box], SIZE).tolist() == [True]


def test_pointing_game_accuracy_is_a_mean_over_classes() -> None:
    hits = torch.tensor([True, False, False, True, True])
    labels = [0, 0, 0, 1, 1]
    # class 0: 1/3, class 1: 2/2 -> (1/3 + 1) / 2, unlike the image mean 0.6
    assert metrics.pointing_game_accuracy(hits, labels) == pytest.approx(2 / 3)
    assert math.isnan(
        metrics.pointing_game_accuracy(torch.zeros(0, dtype=torch.bool), [])
    )


def test_energy_pointing_game_known_split() -> None:
    maps = torch.ones(2, 10, 10)
    maps[0, :, :5] = 3.0  # 50 px inside with energy 150, 50 px outside with 50
    maps[0, 0, 9] = -5.0  # negative values carry no energy
    maps[1] = 0.0  # no energy at all
    boxes = [[[0, 0, 5, 10]], [[0, 0, 5, 10]]]
    shares = metrics.energy_pointing_game(maps, boxes, (10, 10))
    assert shares.tolist() == pytest.approx([150 / (150 + 49), 0.0])


def test_energy_pointing_game_counts_overlapping_boxes_once() -> None:
    maps = torch.ones(1, 1, 10, 10)
    boxes = [[[0, 0, 5, 10], [2, 0, 6, 10]]]  # union: columns 0..5
    assert metrics.energy_pointing_game(maps, boxes, (10, 10)).item() == (
        pytest.approx(0.6)
    )


def test_average_drop_and_increase_in_confidence() -> None:
    original = torch.tensor([0.8, 0.5, 0.4])
    masked = torch.tensor([0.2, 0.6, 0.4])
    assert metrics.average_drop(original, masked).tolist() == pytest.approx(
        [75.0, 0.0, 0.0]
    )
    assert metrics.increase_in_confidence(original, masked).tolist() == [
        0.0,
        100.0,
        0.0,
    ]


def sum_model(inputs: torch.Tensor) -> torch.Tensor:
    """Two 'classes': the sum of the input and its negation."""
    total = inputs.flatten(1).sum(1)
    return torch.stack([total, -total], dim=1)


def test_masked_confidence_multiplies_by_min_max_normalised_map() -> None:
    inputs = torch.ones(1, 2, 2, 2)
    maps = torch.tensor([[[[1.0, 2.0], [3.0, 5.0]]]])  # -> 0, .25, .5, 1
    original, masked = metrics.masked_confidence(
        sum_model, inputs, maps, apply_softmax=False
    )
    assert original.tolist() == [8.0]
    assert masked.tolist() == [2 * 1.75]


def test_masked_confidence_softmax_and_prediction_target() -> None:
    inputs = torch.full((1, 1, 2, 2), -0.25)  # predicts class 1, logits (-1, 1)
    maps = torch.ones(1, 2, 2)  # constant map -> zeros -> logits (0, 0)
    original, masked = metrics.masked_confidence(sum_model, inputs, maps)
    assert original.item() == pytest.approx(1 / (1 + math.exp(-2)))
    assert masked.item() == pytest.approx(0.5)


def one_pixel_model(inputs: torch.Tensor) -> torch.Tensor:
    """Its only class score is the value of pixel (2, 3) of channel 0."""
    return inputs[:, 0, 2, 3].unsqueeze(1)


def test_deletion_best_when_only_informative_pixel_ranked_first() -> None:
    inputs = torch.ones(1, 3, 4, 4)
    informative = torch.zeros(1, 4, 4)
    informative[0, 2, 3] = 1.0
    kwargs = {
        "target": torch.tensor([0]),
        "n_steps": 16,
        "apply_softmax": False,
        "baselines": 0.0,
    }
    best = metrics.deletion_auc(one_pixel_model, inputs, informative, **kwargs)
    # Curve (1, 0, ..., 0) over 17 evenly spaced points: area 0.5 / 16.
    assert best.item() == pytest.approx(0.5 / 16)
    generator = torch.Generator().manual_seed(0)
    for _ in range(20):
        other = torch.rand(1, 4, 4, generator=generator)
        other[0, 2, 3] = other.min() if other.argmax() == 11 else other[0, 2, 3]
        assert metrics.deletion_auc(one_pixel_model, inputs, other, **kwargs) > best
    worst = -informative
    assert metrics.deletion_auc(
        one_pixel_model, inputs, worst, **kwargs
    ).item() == pytest.approx(15.5 / 16)
    inserted = metrics.insertion_auc(one_pixel_model, inputs, informative, **kwargs)
    assert inserted.item() == pytest.approx(1 - 0.5 / 16)


def count_model(inputs: torch.Tensor) -> torch.Tensor:
    """Its class score counts the pixels that differ from the baseline 0."""
    return (inputs[:, 0] != 0).flatten(1).sum(1, keepdim=True).float()


@pytest.mark.parametrize("batch_size", [1, 3, 100])
def test_perturbation_curve_steps_and_batching(batch_size: int) -> None:
    inputs = torch.ones(2, 1, 4, 4)
    maps = torch.rand(2, 1, 4, 4)
    kwargs = {
        "n_steps": 3,
        "batch_size": batch_size,
        "apply_softmax": False,
        "baselines": 0.0,
    }
    deletion = metrics.perturbation_curve(
        count_model, inputs, maps, "deletion", **kwargs
    )
    insertion = metrics.perturbation_curve(
        count_model, inputs, maps, "insertion", **kwargs
    )
    # round(i * 16 / 3) pixels changed at step i: 0, 5, 11, 16.
    assert deletion.tolist() == [[16.0, 11.0, 5.0, 0.0]] * 2
    assert insertion.tolist() == [[0.0, 5.0, 11.0, 16.0]] * 2


def test_perturbation_curve_uses_the_given_baseline() -> None:
    inputs = torch.ones(1, 1, 2, 2)
    baseline = torch.full((1, 1, 2, 2), 0.5)
    curve = metrics.perturbation_curve(
        sum_model,
        inputs,
        torch.rand(1, 2, 2),
        "deletion",
        target=torch.tensor([0]),
        n_steps=4,
        baselines=baseline,
        apply_softmax=False,
    )
    assert curve.tolist() == [[4.0, 3.5, 3.0, 2.5, 2.0]]


def test_insertion_starts_from_the_rise_blur_and_deletion_from_zeros() -> None:
    generator = torch.Generator().manual_seed(1)
    inputs = torch.rand(2, 3, 20, 24, generator=generator)
    # RISE's canvas by hand: a normalised 11-tap Gaussian (sigma 5) applied
    # along rows and columns, with reflected borders.
    taps = torch.exp(-(torch.arange(-5.0, 6.0) ** 2) / (2 * 5.0**2))
    taps /= taps.sum()
    padded = torch.nn.functional.pad(inputs, (5, 5, 5, 5), mode="reflect")
    rows = torch.nn.functional.conv2d(
        padded.flatten(0, 1)[:, None], taps.view(1, 1, 1, 11)
    )
    expected = torch.nn.functional.conv2d(rows, taps.view(1, 1, 11, 1)).view_as(inputs)
    torch.testing.assert_close(metrics.blurred_canvas(inputs), expected)
    assert not torch.allclose(expected, inputs, atol=1e-2)
    maps = torch.rand(2, 1, 5, 6, generator=generator)
    kwargs = {"target": torch.tensor([0, 0]), "n_steps": 4, "apply_softmax": False}
    insertion = metrics.perturbation_curve(
        sum_model, inputs, maps, "insertion", **kwargs
    )
    deletion = metrics.perturbation_curve(sum_model, inputs, maps, "deletion", **kwargs)
    torch.testing.assert_close(insertion[:, 0], expected.flatten(1).sum(1))
    torch.testing.assert_close(insertion[:, -1], inputs.flatten(1).sum(1))
    assert deletion[:, -1].tolist() == [0.0, 0.0]


def corner_model(inputs: torch.Tensor) -> torch.Tensor:
    """Its class score is the top-left pixel of channel 0."""
    return inputs[:, 0, 0, 0].unsqueeze(1)


def test_ties_are_removed_in_a_seeded_random_order_not_row_major() -> None:
    inputs = torch.ones(1, 1, 8, 8)
    flat = torch.zeros(1, 8, 8)  # every pixel tied
    kwargs = {
        "target": torch.tensor([0]),
        "n_steps": 64,
        "apply_softmax": False,
        "baselines": 0.0,
    }

    def step_removing_the_corner(seed: int) -> int:
        curve = metrics.perturbation_curve(
            corner_model, inputs, flat, "deletion", seed=seed, **kwargs
        )
        return int((curve[0] == 0).nonzero()[0])

    steps = [step_removing_the_corner(seed) for seed in range(6)]
    # Row-major ties would remove the corner first, at step 1, every time.
    assert len(set(steps)) > 1 and max(steps) > 1
    assert step_removing_the_corner(3) == steps[3]  # the seed fixes the order
    # Ties only: a strictly higher value still comes first.
    ranked = flat.clone()
    ranked[0, 0, 0] = 1.0
    curve = metrics.perturbation_curve(
        corner_model, inputs, ranked, "deletion", seed=5, **kwargs
    )
    assert curve[0, :2].tolist() == [1.0, 0.0]


def test_pixel_auroc_equals_mann_whitney_and_ignores_offsets() -> None:
    from scipy.stats import mannwhitneyu

    generator = torch.Generator().manual_seed(2)
    maps = torch.randn(3, 1, 6, 6, generator=generator).relu()  # many ties at 0
    boxes = [
        [[10, 20, 60, 90]],
        [[0, 0, 100, 30], [70, 70, 90, 95]],
        [[50, 50, 55, 58]],
    ]
    auroc = metrics.localisation_auroc(maps, boxes, SIZE)
    upsampled = metrics.to_input_size(maps, SIZE)
    for index in range(3):
        inside = metrics.box_mask(boxes[index], SIZE)
        values = upsampled[index]
        u = mannwhitneyu(values[inside].numpy(), values[~inside].numpy()).statistic
        expected = u / (int(inside.sum()) * int((~inside).sum()))
        assert auroc[index].item() == pytest.approx(expected, abs=1e-6)
    shifted = metrics.localisation_auroc(3.0 * maps - 7.0, boxes, SIZE)
    torch.testing.assert_close(shifted, auroc)
    # An offset moves EBPG but not the rank score.
    ebpg = metrics.energy_pointing_game(maps, boxes, SIZE)
    assert not torch.allclose(metrics.energy_pointing_game(maps + 1, boxes, SIZE), ebpg)


def test_pixel_auroc_extremes_and_undefined() -> None:
    maps = torch.zeros(2, 10, 10)
    maps[:, :, :5] = 1.0
    auroc = metrics.localisation_auroc(
        maps, [[[0, 0, 5, 10]], [[5, 0, 10, 10]]], (10, 10)
    )
    assert auroc.tolist() == [1.0, 0.0]
    flat = metrics.localisation_auroc(
        torch.ones(1, 10, 10), [[[0, 0, 5, 10]]], (10, 10)
    )
    assert flat.tolist() == [0.5]  # all ties: chance
    whole = metrics.localisation_auroc(maps[:1], [[[0, 0, 10, 10]]], (10, 10))
    assert math.isnan(whole.item())


def test_box_area_fraction() -> None:
    assert metrics.box_area_fraction([[0, 0, 5, 10], [0, 0, 5, 5]], (10, 10)) == 0.5


def test_curve_auc_trapezoids() -> None:
    curve = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]])
    assert metrics.curve_auc(curve).tolist() == pytest.approx([0.25, 0.75])


def test_input_space_attributions_expand_over_channels() -> None:
    inputs = torch.rand(2, 3, 8, 8)
    maps = torch.full((2, 1, 4, 4), 2.0)
    maps[1] = 5.0
    attributions = metrics.input_space_attributions(maps, inputs)
    assert attributions.shape == inputs.shape
    assert torch.all(attributions[0] == 2.0) and torch.all(attributions[1] == 5.0)


def shift_by_one(inputs: torch.Tensor) -> torch.Tensor:
    return inputs + 1.0


def expected_shift_sensitivity(inputs: torch.Tensor) -> torch.Tensor:
    """Sensitivity of the channel-sum map under ``shift_by_one``, by hand.

    Every map value rises by C (one per channel) and is repeated on C
    channels, so the change has norm ``C * sqrt(C * H * W)``; the map itself
    has norm ``sqrt(C * sum_p s_p^2)`` with ``s_p`` the channel sums.
    """
    c, h, w = inputs.shape[1:]
    change = c * math.sqrt(c * h * w)
    return change / inputs.sum(1).flatten(1).pow(2).sum(1).mul(c).sqrt()


@pytest.mark.parametrize("n_perturb_samples", [1, 3])
def test_sensitivity_max_with_adapter_matches_hand_computed_value(
    n_perturb_samples: int,
) -> None:
    inputs = torch.rand(3, 3, 4, 4, generator=torch.Generator().manual_seed(1)) + 0.5
    explanation = metrics.input_space_explanation(lambda x: x.sum(1, keepdim=True))
    value = sensitivity_max(
        explanation,
        inputs,
        perturb_func=shift_by_one,
        n_perturb_samples=n_perturb_samples,
    )
    expected = expected_shift_sensitivity(inputs)
    assert value.tolist() == pytest.approx(expected.tolist(), rel=1e-5)


def test_sensitivity_max_misreads_a_bare_tensor_explanation() -> None:
    """Why the adapter returns a tuple: captum iterates a bare tensor by rows.

    If this starts failing, captum handles bare tensors and the tuple is no
    longer needed.
    """
    inputs = torch.rand(3, 3, 4, 4, generator=torch.Generator().manual_seed(1)) + 0.5
    explanation = metrics.input_space_explanation(lambda x: x.sum(1, keepdim=True))

    def bare(x: torch.Tensor | tuple[torch.Tensor]) -> torch.Tensor:
        return explanation(x)[0]

    wrong = sensitivity_max(
        bare, inputs, perturb_func=shift_by_one, n_perturb_samples=1
    )
    expected = expected_shift_sensitivity(inputs)
    assert not torch.allclose(wrong, expected, rtol=1e-3)


def test_sensitivity_max_with_a_layer_resolution_method() -> None:
    inputs = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    explanation = metrics.input_space_explanation(
        lambda x: torch.nn.functional.avg_pool2d(x.sum(1, keepdim=True), 2)
    )
    (attributions,) = explanation((inputs,))
    assert attributions.shape == inputs.shape
    value = sensitivity_max(explanation, inputs, perturb_func=shift_by_one)
    # A shift by one adds 3 to every pooled (and upsampled) value.
    expected = 3 * math.sqrt(3 * 64) / attributions.flatten(1).norm(dim=1)
    assert value.tolist() == pytest.approx(expected.tolist(), rel=1e-5)


def test_infidelity_adapter_zero_for_the_model_own_map() -> None:
    generator = torch.Generator().manual_seed(2)
    layer_map = torch.rand(1, 1, 4, 4, generator=generator)
    weights = metrics.input_space_attributions(layer_map, torch.zeros(1, 3, 8, 8))

    def linear_model(x: torch.Tensor) -> torch.Tensor:
        return (x * weights).flatten(1).sum(1, keepdim=True)

    inputs = torch.rand(2, 3, 8, 8, generator=generator)
    own = metrics.input_space_attributions(layer_map.expand(2, -1, -1, -1), inputs)
    kwargs = {"target": 0, "n_perturb_samples": 4}
    torch.manual_seed(0)
    exact = infidelity(
        linear_model, metrics.noisy_perturbation(0.1), inputs, own, **kwargs
    )
    flat = metrics.input_space_attributions(torch.ones(2, 1, 4, 4), inputs)
    wrong = infidelity(
        linear_model, metrics.noisy_perturbation(0.1), inputs, flat, **kwargs
    )
    assert exact.tolist() == pytest.approx([0.0, 0.0], abs=1e-8)
    assert torch.all(wrong > 1e-3)


@pytest.mark.parametrize(
    ("call", "parameter"),
    [
        (lambda: metrics.to_input_size(torch.zeros(2, 3, 4, 4), SIZE), "maps"),
        (lambda: metrics.pointing_game_hits(peak_map(0, 0), [], SIZE), "boxes"),
        (lambda: metrics.pointing_game_hits(peak_map(0, 0), [[1, 2]], SIZE), "boxes"),
        (
            lambda: metrics.pointing_game_hits(peak_map(0, 0), [BOX], SIZE, -1),
            "tolerance",
        ),
        (
            lambda: metrics.pointing_game_accuracy(torch.ones(2, dtype=bool), [0]),
            "labels",
        ),
        (lambda: metrics.average_drop(torch.ones(2), torch.ones(3)), "masked"),
        (
            lambda: metrics.perturbation_curve(
                count_model, torch.ones(1, 1, 2, 2), torch.ones(1, 2, 2), "delete"
            ),
            "mode",
        ),
        (
            lambda: metrics.deletion_auc(
                count_model, torch.ones(1, 1, 2, 2), torch.ones(1, 2, 2), n_steps=0
            ),
            "n_steps",
        ),
        (lambda: metrics.curve_auc(torch.ones(2, 1)), "curve"),
        (lambda: metrics.noisy_perturbation(0.0), "std"),
    ],
)
def test_bad_arguments_name_the_parameter(call, parameter: str) -> None:
    with pytest.raises(ValueError, match=f"^{parameter}:"):
        call()


def step_by_step_curve(model, image, saliency, mode, target, n_steps, canvas):
    """One curve by its definition: one model call per point, nothing shared."""
    order = saliency.flatten().argsort(descending=True)  # no ties: rand maps
    n_pixels = order.numel()
    points = []
    for step in range(n_steps + 1):
        changed = torch.zeros(n_pixels, dtype=torch.bool)
        changed[order[: round(step * n_pixels / n_steps)]] = True
        changed = changed.view(1, *image.shape[-2:])
        start, end = (image, canvas) if mode == "deletion" else (canvas, image)
        with torch.no_grad():
            probabilities = model(torch.where(changed, end, start)[None]).softmax(1)
        points.append(float(probabilities[0, target]))
    return points


def test_shared_curves_equal_step_by_step_curves_with_fewer_passes() -> None:
    torch.manual_seed(0)
    model = TinyCNN(classes=5).eval()
    seen = []
    model.register_forward_hook(lambda module, args, out: seen.append(len(args[0])))
    inputs = torch.rand(3, 3, 6, 7)
    maps = [torch.rand(3, 1, 6, 7) for _ in range(3)]
    target = torch.tensor([0, 3, 4])
    n_steps = 5
    curves = metrics.perturbation_curves(
        model, inputs, maps, target=target, n_steps=n_steps, batch_size=4
    )
    passes = list(seen)
    canvases = {"deletion": torch.zeros_like(inputs)}
    canvases["insertion"] = metrics.blurred_canvas(inputs)
    for mode, canvas in canvases.items():
        assert curves[mode].shape == (3, 3, n_steps + 1)
        for m, saliency in enumerate(maps):
            for i in range(3):
                expected = step_by_step_curve(
                    model, inputs[i], saliency[i], mode, target[i], n_steps, canvas[i]
                )
                torch.testing.assert_close(
                    curves[mode][m, i], torch.tensor(expected), atol=1e-6, rtol=0
                )
    # Endpoints once per image (input, zeros, blur), interior points once per
    # map, mode and image; a curve at a time needs 2 * 3 * 3 * 6 = 108.
    assert sum(passes) == 3 * 3 + 2 * 3 * 3 * (n_steps - 1) == 81
    assert max(passes) == 4


def test_masked_inputs_and_class_scores_make_masked_confidence() -> None:
    torch.manual_seed(1)
    model = TinyCNN(classes=5).eval()
    inputs, maps = torch.rand(5, 3, 8, 8), torch.rand(5, 1, 4, 4)
    target = torch.tensor([1, 0, 2, 4, 3])
    original, masked = metrics.masked_confidence(model, inputs, maps, target)
    masked_inputs = metrics.masked_inputs(inputs, maps)
    # A map's minimum sets the input to 0, its maximum keeps it.
    upsampled = metrics.to_input_size(maps, (8, 8)).flatten(1)
    lowest, highest = upsampled.argmin(1), upsampled.argmax(1)
    flat = masked_inputs.flatten(2)
    for i in range(5):
        assert flat[i, :, lowest[i]].abs().max() == 0
        torch.testing.assert_close(
            flat[i, :, highest[i]], inputs.flatten(2)[i, :, highest[i]]
        )
    scores = metrics.class_scores(model, masked_inputs, target, batch_size=2)
    torch.testing.assert_close(scores, masked)
    torch.testing.assert_close(metrics.class_scores(model, inputs, target), original)
