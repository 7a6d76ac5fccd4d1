"""Images to explain: photos bundled with scikit-image, and files from disk."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from PIL import Image

#: Real photos shipped inside the scikit-image wheel (no download needed).
BUNDLED_IMAGE_NAMES = ("chelsea", "coffee", "astronaut", "rocket")


class ImageLoadError(ValueError):
    """An image file is missing or cannot be decoded; the message names it."""


def bundled_images() -> dict[str, np.ndarray]:
    """Photos from scikit-image to explain when the user names none.

    Returns:
        dict[str, np.ndarray]: Name -> ``HxWx3`` uint8 RGB array, in the order
        of :data:`BUNDLED_IMAGE_NAMES`.

    Example::

        >>> bundled_images()["chelsea"].shape
        (300, 451, 3)
    """
    from skimage import data

    return {name: getattr(data, name)() for name in BUNDLED_IMAGE_NAMES}


def load_image(path: str | os.PathLike[str]) -> Image.Image:
    """Read an image file as RGB, fully decoded.

    Args:
        path (str or os.PathLike): File to read (any format Pillow reads).

    Returns:
        PIL.Image.Image: The image in RGB mode.

    Raises:
        ImageLoadError: If the file is missing, unreadable, or not a complete
            image; the message names the file.

    Example::

        >>> load_image("cat.jpg").mode
        'RGB'
    """
    from PIL import Image, UnidentifiedImageError  # noqa: F811 - runtime import

    if not os.path.isfile(path):
        reason = "is a directory" if os.path.isdir(path) else "does not exist"
        raise ImageLoadError(f"image {os.fspath(path)!r} {reason}")
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except UnidentifiedImageError as error:
        raise ImageLoadError(
            f"image {os.fspath(path)!r} is not an image file Pillow can read"
        ) from error
    except (OSError, ValueError) as error:
        raise ImageLoadError(
            f"image {os.fspath(path)!r} cannot be read ({error})"
        ) from error
