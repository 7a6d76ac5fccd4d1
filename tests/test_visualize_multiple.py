"""``maps.visualize_image_attr_multiple_safe`` on a real Integrated Grad-CAM map.

The layout is the one of Captum's segmentation tutorial: the photo, then the
map blended with its positive and negative parts, and the map as a masked
image. Integrated Grad-CAM maps are non-negative, so the negative panel has
nothing to draw.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from captum_igcam import IntegratedLayerGradCam
from captum_igcam.app import images, maps

TUTORIAL_METHODS = [
    "original_image",
    "blended_heat_map",
    "blended_heat_map",
    "masked_image",
]
TUTORIAL_SIGNS = ["all", "positive", "negative", "positive"]
TITLES = ["photo", "positive", "negative", "masked"]


@pytest.fixture(scope="module")
def chelsea_map(lite0) -> tuple[np.ndarray, np.ndarray]:
    """(Integrated Grad-CAM map HxWx1, photo HxWx3) for chelsea on Lite0."""
    bundle = lite0
    inputs = bundle.preprocess(images.bundled_images()["chelsea"]).unsqueeze(0)
    target = int(bundle.model(inputs).argmax())
    attr = IntegratedLayerGradCam(bundle.model, bundle.layer()).attribute(
        inputs, target=target, n_steps=8
    )
    heat = maps.upsample(attr, inputs.shape[-2:])[0].permute(1, 2, 0).numpy()
    mean, std = torch.tensor(bundle.mean), torch.tensor(bundle.std)
    photo = (inputs[0].permute(1, 2, 0) * std + mean).clamp(0, 1).numpy()
    return heat, photo


def test_the_map_has_no_negative_part(chelsea_map):
    heat, _ = chelsea_map
    assert heat.min() >= 0 and heat.max() > 0


def test_tutorial_layout_draws_every_panel_and_marks_the_empty_one(chelsea_map):
    heat, photo = chelsea_map
    figure, axes = maps.visualize_image_attr_multiple_safe(
        heat, photo, TUTORIAL_METHODS, TUTORIAL_SIGNS, titles=TITLES
    )
    assert list(figure.axes[: len(axes)]) == list(axes)
    assert [axis.get_title() for axis in axes] == [
        "photo",
        "positive",
        "negative (empty negative map)",
        "masked",
    ]
    # photo alone; photo + blended heat map; photo alone; the masked photo
    assert [len(axis.get_images()) for axis in axes] == [1, 2, 1, 1]
    blended = axes[1].get_images()[1].get_array()
    assert np.ptp(np.asarray(blended)) > 0  # the heat map is really drawn
    masked = np.asarray(axes[3].get_images()[0].get_array())
    assert masked.min() == 0 and not np.allclose(masked, photo)


def test_without_titles_the_empty_panel_is_still_named(chelsea_map):
    heat, photo = chelsea_map
    _, axes = maps.visualize_image_attr_multiple_safe(
        heat, photo, ["blended_heat_map"] * 2, ["negative", "absolute_value"]
    )
    assert [axis.get_title() for axis in axes] == ["(empty negative map)", ""]


def test_one_sign_and_title_per_method_is_required(chelsea_map):
    heat, photo = chelsea_map
    with pytest.raises(ValueError, match=r"signs: expected one entry per method \(2"):
        maps.visualize_image_attr_multiple_safe(
            heat, photo, ["original_image", "heat_map"], ["all"]
        )
    with pytest.raises(ValueError, match=r"titles: expected one entry per method"):
        maps.visualize_image_attr_multiple_safe(
            heat, photo, ["heat_map"], ["positive"], titles=["a", "b"]
        )
