"""Images to evaluate explanations on, with ground-truth boxes where known.

One interface, four sources, chosen by a spec string (see :func:`load_dataset`):

- ``"composites"``: built in and offline. Real object photos from
  scikit-image (a cat, an espresso cup, a rocket, a motorcycle) are pasted
  at random positions and scales onto real texture backgrounds (grass,
  gravel, brick, the Hubble deep field), so each sample has an exact
  ground-truth box. Deterministic for a given seed; the four objects take
  turns, and no sample is filtered by the model.
- ``"imagenet-loc:PATH"``: the ILSVRC2012 validation images with their
  CLS-LOC boxes, as distributed (the field's localisation protocol).
- ``"voc:PATH"``: a PASCAL VOC-format directory (``JPEGImages/`` and
  ``Annotations/*.xml``), with a mapping from VOC class names to model
  outputs, for the protocol of the Integrated Grad-CAM paper.
- ``"folder:PATH"``: plain images without boxes, for the faithfulness
  metrics only.

Boxes are ``(x_min, y_min, x_max, y_max)`` in the image's own pixels,
half-open (the convention of :mod:`captum_igcam.evaluation.metrics`).
"""

from __future__ import annotations

import csv
import json
import os
import re
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from captum_igcam.app.images import load_image
from captum_igcam.app.settings import check_positive_int

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")
DATASET_KINDS = ("composites", "imagenet-loc:PATH", "voc:PATH", "folder:PATH")
#: File names of the ILSVRC2012 validation images and their box files.
IMAGENET_VAL_IMAGE = re.compile(r"^ILSVRC2012_val_\d{8}\.JPEG$")
IMAGENET_VAL_XML = re.compile(r"^ILSVRC2012_val_\d{8}\.xml$")
IMAGENET_SOLUTION = "LOC_val_solution.csv"
IMAGENET_SYNSETS = "LOC_synset_mapping.txt"
IMAGENET_CLASSES = 1000


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
COMPOSITE_SCALE = (0.2, 0.45)


def load_dataset(
    spec: str,
    n: int,
    seed: int = 0,
    class_map: Mapping[str, int | Sequence[int]] | None = None,
) -> Dataset:
    """Open a data source by its spec string.

    Args:
        spec (str): ``"composites"``, ``"imagenet-loc:PATH"``, ``"voc:PATH"``
            or ``"folder:PATH"``.
        n (int): Most samples to use (the first ``n`` images, sorted by name,
            for directories).
        seed (int, optional): Seed of the composites.
            Default: 0
        class_map (Mapping, optional): For ``voc:``, VOC class name -> model
            output index or list of indices (see :func:`read_class_map`).
            Default: None

    Returns:
        Dataset: The samples.

    Raises:
        ValueError: For an unknown spec, a missing directory or file,
            ``n < 1`` or ``voc:`` without ``class_map``.

    Example::

        >>> dataset = load_dataset("composites", n=8)
        >>> dataset = load_dataset("imagenet-loc:/data/ILSVRC2012", n=100)
    """
    check_positive_int("n", n)
    kind, _, path = spec.partition(":")
    if kind == "composites" and not path:
        return composites(n, seed)
    if kind == "imagenet-loc" and path:
        return imagenet_loc(Path(path), n)
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


