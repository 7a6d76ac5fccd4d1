"""Quantus on the registry's methods, and our metrics against Quantus's.

The adapter (``captum_igcam.evaluation.quantus_adapter.explain``) is called by
Quantus itself; the cross-checks feed the same maps and boxes to Quantus's
pointing game / relevance mass accuracy and to our pointing game / EBPG.
docs/quantus.md lists where the definitions differ; the tests below pin the
agreement where they match and each documented difference.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from captum_igcam.app import images, models, peer_methods
from captum_igcam.app.methods import METHODS, MethodSettings
from captum_igcam.app.peer_methods import PEER_METHODS
from captum_igcam.evaluation import metrics
from captum_igcam.evaluation.quantus_adapter import explain

quantus = pytest.importorskip("quantus")  # the `quantus` extra, part of `test`

SIZE = (224, 224)
FAST = MethodSettings(n_steps=8)
# Hand-drawn boxes (x_min, y_min, x_max, y_max) around the cat in chelsea and
# the cup in coffee, in 224 x 224 input pixels.
PHOTO_BOXES = {"chelsea": [[70, 20, 200, 224]], "coffee": [[20, 20, 224, 190]]}
# The localisation cross-check runs on the photos at half size (a quarter of
# the work): the boxes scale with them.
HALF = (112, 112)


def _masks(boxes: list, size: tuple[int, int]) -> np.ndarray:
    """Quantus's ``s_batch``: (N, 1, H, W) float masks of our boxes."""
    return np.stack([metrics.box_mask(b, size).numpy()[None] for b in boxes]).astype(
        np.float32
    )


class _TwoConv(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 6, 3, stride=2)
        )
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 3)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@pytest.fixture(scope="module")
def lite0_photos(lite0) -> tuple[models.ModelBundle, np.ndarray, np.ndarray]:
    bundle = lite0
    photos = images.bundled_images()
    x = torch.stack([bundle.preprocess(photos[name]) for name in PHOTO_BOXES])
    with torch.no_grad():
        y = bundle.model(x).argmax(dim=1)
    return bundle, x.numpy(), y.numpy()


@pytest.mark.parametrize(
    "method",
    sorted(
        name
        for name in METHODS
        if peer_methods.installed() or name not in {p.name for p in PEER_METHODS}
    ),
)
def test_explain_gives_quantus_layout_for_every_registry_method(method: str) -> None:
    model = _TwoConv().eval()
    x = torch.rand(2, 3, 12, 20).numpy()  # H != W: a transposed map would show
    maps = explain(
        model, x, np.array([0, 2]), method=method, layer="features.2", settings=FAST
    )
    assert maps.shape == (2, 1, 12, 20) and maps.dtype == np.float32
    assert np.isfinite(maps).all()
    quantus.helpers.asserts.assert_attributions(x_batch=x, a_batch=maps)
    # One target for all inputs is the same as repeating it.
    np.testing.assert_allclose(
        explain(model, x, 1, method=method, layer="features.2", settings=FAST),
        explain(model, x, [1, 1], method=method, layer="features.2", settings=FAST),
    )


def test_explain_names_the_bad_argument() -> None:
    model, x = _TwoConv().eval(), np.zeros((1, 3, 8, 8), np.float32)
    with pytest.raises(ValueError, match="method: expected one of .*igcam"):
        explain(model, x, 0, method="no-such-cam", layer="features.2")
    with pytest.raises(ValueError, match="layer: the model has no layer named"):
        explain(model, x, 0, layer="features.7")
    with pytest.raises(ValueError, match=r"inputs: expected an \(N, C, H, W\)"):
        explain(model, x[0], 0, layer="features.2")


