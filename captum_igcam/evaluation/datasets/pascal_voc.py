"""PASCAL VOC-format annotations: the ``voc:PATH`` source and the XML parser.

ImageNet's per-image bounding-box files use the same format, so
:func:`parse_voc_annotation` also serves
:mod:`~captum_igcam.evaluation.datasets.imagenet`.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ElementTree
from collections.abc import Mapping
from pathlib import Path

from captum_igcam.evaluation.datasets.boxes import (
    CORNERS,
    BoxChecker,
    RawObject,
    image_size,
)
from captum_igcam.evaluation.datasets.samples import Dataset, Sample, file_sample


def voc(
    root: Path,
    class_map: Mapping[str, frozenset[int]],
    n: int,
    class_map_name: str = "class_map",
) -> Dataset:
    """A PASCAL VOC-format directory: ``JPEGImages/`` and ``Annotations/``.

    Every ``Annotations/*.xml`` file (sorted by name) describes one image of
    ``JPEGImages/``; objects whose class is not in ``class_map`` are ignored,
    objects marked ``difficult`` are left out (TorchRay's pointing game), and
    images without a remaining object are skipped. VOC's 1-based inclusive
    pixel boxes become half-open 0-based boxes, clipped to the image; an
    object whose box is missing a coordinate or has no area inside the image
    is left out and listed in :attr:`Dataset.skipped`.

    Args:
        root (Path): The directory.
        class_map (Mapping): VOC class name -> model output indices (see
            :func:`~captum_igcam.evaluation.datasets.class_map.check_class_map`).
        n (int): Most images to use.
        class_map_name (str, optional): How errors about an index name the
            map (e.g. its file).
            Default: "class_map"

    Returns:
        Dataset: One sample per image, one annotation per mapped class.

    Raises:
        ValueError: If the directory layout is wrong, an annotation file
            cannot be parsed or an image cannot be opened.
    """
    annotations_dir = root / "Annotations"
    if not annotations_dir.is_dir() or not (root / "JPEGImages").is_dir():
        raise ValueError(
            f"dataset: {str(root)!r} is not a VOC directory (expected "
            "JPEGImages/ and Annotations/ inside)"
        )
    checker = BoxChecker()
    parsed = []
    for xml_path in sorted(annotations_dir.glob("*.xml")):
        filename, objects = parse_voc_annotation(
            xml_path, class_map, source=class_map_name
        )
        if not objects:
            continue
        image_path = root / "JPEGImages" / (filename or f"{xml_path.stem}.jpg")
        annotations = checker.annotations(objects, image_size(image_path))
        if annotations:
            parsed.append((image_path, annotations))
        if len(parsed) == n:
            break

    def load(index: int) -> Sample:
        path, annotations = parsed[index]
        return file_sample(path, annotations)

    notes = [f"VOC directory {root}: {len(parsed)} images with mapped classes"]
    return Dataset(
        f"voc:{root}",
        True,
        len(parsed),
        load,
        notes + checker.notes(),
        checker.skipped,
    )


def parse_voc_annotation(
    xml_path: Path,
    classes: Mapping[str, frozenset[int]],
    strict: bool = False,
    source: str = "",
) -> tuple[str | None, list[RawObject]]:
    """A VOC-format file's image name and its non-difficult objects.

    Args:
        xml_path (Path): The annotation file.
        classes (Mapping): Class name -> model outputs; objects of other
            classes are ignored, or refused when ``strict``.
        strict (bool, optional): Refuse unknown class names.
            Default: False
        source (str, optional): Name of the class map, for
            :attr:`RawObject.source` (with the class name as its key).
            Default: ""

    Returns:
        tuple: The ``<filename>`` (None when absent) and the objects, with
        1-based inclusive corners made half-open and 0-based (NaN where a
        corner is missing).

    Raises:
        ValueError: If the file is not well-formed XML, names an unknown
            class when ``strict``, or holds a corner that is not a number;
            the message names the file and the object.
    """
    try:
        root = ElementTree.parse(xml_path).getroot()
    except ElementTree.ParseError as error:
        raise ValueError(
            f"dataset: cannot parse {str(xml_path)!r} ({error})"
        ) from error
    objects = []
    for number, obj in enumerate(root.iter("object"), start=1):
        where = f"{str(xml_path)!r}, object {number}"
        name = (obj.findtext("name") or "").strip()
        if strict and name not in classes:
            raise ValueError(
                f"dataset: {where}: class {name!r} is not among the known classes"
            )
        difficult = (obj.findtext("difficult") or "0").strip() == "1"
        if name not in classes or difficult:
            continue
        box = obj.find("bndbox")
        texts = [None if box is None else box.findtext(tag) for tag in CORNERS]
        x_min, y_min, x_max, y_max = (_corner(text, where) for text in texts)
        objects.append(
            RawObject(
                name,
                classes[name],
                (x_min - 1, y_min - 1, x_max, y_max),
                where,
                f"{source}, key {name!r}" if source else "",
            )
        )
    return root.findtext("filename"), objects


def _corner(text: str | None, where: str) -> float:
    """A corner's value; NaN when the tag is missing or empty."""
    if text is None or not text.strip():
        return math.nan
    try:
        return float(text)
    except ValueError:
        raise ValueError(
            f"dataset: {where}: expected a number for a box corner, got {text!r}"
        ) from None
