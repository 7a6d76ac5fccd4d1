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


def _gradient(dtype: type, low: float, high: float) -> np.ndarray:
    """A 16 x 64 left-to-right ramp from ``low`` to ``high``."""
    return np.tile(np.linspace(low, high, 64), (16, 1)).astype(dtype)


@pytest.mark.parametrize(
    ("name", "pixels"),
    [
        ("ramp16.png", _gradient(np.uint16, 0, 65535)),
        ("ramp16-narrow.png", _gradient(np.uint16, 1000, 5000)),
        ("ramp32.tif", _gradient(np.int32, -70000, 250000)),
        ("ramp-float.tif", _gradient(np.float32, 0.0, 1.0)),
    ],
)
def test_high_bit_depth_images_are_rescaled_by_their_range(tmp_path, name, pixels):
    path = tmp_path / name
    Image.fromarray(pixels).save(path)
    loaded = np.asarray(load_image(path))
    assert loaded.shape == (16, 64, 3) and loaded.dtype == np.uint8
    # The file's smallest value is black, its largest white, linearly between.
    expected = np.rint(np.linspace(0, 255, 64)).astype(int)
    row = loaded[0, :, 0].astype(int)
    assert np.abs(row - expected).max() <= 1
    assert (loaded == loaded[:, :, :1]).all()  # gray: equal channels


def test_constant_float_image_loads_black(tmp_path):
    path = tmp_path / "flat.tif"
    Image.fromarray(np.full((4, 5), 0.7, np.float32)).save(path)
    assert not np.asarray(load_image(path)).any()


def test_exif_orientation_is_applied(tmp_path):
    # A 40 x 20 photo, left half red, stored with "rotate 90 CW to view".
    pixels = np.zeros((20, 40, 3), np.uint8)
    pixels[:, :20] = (255, 0, 0)
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: the viewer rotates it 90 degrees clockwise
    path = tmp_path / "rotated.jpg"
    Image.fromarray(pixels).save(path, exif=exif, quality=95)
    loaded = np.asarray(load_image(path))
    assert loaded.shape == (40, 20, 3)  # upright, as viewers show it
    # Rotated clockwise, the red left half is now the top half.
    assert loaded[:20, :, 0].mean() > 200 and loaded[20:, :, 0].mean() < 50


def test_decompression_bomb_is_an_image_load_error(tmp_path, monkeypatch):
    path = tmp_path / "huge.png"
    Image.new("RGB", (100, 100)).save(path)
    # Pillow refuses images over twice MAX_IMAGE_PIXELS.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(ImageLoadError, match="decompression-bomb limit") as raised:
        load_image(path)
    assert str(path) in str(raised.value)
