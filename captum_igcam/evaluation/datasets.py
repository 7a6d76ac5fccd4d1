"""Images to evaluate explanations on, with ground-truth boxes where known.

One interface, three sources, chosen by a spec string (see :func:`load_dataset`):

- ``"composites"``: built in and offline. Real object photos from
  scikit-image (a cat, an espresso cup, a rocket, a motorcycle) are pasted
  at random positions and scales onto real texture backgrounds (grass,
  gravel, brick, the Hubble deep field), so each sample has an exact
  ground-truth box. Deterministic for a given seed. Only composites that
  the model classifies as the pasted object are kept.
- ``"voc:PATH"``: a PASCAL VOC-format directory (``JPEGImages/`` and
  ``Annotations/*.xml``), with a mapping from VOC class names to model
  outputs, for the protocol of the Integrated Grad-CAM paper.
- ``"folder:PATH"``: plain images without boxes, for the faithfulness
  metrics only.

Boxes are ``(x_min, y_min, x_max, y_max)`` in the image's own pixels,
half-open (the convention of :mod:`captum_igcam.evaluation.metrics`).
"""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from captum_igcam.app.images import load_image
from captum_igcam.app.models import ModelBundle
from captum_igcam.app.settings import check_positive_int

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")
DATASET_KINDS = ("composites", "voc:PATH", "folder:PATH")


@dataclass(frozen=True)
class Annotation:
    """One object class present in an image.

    Args:
        label (str): Class name; the pointing game averages over labels.
        classes (frozenset[int]): Model outputs that count as this class
            (e.g. all five ImageNet cat classes); the explained target is the
            highest-scoring of them.
        boxes (np.ndarray): ``(M, 4)`` float boxes of the class's instances.
    """

    label: str
    classes: frozenset[int]
    boxes: np.ndarray


@dataclass(frozen=True)
class Sample:
    """An image and the objects annotated in it (none for ``folder:``).

    Args:
        name (str): Identifier (file stem or composite description).
        image (np.ndarray): ``HxWx3`` uint8 RGB image.
        annotations (tuple[Annotation, ...]): Annotated classes.
    """

    name: str
    image: np.ndarray
    annotations: tuple[Annotation, ...] = ()


@dataclass
class Dataset:
    """Samples to evaluate on, loaded lazily.

    Args:
        name (str): The spec the dataset was loaded from.
        has_boxes (bool): Whether samples carry ground-truth boxes.
        size (int): Number of samples.
        loader (Callable[[int], Sample]): Returns sample ``i``.
        notes (list[str]): Facts about how it was built, for reports
            (e.g. how many composites were generated and kept).
    """

    name: str
    has_boxes: bool
    size: int
    loader: Callable[[int], Sample]
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[Sample]:
        return (self.loader(index) for index in range(self.size))


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
COMPOSITE_SCALE = (0.35, 0.65)
#: Composites generated at most per requested sample before giving up.
COMPOSITE_MAX_ATTEMPTS_PER_SAMPLE = 10
_COMPOSITE_BATCH = 8  # candidates classified per forward pass


def load_dataset(
    spec: str,
    bundle: ModelBundle | None,
    n: int,
    seed: int = 0,
    class_map: Mapping[str, int | Sequence[int]] | None = None,
) -> Dataset:
    """Open a data source by its spec string.

    Args:
        spec (str): ``"composites"``, ``"voc:PATH"`` or ``"folder:PATH"``.
        bundle (ModelBundle or None): The model explained; composites are
            filtered by its predictions (other sources do not use it).
        n (int): Most samples to use (the first ``n`` files, sorted by name,
            for directories).
        seed (int, optional): Seed of the composites.
            Default: 0
        class_map (Mapping, optional): For ``voc:``, VOC class name -> model
            output index or list of indices (see :func:`read_class_map`).
            Default: None

    Returns:
        Dataset: The samples.

    Raises:
        ValueError: For an unknown spec, a missing directory, ``n < 1``,
            ``voc:`` without ``class_map`` or composites without ``bundle``.

    Example::

        >>> dataset = load_dataset("composites", load_model(), n=8)
        >>> dataset.notes
        ['generated 11 composites, kept 8 ...']
    """
    check_positive_int("n", n)
    kind, _, path = spec.partition(":")
    if kind == "composites" and not path:
        if bundle is None:
            raise ValueError("bundle: composites need the model that filters them")
        return composites(bundle, n, seed)
    if kind == "voc" and path:
        if class_map is None:
            raise ValueError(
                "class_map: voc: datasets need a mapping from VOC class names to "
                "model outputs (e.g. --class-map FILE.json)"
            )
        return voc(Path(path), class_map, n)
    if kind == "folder" and path:
        return folder(Path(path), n)
    raise ValueError(
        f"dataset: expected one of {', '.join(DATASET_KINDS)}, got {spec!r}"
    )


