"""ROAD: the noisy linear imputation against hand-solved and dense systems,
and the MoRF / LeRF curves on a model whose evidence is known."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import TinyCNN

from captum_igcam.app.models import IMAGENET_MEAN, IMAGENET_STD, ModelBundle
from captum_igcam.app.settings import MethodSettings
from captum_igcam.evaluation import evaluate, road
from captum_igcam.evaluation.datasets import composites

GRID = torch.arange(1.0, 10.0).view(1, 3, 3)  # [[1, 2, 3], [4, 5, 6], [7, 8, 9]]


def _mask(size: tuple[int, int], *pixels: tuple[int, int]) -> torch.Tensor:
    mask = torch.zeros(size, dtype=torch.bool)
    for row, col in pixels:
        mask[row, col] = True
    return mask


def test_centre_pixel_is_the_weighted_mean_of_its_eight_neighbours() -> None:
    filled = road.linear_imputation(GRID, _mask((3, 3), (1, 1)))
    # (2 + 4 + 6 + 8) / 6 + (1 + 3 + 7 + 9) / 12 = 10/3 + 5/3
    assert filled[0, 1, 1].item() == pytest.approx(5.0)
    assert torch.equal(
        filled[0][~_mask((3, 3), (1, 1))], GRID[0][~_mask((3, 3), (1, 1))]
    )


def test_corner_pixel_renormalises_the_weights_of_its_three_neighbours() -> None:
    filled = road.linear_imputation(GRID, _mask((3, 3), (0, 0)))
    # (2/6 + 4/6 + 5/12) / (1/6 + 1/6 + 1/12) = (17/12) / (5/12)
    assert filled[0, 0, 0].item() == pytest.approx(17 / 5)


def test_two_removed_neighbours_are_solved_together() -> None:
    filled = road.linear_imputation(GRID, _mask((3, 3), (1, 1), (1, 2)))
    # x = (2 + 8 + 4 + y)/6 + (1 + 3 + 7 + 9)/12, and at the border
    # (2/3) y = (3 + 9 + x)/6 + (2 + 8)/12; solved by hand: x = 113/23, y = 126/23.
    assert filled[0, 1, 1].item() == pytest.approx(113 / 23)
    assert filled[0, 1, 2].item() == pytest.approx(126 / 23)


def _dense_imputation(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The same equations, one dense row per removed pixel, solved by numpy."""
    height, width = mask.shape
    unknown = [(r, c) for r in range(height) for c in range(width) if mask[r, c]]
    position = {pixel: k for k, pixel in enumerate(unknown)}
    system = np.zeros((len(unknown), len(unknown)))
    right = np.zeros((len(unknown), image.shape[0]))
    weights = {(dr, dc): 1 / 6 if dr == 0 or dc == 0 else 1 / 12 for dr in (-1, 0, 1)
               for dc in (-1, 0, 1) if (dr, dc) != (0, 0)}  # fmt: skip
    for k, (r, c) in enumerate(unknown):
        for (dr, dc), weight in weights.items():
            q = (r + dr, c + dc)
            if not (0 <= q[0] < height and 0 <= q[1] < width):
                continue
            system[k, k] += weight
            if q in position:
                system[k, position[q]] -= weight
            else:
                right[k] += weight * image[:, q[0], q[1]]
    result = image.copy()
    solution = np.linalg.solve(system, right)
    for k, (r, c) in enumerate(unknown):
        result[:, r, c] = solution[k]
    return result


def test_sparse_solution_equals_a_dense_formulation_on_a_random_image() -> None:
    generator = np.random.default_rng(3)
    image = generator.normal(size=(3, 6, 5))
    mask = generator.random((6, 5)) < 0.6
    expected = _dense_imputation(image, mask)
    filled = road.linear_imputation(torch.from_numpy(image), torch.from_numpy(mask))
    assert filled.dtype == torch.float64
    np.testing.assert_allclose(filled.numpy(), expected, rtol=1e-10, atol=1e-12)


def test_noise_touches_only_removed_pixels_with_the_asked_spread() -> None:
    image = torch.zeros(2, 64, 64)
    mask = torch.zeros(64, 64, dtype=torch.bool)
    mask[10:50, 10:50] = True
    generator = torch.Generator().manual_seed(0)
    noisy = road.noisy_linear_imputation(
        image, mask, noise_std=0.5, generator=generator
    )
    assert torch.equal(noisy[:, ~mask], image[:, ~mask])
    # Zeros around a zero image impute to zero: what remains is the noise.
    assert noisy[:, mask].std().item() == pytest.approx(0.5, rel=0.05)
    again = road.noisy_linear_imputation(
        image, mask, 0.5, torch.Generator().manual_seed(0)
    )
    assert torch.equal(noisy, again)


