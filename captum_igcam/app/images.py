"""Images to explain: photos bundled with scikit-image, and files from disk.

:func:`read_image` is the one way the application reads an image file: it
reads the file's bytes once, records their SHA-256 digest (the identity every
result is bound to) and decodes those same bytes. :func:`load_image` returns
the image alone. The image is 8-bit RGB as a viewer shows it:

- the EXIF orientation tag is applied (``PIL.ImageOps.exif_transpose``), so
  maps line up with the photo as it appears on screen;
- single-channel images with more than 8 bits (16-bit PNG, 32-bit integer
  and floating-point TIFF) are rescaled linearly from their real range (the
  smallest to the largest value in the file) to 0..255; Pillow's own
  conversion would clip them (a 16-bit image loads almost all white, a float
  image in [0, 1] all black);
- a file that is missing, is not an image, is truncated or is larger than
  Pillow's decompression-bomb limit raises :class:`ImageLoadError`, whose
  message names the file, so callers can report it and go on with the others.
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from PIL import Image

#: Real photos shipped inside the scikit-image wheel (no download needed).
BUNDLED_IMAGE_NAMES = ("chelsea", "coffee", "astronaut", "rocket")

#: Pillow modes of single-channel images with more than 8 bits per pixel.
_HIGH_DEPTH_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N", "F")


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


def bundled_image_files() -> dict[str, str]:
    """The files of :func:`bundled_images`, to read with :func:`read_image`.

    Returns:
        dict[str, str]: Name -> path inside the installed scikit-image, in the
        order of :data:`BUNDLED_IMAGE_NAMES`.

    Example::

        >>> os.path.basename(bundled_image_files()["chelsea"])
        'chelsea.png'
    """
    from skimage import data

    files = {os.path.splitext(name)[0]: name for name in os.listdir(data.data_dir)}
    return {
        name: os.path.join(data.data_dir, files[name]) for name in BUNDLED_IMAGE_NAMES
    }


@dataclass(frozen=True)
class ImageFile:
    """An image file as read: the decoded image and the digest of its bytes.

    Attributes:
        image (PIL.Image.Image): The image in RGB mode, upright.
        sha256 (str): Hexadecimal SHA-256 of the exact bytes decoded.
    """

    image: Image.Image
    sha256: str


def read_image(path: str | os.PathLike[str]) -> ImageFile:
    """Read an image file's bytes once: their digest and the decoded image.

    Args:
        path (str or os.PathLike): File to read (any format Pillow reads).

    Returns:
        ImageFile: The image in RGB mode, EXIF orientation applied,
        high-bit-depth images rescaled from their real range to 0..255, and
        the SHA-256 of the bytes it was decoded from.

    Raises:
        ImageLoadError: If the file is missing, a directory, unreadable, not
            a complete image, or over Pillow's decompression-bomb limit
            (``PIL.Image.MAX_IMAGE_PIXELS``); the message names the file.

    Example::

        >>> read_image("cat.jpg").image.mode
        'RGB'
    """
    from PIL import Image, ImageOps, UnidentifiedImageError  # noqa: F811

    name = os.fspath(path)
    if not os.path.isfile(path):
        reason = "is a directory" if os.path.isdir(path) else "does not exist"
        raise ImageLoadError(f"image {name!r} {reason}")
    try:
        with open(path, "rb") as file:
            data = file.read()
        with Image.open(io.BytesIO(data)) as image:
            upright = ImageOps.exif_transpose(image)
            return ImageFile(_to_rgb(upright), hashlib.sha256(data).hexdigest())
    except UnidentifiedImageError as error:
        raise ImageLoadError(
            f"image {name!r} is not an image file Pillow can read"
        ) from error
    except Image.DecompressionBombError as error:
        raise ImageLoadError(
            f"image {name!r} is over Pillow's decompression-bomb limit ({error}); "
            "skipped. Raise PIL.Image.MAX_IMAGE_PIXELS if you trust the file"
        ) from error
    except (OSError, ValueError) as error:
        raise ImageLoadError(f"image {name!r} cannot be read ({error})") from error


def load_image(path: str | os.PathLike[str]) -> Image.Image:
    """Read an image file as 8-bit RGB, fully decoded and upright.

    Args:
        path (str or os.PathLike): File to read (see :func:`read_image`).

    Returns:
        PIL.Image.Image: ``read_image(path).image``.

    Raises:
        ImageLoadError: As :func:`read_image`.

    Example::

        >>> load_image("cat.jpg").mode
        'RGB'
    """
    return read_image(path).image


def _to_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB; single-channel high-depth images rescaled by their range."""
    from PIL import Image

    if image.mode not in _HIGH_DEPTH_MODES:
        return image.convert("RGB")
    values = np.asarray(image, dtype=np.float64)
    finite = values[np.isfinite(values)]
    low, high = (finite.min(), finite.max()) if finite.size else (0.0, 0.0)
    span = high - low
    scaled = (values - low) * (255.0 / span) if span > 0 else np.zeros_like(values)
    gray = np.nan_to_num(scaled, nan=0.0, posinf=255.0, neginf=0.0)
    return Image.fromarray(np.rint(gray).astype(np.uint8)).convert("RGB")