def voc(root: Path, class_map: Mapping[str, int | Sequence[int]], n: int) -> Dataset:
    """A PASCAL VOC-format directory: ``JPEGImages/`` and ``Annotations/``.

    Every ``Annotations/*.xml`` file (sorted by name) describes one image of
    ``JPEGImages/``; objects whose class is not in ``class_map`` are ignored,
    objects marked ``difficult`` are left out (TorchRay's pointing game), and
    images without a remaining object are skipped. VOC's 1-based inclusive
    pixel boxes become half-open 0-based boxes.

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
        filename = filename or f"{xml_path.stem}.jpg"
        if annotations:
            parsed.append((root / "JPEGImages" / filename, annotations))
        if len(parsed) == n:
            break

    def load(index: int) -> Sample:
        path, annotations = parsed[index]
        return Sample(path.stem, np.asarray(load_image(path)), annotations)

    note = f"VOC directory {root}: {len(parsed)} images with mapped classes"
    return Dataset(f"voc:{root}", True, len(parsed), load, [note])


def imagenet_loc(root: Path, n: int) -> Dataset:
    """The ILSVRC2012 validation images with their CLS-LOC boxes.

    The images ``ILSVRC2012_val_XXXXXXXX.JPEG`` may lie anywhere under
    ``root``. The boxes come from one of the two layouts ImageNet is
    distributed in:

    - the per-image bounding-box files ``ILSVRC2012_val_XXXXXXXX.xml``
      (PASCAL VOC format, ``<object><name>n01440764</name><bndbox>...``)
      anywhere under ``root``;
    - ``LOC_val_solution.csv`` at ``root`` (header ``ImageId,PredictionString``;
      ``PredictionString`` holds groups ``synset xmin ymin xmax ymax``), as in
      the Kaggle ImageNet localisation challenge.

    Class indices follow ``LOC_synset_mapping.txt`` at ``root`` (lines
    ``n01440764 tench, Tinca tinca``, in class-index order: the 1000 synsets
    sorted). Without it, the XML layout may stand alone only when its files
    name all 1000 synsets, whose sorted order is the same index order.
    Objects marked ``difficult`` are left out. Box corners are read as in
    VOC: 1-based inclusive pixels, made half-open and 0-based. The target of
    each image is its annotated class; images are used in file-name order.

    Args:
        root (Path): The directory.
        n (int): Most images to use.

    Returns:
        Dataset: One sample per annotated image, one annotation per synset.

    Raises:
        ValueError: If ``root`` holds no validation images, no box files, or
            no way to map synsets to class indices, or a file cannot be parsed.

    Example::

        >>> dataset = imagenet_loc(Path("/data/ILSVRC2012"), n=100)
        >>> dataset[0].annotations[0].label
        'n01751748'
    """
    if not root.is_dir():
        raise ValueError(f"dataset: {str(root)!r} is not a directory")
    images = {
        path.stem: path
        for path in root.rglob("ILSVRC2012_val_*")
        if IMAGENET_VAL_IMAGE.match(path.name)
    }
    if not images:
        raise ValueError(
            f"dataset: no ILSVRC2012_val_XXXXXXXX.JPEG images under {str(root)!r}"
        )
    solution = root / IMAGENET_SOLUTION
    if solution.is_file():
        synsets = _read_synsets(root / IMAGENET_SYNSETS, required=True)
        boxes = _read_loc_solution(solution, synsets)
        layout = IMAGENET_SOLUTION
    else:
        xml_files = sorted(
            path
            for path in root.rglob("ILSVRC2012_val_*.xml")
            if IMAGENET_VAL_XML.match(path.name)
        )
        if not xml_files:
            raise ValueError(
                f"dataset: {str(root)!r} has neither {IMAGENET_SOLUTION} nor "
                "ILSVRC2012_val_XXXXXXXX.xml box files"
            )
        synsets = _read_synsets(root / IMAGENET_SYNSETS, required=False)
        if synsets is None:
            synsets = _synsets_from_xml(xml_files, root)
        classes = {synset: frozenset({index}) for synset, index in synsets.items()}
        boxes = {}
        for xml_path in xml_files:
            _, annotations = _parse_voc_annotation(xml_path, classes, strict=True)
            boxes[xml_path.stem] = annotations
        layout = "bounding-box XML files"
    chosen = [
        (images[stem], annotations)
        for stem, annotations in sorted(boxes.items())
        if stem in images and annotations
    ][:n]

    def load(index: int) -> Sample:
        path, annotations = chosen[index]
        return Sample(path.stem, np.asarray(load_image(path)), annotations)

    note = (
        f"ImageNet CLS-LOC validation under {root} ({layout}): "
        f"{len(images)} images found, {len(chosen)} annotated used"
    )
    return Dataset(f"imagenet-loc:{root}", True, len(chosen), load, [note])


def _read_synsets(path: Path, required: bool) -> dict[str, int] | None:
    """``LOC_synset_mapping.txt``: synset -> class index (its line number)."""
    if not path.is_file():
        if required:
            raise ValueError(
                f"dataset: {IMAGENET_SOLUTION} needs {IMAGENET_SYNSETS} beside it "
                f"({str(path)!r} is missing)"
            )
        return None
    synsets = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
        synset = line.split(" ", 1)[0].strip()
        if not re.fullmatch(r"n\d{8}", synset):
            raise ValueError(
                f"dataset: {str(path)!r} line {number + 1}: expected "
                f"'nXXXXXXXX class name', got {line!r}"
            )
        synsets[synset] = number
    if len(synsets) != IMAGENET_CLASSES:
        raise ValueError(
            f"dataset: {str(path)!r} lists {len(synsets)} synsets, expected "
            f"{IMAGENET_CLASSES}"
        )
    return synsets


def _read_loc_solution(
    path: Path, synsets: Mapping[str, int]
) -> dict[str, tuple[Annotation, ...]]:
    """``LOC_val_solution.csv``: image id -> annotations."""
    annotations = {}
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or not {"ImageId", "PredictionString"} <= set(
            reader.fieldnames
        ):
            raise ValueError(
                f"dataset: {str(path)!r}: expected the header ImageId,PredictionString"
            )
        for row in reader:
            fields = row["PredictionString"].split()
            if len(fields) % 5:
                raise ValueError(
                    f"dataset: {str(path)!r}, {row['ImageId']}: expected groups of "
                    f"'synset xmin ymin xmax ymax', got {row['PredictionString']!r}"
                )
            found: dict[str, list[list[float]]] = {}
            for start in range(0, len(fields), 5):
                synset = fields[start]
                if synset not in synsets:
                    raise ValueError(
                        f"dataset: {str(path)!r}, {row['ImageId']}: synset "
                        f"{synset!r} is not in {IMAGENET_SYNSETS}"
                    )
                x_min, y_min, x_max, y_max = map(float, fields[start + 1 : start + 5])
                found.setdefault(synset, []).append(
                    [x_min - 1, y_min - 1, x_max, y_max]
                )
            annotations[row["ImageId"]] = tuple(
                Annotation(s, frozenset({synsets[s]}), np.asarray(b, dtype=np.float64))
                for s, b in found.items()
            )
    return annotations


def _synsets_from_xml(xml_files: Sequence[Path], root: Path) -> dict[str, int]:
    """The sorted synsets of the XML files, when they name all 1000."""
    names = set()
    for xml_path in xml_files:
        try:
            tree = ElementTree.parse(xml_path)
        except ElementTree.ParseError as error:
            raise ValueError(
                f"dataset: cannot parse {str(xml_path)!r} ({error})"
            ) from error
        names.update((o.findtext("name") or "").strip() for o in tree.iter("object"))
    if len(names) != IMAGENET_CLASSES:
        raise ValueError(
            f"dataset: the box files under {str(root)!r} name {len(names)} synsets, "
            f"not all {IMAGENET_CLASSES}, so their class indices are unknown; put "
            f"{IMAGENET_SYNSETS} (the {IMAGENET_CLASSES} synsets in class-index "
            "order) at the root"
        )
    return {synset: index for index, synset in enumerate(sorted(names))}


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
    xml_path: Path, classes: Mapping[str, frozenset[int]], strict: bool = False
) -> tuple[str | None, tuple[Annotation, ...]]:
    """A VOC-format file's image name and its non-difficult objects by class.

    Objects of other classes are ignored, or refused when ``strict``.
    """
    try:
        root = ElementTree.parse(xml_path).getroot()
        filename = root.findtext("filename")
        boxes: dict[str, list[list[float]]] = {}
        for obj in root.iter("object"):
            name = (obj.findtext("name") or "").strip()
            if strict and name not in classes:
                raise ValueError(f"class {name!r} is not among the known classes")
            box = obj.find("bndbox")
            difficult = (obj.findtext("difficult") or "0").strip() == "1"
            if name not in classes or box is None or difficult:
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