def composites(bundle: ModelBundle, n: int, seed: int = 0) -> Dataset:
    """Object photos pasted onto backgrounds, kept when the model recognises them.

    Each candidate pastes one of :data:`COMPOSITE_OBJECTS`, resized so that
    its longer side is a random fraction (:data:`COMPOSITE_SCALE`) of a
    :data:`COMPOSITE_SIZE` square canvas, at a random position on a random
    square crop of one of :data:`COMPOSITE_BACKGROUNDS`. The box is the pasted
    rectangle. A candidate is kept when the model's top-1 class is one of the
    object's classes. Candidates are generated until ``n`` are kept or
    ``COMPOSITE_MAX_ATTEMPTS_PER_SAMPLE * n`` have been tried.

    Args:
        bundle (ModelBundle): The classifier that filters the candidates.
        n (int): Number of composites wanted.
        seed (int, optional): Seed of the random layout.
            Default: 0

    Returns:
        Dataset: Up to ``n`` samples; ``notes`` says how many were generated
        and kept, per object.
    """
    rng = np.random.default_rng(seed)
    objects = [(spec, spec.pixels()) for spec in COMPOSITE_OBJECTS]
    backgrounds = [_background(name) for name in COMPOSITE_BACKGROUNDS]
    kept: list[Sample] = []
    tried = {spec.label: 0 for spec in COMPOSITE_OBJECTS}
    accepted = dict.fromkeys(tried, 0)
    generated = 0
    while len(kept) < n and generated < COMPOSITE_MAX_ATTEMPTS_PER_SAMPLE * n:
        candidates = [
            _paste(objects[rng.integers(len(objects))], backgrounds, rng, index)
            for index in range(generated, generated + _COMPOSITE_BATCH)
        ]
        generated += _COMPOSITE_BATCH
        predictions = _predict(bundle, [sample.image for sample in candidates])
        for sample, predicted in zip(candidates, predictions, strict=True):
            (annotation,) = sample.annotations
            tried[annotation.label] += 1
            if predicted in annotation.classes and len(kept) < n:
                accepted[annotation.label] += 1
                kept.append(sample)
    per_object = ", ".join(
        f"{label} {accepted[label]}/{tried[label]}" for label in tried
    )
    note = (
        f"generated {generated} composites (seed {seed}), kept "
        f"{len(kept)} that {bundle.name} classifies as the pasted object "
        f"(kept/generated: {per_object})"
    )
    return Dataset("composites", True, len(kept), kept.__getitem__, [note])


def voc(root: Path, class_map: Mapping[str, int | Sequence[int]], n: int) -> Dataset:
    """A PASCAL VOC-format directory: ``JPEGImages/`` and ``Annotations/``.

    Every ``Annotations/*.xml`` file (sorted by name) describes one image of
    ``JPEGImages/``; objects whose class is not in ``class_map`` are ignored,
    and images without a mapped object are skipped. All instances count,
    including those marked ``difficult``. VOC's 1-based inclusive pixel
    boxes become half-open 0-based boxes.

    Args:
        root (Path): The directory.
        class_map (Mapping): VOC class name -> model output index, or a list
            of indices that all count as the class.
        n (int): Most images to use.

    Returns:
        Dataset: One sample per image, one annotation per mapped class.

    Raises:
        ValueError: If the directory layout is wrong, the map is empty or an
            annotation file cannot be parsed.
    """
    classes = _check_class_map(class_map)
    annotations_dir = root / "Annotations"
    if not annotations_dir.is_dir() or not (root / "JPEGImages").is_dir():
        raise ValueError(
            f"dataset: {str(root)!r} is not a VOC directory (expected "
            "JPEGImages/ and Annotations/ inside)"
        )
    parsed = []
    for xml_path in sorted(annotations_dir.glob("*.xml")):
        filename, annotations = _parse_voc_annotation(xml_path, classes)
        if annotations:
            parsed.append((root / "JPEGImages" / filename, annotations))
        if len(parsed) == n:
            break

    def load(index: int) -> Sample:
        path, annotations = parsed[index]
        return Sample(path.stem, np.asarray(load_image(path)), annotations)

    note = f"VOC directory {root}: {len(parsed)} images with mapped classes"
    return Dataset(f"voc:{root}", True, len(parsed), load, [note])


