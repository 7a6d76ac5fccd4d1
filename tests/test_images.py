"""Tests for captum_igcam.app.images: bundled photos and image files."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from captum_igcam.app.images import ImageLoadError, bundled_images, load_image


def test_bundled_images_are_rgb_uint8_photos():
    photos = bundled_images()
    assert list(photos) == ["chelsea", "coffee", "astronaut", "rocket"]
    for photo in photos.values():
        assert photo.dtype == np.uint8 and photo.ndim == 3 and photo.shape[2] == 3
    assert photos["chelsea"].shape == (300, 451, 3)


def test_load_image_converts_to_rgb(tmp_path):
    path = tmp_path / "gray.png"
    Image.new("L", (7, 5), color=200).save(path)
    image = load_image(path)
    assert image.mode == "RGB" and image.size == (7, 5)
    assert np.asarray(image)[0, 0].tolist() == [200, 200, 200]


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda path: None, "does not exist"),
        (lambda path: path.mkdir(), "is a directory"),
        (lambda path: path.write_bytes(b"not an image"), "not an image file"),
    ],
)
def test_load_image_errors_name_the_file(tmp_path, make, reason):
    path = tmp_path / "photo.jpg"
    make(path)
    with pytest.raises(ImageLoadError, match=reason) as raised:
        load_image(path)
    assert str(path) in str(raised.value)


def test_truncated_image_is_reported(tmp_path):
    path = tmp_path / "cut.png"
    Image.fromarray(
        np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)
    ).save(path)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ImageLoadError, match="cannot be read") as raised:
        load_image(path)
    assert str(path) in str(raised.value)