def test_quantus_localisation_metrics_call_the_adapter_and_agree_with_ours(
    lite0_photos,
) -> None:
    bundle, x, _ = lite0_photos
    x = torch.nn.functional.interpolate(
        torch.from_numpy(x), size=HALF, mode="bilinear", antialias=True
    )
    with torch.no_grad():
        y = bundle.model(x).argmax(dim=1).numpy()
    x = x.numpy()
    boxes = [[[c // 2 for c in box] for box in boxes] for boxes in PHOTO_BOXES.values()]
    masks = _masks(boxes, HALF)
    kwargs = {"method": "igcam", "layer": bundle.layer_name, "settings": FAST}
    maps = explain(bundle.model, x, y, **kwargs)

    pointing = quantus.PointingGame(disable_warnings=True)(
        model=bundle.model, x_batch=x, y_batch=y, s_batch=masks,
        explain_func=explain, explain_func_kwargs=kwargs,
    )  # fmt: skip
    mass = quantus.RelevanceMassAccuracy(disable_warnings=True)(
        model=bundle.model, x_batch=x, y_batch=y, s_batch=masks,
        explain_func=explain, explain_func_kwargs=kwargs,
    )  # fmt: skip

    ours = torch.from_numpy(maps)
    assert maps.shape == (2, 1, *HALF)
    assert (
        list(pointing)
        == metrics.pointing_game_hits(ours, boxes, HALF, tolerance=1).tolist()
    )
    np.testing.assert_allclose(
        mass, metrics.energy_pointing_game(ours, boxes, HALF).numpy(), rtol=1e-5
    )
    assert all(0 < share < 1 for share in mass)  # real maps, real boxes


@pytest.mark.slow
def test_quantus_pixel_flipping_on_the_embedded_model(lite0_photos) -> None:
    """Faithfulness: deleting pixels in the map's order drops the class score
    faster than deleting them in the reverse order."""
    bundle, x, y = lite0_photos
    kwargs = {"method": "igcam", "layer": bundle.layer_name, "settings": FAST}
    # Quantus 0.6.0 computes its AUC with np.trapz, which numpy 2.4 removed:
    # take the curves and integrate them here.
    flipping = quantus.PixelFlipping(
        # Quantus checks that the step divides H x W but counts the steps over
        # C x H x W (the map is laid over each colour): 3 * 224 / 28 = 24 steps.
        features_in_step=224 * 28,
        perturb_baseline="black",
        disable_warnings=True,
    )
    curves = np.asarray(
        flipping(
            model=bundle.model, x_batch=x, y_batch=y,
            explain_func=explain, explain_func_kwargs=kwargs,
        )
    )  # fmt: skip
    assert curves.shape == (2, 24)
    maps = explain(bundle.model, x, y, **kwargs)
    # The same pixels in the reverse order (Quantus refuses all-negative maps).
    reversed_maps = maps.max(axis=(1, 2, 3), keepdims=True) - maps
    reverse = np.asarray(
        flipping(model=bundle.model, x_batch=x, y_batch=y, a_batch=reversed_maps)
    )
    assert (np.trapezoid(curves, axis=1) < np.trapezoid(reverse, axis=1)).all()


@pytest.fixture
def random_maps_and_boxes() -> tuple[np.ndarray, list]:
    """Noisy bumps at random places; every other box holds the bump's peak."""
    rng = np.random.default_rng(0)
    rows, cols = np.mgrid[0:40, 0:56]
    maps, boxes = [], []
    for index in range(12):
        peak_row, peak_col = rng.integers(5, 35), rng.integers(5, 51)
        bump = np.exp(-((rows - peak_row) ** 2 + (cols - peak_col) ** 2) / 50.0)
        maps.append(bump + 0.05 * rng.random(bump.shape))
        if index % 2 == 0:
            x0, y0 = peak_col - rng.integers(0, 4), peak_row - rng.integers(0, 4)
        else:
            x0, y0 = rng.integers(0, 44), rng.integers(0, 30)
        boxes.append([[x0, y0, x0 + 6 + rng.integers(0, 8), y0 + 6]])
    return np.stack(maps)[:, None].astype(np.float32), boxes


def _quantus_scores(metric, maps: np.ndarray, boxes: list) -> np.ndarray:
    x = np.zeros((len(maps), 3, *maps.shape[-2:]), np.float32)
    masks = _masks(boxes, maps.shape[-2:])
    return np.asarray(
        metric(model=None, x_batch=x, y_batch=np.zeros(len(maps), int), a_batch=maps,
               s_batch=masks, channel_first=True),
        dtype=float,
    )  # fmt: skip


def test_pointing_game_agrees_with_quantus_inside_the_box(random_maps_and_boxes):
    maps, boxes = random_maps_and_boxes
    size = maps.shape[-2:]
    theirs = _quantus_scores(quantus.PointingGame(disable_warnings=True), maps, boxes)
    ours = metrics.pointing_game_hits(torch.from_numpy(maps), boxes, size, tolerance=1)
    assert 0 < theirs.sum() < len(maps)  # both outcomes occur
    np.testing.assert_array_equal(theirs, ours.numpy())
    # Difference 1: our default 15 px tolerance (TorchRay) turns near misses
    # into hits; Quantus has no tolerance.
    tolerant = metrics.pointing_game_hits(torch.from_numpy(maps), boxes, size)
    assert tolerant.sum() > ours.sum()


def test_pointing_game_ties_differ_from_quantus() -> None:
    # Difference 2: with several maxima we point at the first (row-major), as
    # TorchRay does; Quantus counts a hit when any maximum is in the box.
    maps = np.zeros((1, 1, 10, 10), np.float32)
    maps[0, 0, 1, 1] = maps[0, 0, 8, 8] = 1.0
    boxes = [[[6, 6, 10, 10]]]
    assert _quantus_scores(quantus.PointingGame(disable_warnings=True), maps, boxes)[0]
    assert not metrics.pointing_game_hits(
        torch.from_numpy(maps), boxes, (10, 10), tolerance=1
    )[0]


def test_ebpg_equals_relevance_mass_accuracy_on_non_negative_maps(
    random_maps_and_boxes,
):
    maps, boxes = random_maps_and_boxes
    theirs = _quantus_scores(
        quantus.RelevanceMassAccuracy(disable_warnings=True), maps, boxes
    )
    ours = metrics.energy_pointing_game(torch.from_numpy(maps), boxes, maps.shape[-2:])
    np.testing.assert_allclose(theirs, ours.numpy(), rtol=1e-5)


def test_ebpg_and_relevance_mass_accuracy_differ_on_signed_maps() -> None:
    # Difference 3: EBPG keeps the positive part; relevance mass accuracy
    # sums the signed map (or its absolute value with abs=True).
    maps = np.array([[[[2.0, -1.0], [1.0, 0.0]]]], np.float32)
    boxes = [[[0, 0, 1, 1]]]  # the top-left pixel
    ours = metrics.energy_pointing_game(torch.from_numpy(maps), boxes, (2, 2))
    signed = _quantus_scores(
        quantus.RelevanceMassAccuracy(disable_warnings=True), maps, boxes
    )
    absolute = _quantus_scores(
        quantus.RelevanceMassAccuracy(abs=True, disable_warnings=True), maps, boxes
    )
    np.testing.assert_allclose(
        [ours[0], signed[0], absolute[0]], [2 / 3, 2 / 2, 2 / 4], rtol=1e-6
    )