def folder(root: Path, n: int) -> Dataset:
    """Plain images in a directory (sorted by name), without boxes.

    Args:
        root (Path): The directory; files with an image extension are used.
        n (int): Most images to use.

    Returns:
        Dataset: Samples without annotations.

    Raises:
        ValueError: If the directory does not exist or holds no images.
    """
    if not root.is_dir():
        raise ValueError(f"dataset: {str(root)!r} is not a directory")
    paths = sorted(
        path for path in root.iterdir() if path.suffix.lower() in IMAGE_EXTENSIONS
    )[:n]
    if not paths:
        raise ValueError(
            f"dataset: no images ({', '.join(IMAGE_EXTENSIONS)}) in {str(root)!r}"
        )

    def load(index: int) -> Sample:
        return Sample(paths[index].stem, np.asarray(load_image(paths[index])))

    return Dataset(f"folder:{root}", False, len(paths), load, [])


def read_class_map(path: str | os.PathLike[str]) -> dict[str, list[int]]:
    """Read a JSON class map: ``{"cat": 281, "dog": [151, 152], ...}``.

    Args:
        path (str or os.PathLike): The JSON file.

    Returns:
        dict[str, list[int]]: Class name -> model output indices.

    Raises:
        ValueError: If the file is missing, not JSON, or not such a mapping.
    """
    try:
        with open(path, encoding="utf-8") as handle:
            raw = json.load(handle)
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(
            f"class_map: cannot read {os.fspath(path)!r} ({error})"
        ) from error
    return {name: sorted(indices) for name, indices in _check_class_map(raw).items()}


def _check_class_map(raw: object) -> dict[str, frozenset[int]]:
    expected = "expected a JSON object of class name -> index or list of indices"
    if not isinstance(raw, Mapping) or not raw:
        raise ValueError(f"class_map: {expected}")
    checked = {}
    for name, value in raw.items():
        indices = [value] if isinstance(value, int) else value
        if (
            not isinstance(indices, Sequence)
            or not indices
            or not all(isinstance(i, int) and i >= 0 for i in indices)
        ):
            raise ValueError(f"class_map: {expected}; got {value!r} for {name!r}")
        checked[str(name)] = frozenset(indices)
    return checked


def _parse_voc_annotation(
    xml_path: Path, classes: Mapping[str, frozenset[int]]
) -> tuple[str, tuple[Annotation, ...]]:
    try:
        root = ElementTree.parse(xml_path).getroot()
        filename = root.findtext("filename") or f"{xml_path.stem}.jpg"
        boxes: dict[str, list[list[float]]] = {}
        for obj in root.iter("object"):
            name = (obj.findtext("name") or "").strip()
            box = obj.find("bndbox")
            if name not in classes or box is None:
                continue
            x_min, y_min, x_max, y_max = (
                float(box.findtext(tag) or "nan")
                for tag in ("xmin", "ymin", "xmax", "ymax")
            )
            boxes.setdefault(name, []).append([x_min - 1, y_min - 1, x_max, y_max])
    except (ElementTree.ParseError, ValueError) as error:
        raise ValueError(
            f"dataset: cannot parse {str(xml_path)!r} ({error})"
        ) from error
    annotations = tuple(
        Annotation(name, classes[name], np.asarray(found, dtype=np.float64))
        for name, found in boxes.items()
    )
    return filename, annotations


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


def _predict(bundle: ModelBundle, images: Sequence[np.ndarray]) -> list[int]:
    inputs = torch.stack([bundle.preprocess(image) for image in images])
    with torch.no_grad():
        return bundle.model(inputs).argmax(dim=1).tolist()