def test_bad_imputation_input_is_refused() -> None:
    with pytest.raises(ValueError, match="^removed: expected an"):
        road.linear_imputation(GRID, torch.zeros(2, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match="^removed: at least one pixel"):
        road.linear_imputation(GRID, torch.ones(3, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="^noise_std:"):
        road.noisy_linear_imputation(GRID, _mask((3, 3), (1, 1)), -1.0)


class LeftHalf(torch.nn.Module):
    """Class 0's logit grows with the left half's brightness; class 1 is fixed."""

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        left = inputs[:, :, :, : inputs.shape[3] // 2].mean(dim=(1, 2, 3))
        return torch.stack([8 * left, torch.zeros_like(left)], dim=1)


def test_morf_drops_the_score_faster_than_lerf_for_the_faithful_map() -> None:
    inputs = torch.zeros(2, 3, 16, 16)
    inputs[:, :, :, :8] = 1.0  # bright left half, dark right half
    faithful = torch.zeros(2, 1, 16, 16)
    faithful[..., :8] = 1.0
    faithful += torch.linspace(0, 0.1, 16)  # no ties
    target = torch.zeros(2, dtype=torch.long)
    kwargs = {"target": target, "percentages": (25, 50)}
    morf = road.road_curve(LeftHalf(), inputs, faithful, "morf", **kwargs)
    lerf = road.road_curve(LeftHalf(), inputs, faithful, "lerf", **kwargs)
    assert morf.shape == lerf.shape == (2, 2)
    # Removing the bright half first lowers class 0's probability.
    assert (morf < lerf).all()
    assert (morf[:, 1] < morf[:, 0]).all()
    # The inverted map swaps the two orders' roles.
    swapped = road.road_curve(LeftHalf(), inputs, -faithful, "lerf", **kwargs)
    torch.testing.assert_close(swapped, morf)
    scores = road.road_scores(LeftHalf(), inputs, faithful, **kwargs)
    torch.testing.assert_close(scores["road_morf"], morf.mean(dim=1))
    torch.testing.assert_close(scores["road_lerf"], lerf.mean(dim=1))


def test_road_curve_does_not_depend_on_the_batch_size() -> None:
    model = TinyCNN().eval()
    inputs = torch.randn(3, 3, 12, 12)
    maps = torch.randn(3, 1, 6, 6)
    target = torch.tensor([0, 1, 2])
    one = road.road_curve(model, inputs, maps, "morf", target, batch_size=1)
    many = road.road_curve(model, inputs, maps, "morf", target, batch_size=64)
    torch.testing.assert_close(one, many)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"order": "random"}, "^order:"),
        ({"order": "morf", "percentages": (0, 50)}, "^percentages:"),
        ({"order": "morf", "percentages": ()}, "^percentages:"),
        ({"order": "lerf", "batch_size": 0}, "^batch_size:"),
    ],
)
def test_bad_curve_arguments_are_refused(kwargs: dict, message: str) -> None:
    inputs = torch.zeros(1, 3, 4, 4)
    with pytest.raises(ValueError, match=message):
        road.road_curve(
            LeftHalf(),
            inputs,
            torch.rand(1, 4, 4),
            target=torch.zeros(1).long(),
            **kwargs,
        )


def test_benchmark_loop_scores_road_on_the_same_maps() -> None:
    bundle = ModelBundle(
        "tiny", TinyCNN(classes=1000).eval(), "conv2", 24, IMAGENET_MEAN,
        IMAGENET_STD, [str(i) for i in range(1000)],
    )  # fmt: skip
    dataset = composites(n=2, seed=1)
    result = evaluate(
        bundle,
        dataset,
        ["gradcam", "igcam"],
        MethodSettings(n_steps=2),
        curve_steps=2,
        progress=False,
        families=["road"],
    )
    assert result.settings["metric_families"] == ["road"]
    for record in result.records.values():
        for metric in ("road_morf", "road_lerf"):
            values = record.values[metric]
            assert len(values) == 2 and all(0.0 <= v <= 1.0 for v in values)
    plain = evaluate(
        bundle, dataset, ["gradcam"], MethodSettings(n_steps=2), curve_steps=2,
        progress=False,
    )  # fmt: skip
    assert "road_morf" not in plain.records["gradcam"].values
    # The loop's values are road_scores on the Grad-CAM maps of the prediction.
    from captum_igcam.app.methods import METHODS

    inputs = torch.stack([bundle.preprocess(sample.image) for sample in dataset])
    with torch.no_grad():
        predicted = bundle.model(inputs).argmax(dim=1)
    gradcam = METHODS["gradcam"].build(bundle.model, bundle.layer(), MethodSettings())
    expected = road.road_scores(
        bundle.model, inputs, gradcam(inputs, predicted), predicted
    )
    np.testing.assert_allclose(
        result.records["gradcam"].values["road_morf"], expected["road_morf"], rtol=1e-4
    )
