"""Small JPEG pictures for the report: a photo, and a map laid over it."""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image

from captum_igcam.app.maps import normalize, upsample

#: Longer side of a thumbnail, in pixels.
THUMBNAIL_SIZE = 160
#: Opacity of the heat map over the photo.
OVERLAY_ALPHA = 0.5
#: Matplotlib colour map of the overlays (as ``captum-igcam explain``'s figures).
COLOUR_MAP = "jet"


def resized(image: Image.Image, size: int = THUMBNAIL_SIZE) -> Image.Image:
    """A picture resized to ``size`` pixels on its longer side, aspect kept.

    Args:
        image (PIL.Image.Image): RGB picture.
        size (int, optional): Longer side in pixels.
            Default: :data:`THUMBNAIL_SIZE`

    Returns:
        PIL.Image.Image: The resized picture.
    """
    scale = size / max(image.size)
    shape = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(shape, Image.Resampling.LANCZOS)


def overlay(photo: Image.Image, layer_map: torch.Tensor) -> Image.Image:
    """A map's positive part, min-max normalised, coloured over the photo.

    Args:
        photo (PIL.Image.Image): RGB photo (e.g. a :func:`resized` photo).
        layer_map (torch.Tensor): ``(1, h, w)`` map at any resolution; it is
            upsampled bilinearly to the photo's size.

    Returns:
        PIL.Image.Image: The blended RGB picture, the photo's size.
    """
    from matplotlib import colormaps

    heat = upsample(layer_map[None].clamp(min=0), (photo.height, photo.width))
    colours = colormaps[COLOUR_MAP](normalize(heat)[0, 0].numpy())[..., :3]
    blended = (1 - OVERLAY_ALPHA) * np.asarray(photo) / 255.0 + OVERLAY_ALPHA * colours
    return Image.fromarray(np.round(255 * blended).astype(np.uint8))


def jpeg_bytes(image: Image.Image) -> bytes:
    """Encode a picture as JPEG (quality 85)."""
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()
