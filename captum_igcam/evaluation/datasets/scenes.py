"""The built-in ``composites`` source: object photos pasted onto backgrounds.

Real object photos from scikit-image (a cat, an espresso cup, a rocket, a
motorcycle) are pasted at random positions and scales onto real texture
backgrounds (grass, gravel, brick, the Hubble deep field), so each sample
has an exact ground-truth box. Offline and deterministic for a seed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from captum_igcam.evaluation.datasets.samples import Annotation, Dataset, Sample


@dataclass(frozen=True)
class CompositeObject:
    """An object photo to paste: a crop of a scikit-image picture.

    Args:
        label (str): Class name.
        image (str): Name of the ``skimage.data`` function giving the photo.
        crop (tuple[int, int, int, int]): ``(top, bottom, left, right)`` of the
            object in the photo.
        classes (frozenset[int]): ImageNet outputs that name the object.
    """

    label: str
    image: str
    crop: tuple[int, int, int, int]
    classes: frozenset[int]

    def pixels(self) -> np.ndarray:
        """The object crop, ``hxwx3`` uint8."""
        from skimage import data

        photo = getattr(data, self.image)()
        photo = photo[0] if isinstance(photo, tuple) else photo
        top, bottom, left, right = self.crop
        return np.ascontiguousarray(photo[top:bottom, left:right])


#: Objects pasted into composites, with the ImageNet classes that name them.
COMPOSITE_OBJECTS = (
    CompositeObject("cat", "chelsea", (0, 300, 60, 400), frozenset(range(281, 286))),
    CompositeObject("cup", "coffee", (10, 290, 170, 420), frozenset({504, 967, 968})),
    CompositeObject(
        "rocket", "rocket", (110, 427, 265, 355), frozenset({657, 744, 812})
    ),
    CompositeObject(
        "motorcycle", "stereo_motorcycle", (140, 500, 60, 741), frozenset({665, 670})
    ),
)
#: ``skimage.data`` photos used as backgrounds (grayscale ones become gray RGB).
COMPOSITE_BACKGROUNDS = ("grass", "gravel", "brick", "hubble_deep_field")
COMPOSITE_SIZE = 320
#: Range of the pasted object's longer side, as a fraction of the canvas side.
COMPOSITE_SCALE = (0.2, 0.45)


def composites(n: int, seed: int = 0) -> Dataset:
    """Object photos pasted onto backgrounds, the four objects in turn.

    Sample ``i`` pastes object ``i mod 4`` of :data:`COMPOSITE_OBJECTS` (so
    every class is present in equal numbers), resized so that its longer side
    is a random fraction (:data:`COMPOSITE_SCALE`) of a
    :data:`COMPOSITE_SIZE` square canvas, at a random position on a random
    square crop of one of :data:`COMPOSITE_BACKGROUNDS`. The box is the pasted
    rectangle. No sample is filtered by a model: as in the ImageNet
    localisation protocol, the explained target is the object's class and
    the benchmark reports the model's top-1 accuracy beside the metrics. The
    images do not depend on the model, so several models see the same set.

    Args:
        n (int): Number of composites.
        seed (int, optional): Seed of the random layout.
            Default: 0

    Returns:
        Dataset: ``n`` samples.
    """
    rng = np.random.default_rng(seed)
    objects = [(spec, spec.pixels()) for spec in COMPOSITE_OBJECTS]
    backgrounds = [_background(name) for name in COMPOSITE_BACKGROUNDS]
    samples = [
        _paste(objects[index % len(objects)], backgrounds, rng, index)
        for index in range(n)
    ]
    note = (
        f"{n} composites (seed {seed}), the {len(objects)} objects in turn, "
        f"longer side {COMPOSITE_SCALE[0]:.0%}-{COMPOSITE_SCALE[1]:.0%} of the "
        f"{COMPOSITE_SIZE} px canvas"
    )
    return Dataset(f"composites (seed {seed})", True, n, samples.__getitem__, [note])


def _background(name: str) -> np.ndarray:
    from skimage import data

    photo = getattr(data, name)()
    return np.stack([photo] * 3, axis=-1) if photo.ndim == 2 else photo[..., :3]


def _paste(
    item: tuple[CompositeObject, np.ndarray],
    backgrounds: Sequence[np.ndarray],
    rng: np.random.Generator,
    index: int,
) -> Sample:
    spec, pixels = item
    background = backgrounds[rng.integers(len(backgrounds))]
    side = int(min(background.shape[:2]) * rng.uniform(0.5, 1.0))
    top = rng.integers(background.shape[0] - side + 1)
    left = rng.integers(background.shape[1] - side + 1)
    canvas = _resize_uint8(
        background[top : top + side, left : left + side], (COMPOSITE_SIZE,) * 2
    )
    scale = rng.uniform(*COMPOSITE_SCALE) * COMPOSITE_SIZE / max(pixels.shape[:2])
    height, width = (max(1, round(d * scale)) for d in pixels.shape[:2])
    y = int(rng.integers(COMPOSITE_SIZE - height + 1))
    x = int(rng.integers(COMPOSITE_SIZE - width + 1))
    canvas[y : y + height, x : x + width] = _resize_uint8(pixels, (height, width))
    box = np.array([[x, y, x + width, y + height]], dtype=np.float64)
    return Sample(
        f"composite-{index:04d}-{spec.label}",
        canvas,
        (Annotation(spec.label, spec.classes, box),),
    )


def _resize_uint8(pixels: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    from PIL import Image

    height, width = shape
    resized = Image.fromarray(pixels).resize((width, height), Image.Resampling.BILINEAR)
    return np.asarray(resized).copy()
