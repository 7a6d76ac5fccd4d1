"""The ``imagenet-loc:PATH`` source: ILSVRC2012 validation images with CLS-LOC boxes.

Reads both layouts ImageNet is distributed in: the per-image bounding-box
files (``ILSVRC2012_bbox_val_v3.tgz``) and Kaggle's
``LOC_val_solution.csv`` with ``LOC_synset_mapping.txt``.
"""

from __future__ import annotations

import csv
import re
import xml.etree.ElementTree as ElementTree
from collections.abc import Mapping, Sequence
from pathlib import Path

from captum_igcam.evaluation.datasets.boxes import BoxChecker, RawObject, image_size
from captum_igcam.evaluation.datasets.pascal_voc import parse_voc_annotation
from captum_igcam.evaluation.datasets.samples import Dataset, Sample, file_sample

#: File names of the ILSVRC2012 validation images and their box files.
IMAGENET_VAL_IMAGE = re.compile(r"^ILSVRC2012_val_\d{8}\.JPEG$")
IMAGENET_VAL_XML = re.compile(r"^ILSVRC2012_val_\d{8}\.xml$")
IMAGENET_SOLUTION = "LOC_val_solution.csv"
IMAGENET_SYNSETS = "LOC_synset_mapping.txt"
IMAGENET_CLASSES = 1000
#: Fields of one object in ``LOC_val_solution.csv``'s ``PredictionString``.
SOLUTION_GROUP = "synset xmin ymin xmax ymax"


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
      the Kaggle ImageNet localisation challenge. A UTF-8 byte-order mark (as
      spreadsheet programs write) is accepted. Several rows for one
      ``ImageId`` add up: the image has the boxes of all of them.

    Class indices follow ``LOC_synset_mapping.txt`` at ``root`` (lines
    ``n01440764 tench, Tinca tinca``, in class-index order: the 1000 synsets
    sorted). Without it, the XML layout may stand alone only when its files
    name all 1000 synsets, whose sorted order is the same index order.
    Objects marked ``difficult`` are left out. Box corners are read as in
    VOC: 1-based inclusive pixels, made half-open and 0-based, then clipped
    to the image; an object whose box is missing a coordinate or has no area
    inside the image is left out and listed in :attr:`Dataset.skipped`. The
    target of each image is its annotated class; images are used in
    file-name order.

    Args:
        root (Path): The directory.
        n (int): Most images to use.

    Returns:
        Dataset: One sample per annotated image, one annotation per synset.

    Raises:
        ValueError: If ``root`` holds no validation images, no box files, or
            no way to map synsets to class indices, or a file cannot be
            parsed (the message names the file and the line or object).

    Example::

        >>> dataset = imagenet_loc(Path("/data/ILSVRC2012"), n=100)
        >>> next(iter(dataset)).annotations[0].label
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
        objects = _read_loc_solution(solution, synsets)
        layout = IMAGENET_SOLUTION
    else:
        objects = _read_xml_files(root)
        layout = "bounding-box XML files"
    checker = BoxChecker()
    chosen = []
    for stem in sorted(objects):
        if len(chosen) == n:
            break
        if stem not in images or not objects[stem]:
            continue
        annotations = checker.annotations(objects[stem], image_size(images[stem]))
        if annotations:
            chosen.append((images[stem], annotations))

    def load(index: int) -> Sample:
        path, annotations = chosen[index]
        return file_sample(path, annotations)

    note = (
        f"ImageNet CLS-LOC validation under {root} ({layout}): "
        f"{len(images)} images found, {len(chosen)} annotated used"
    )
    return Dataset(
        f"imagenet-loc:{root}",
        True,
        len(chosen),
        load,
        [note, *checker.notes()],
        checker.skipped,
    )


def _read_xml_files(root: Path) -> dict[str, list[RawObject]]:
    """The per-image box files: image id -> objects."""
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
    return {
        path.stem: parse_voc_annotation(path, classes, strict=True)[1]
        for path in xml_files
    }


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
    text = path.read_text(encoding="utf-8-sig")
    for number, line in enumerate(text.splitlines()):
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
) -> dict[str, list[RawObject]]:
    """``LOC_val_solution.csv``: image id -> objects.

    Several rows for one image id add up: the image has the objects of all
    of them (each named by its own line).
    """
    objects: dict[str, list[RawObject]] = {}
    # utf-8-sig: a byte-order mark would otherwise become part of "ImageId".
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None or [field.strip() for field in header[:2]] != [
            "ImageId",
            "PredictionString",
        ]:
            raise ValueError(
                f"dataset: {str(path)!r} line 1: expected the header "
                f"ImageId,PredictionString, got {','.join(header or [])!r}"
            )
        for row in reader:
            where = f"{str(path)!r} line {reader.line_num}"
            if not any(field.strip() for field in row):
                continue
            if len(row) != 2:
                raise ValueError(
                    f"dataset: {where}: expected 2 fields "
                    f"(ImageId,PredictionString), got {len(row)}: {','.join(row)!r}"
                )
            image_id, prediction = row[0].strip(), row[1]
            objects.setdefault(image_id, []).extend(
                _solution_objects(image_id, prediction, synsets, where)
            )
    return objects


def _solution_objects(
    image_id: str, prediction: str, synsets: Mapping[str, int], where: str
) -> list[RawObject]:
    """The objects of one ``PredictionString``."""
    fields = prediction.split()
    if len(fields) % 5:
        raise ValueError(
            f"dataset: {where} ({image_id}): expected groups of "
            f"'{SOLUTION_GROUP}', got {prediction!r}"
        )
    objects = []
    for start in range(0, len(fields), 5):
        synset, *corners = fields[start : start + 5]
        if synset not in synsets:
            raise ValueError(
                f"dataset: {where} ({image_id}): synset {synset!r} is not in "
                f"{IMAGENET_SYNSETS}"
            )
        try:
            x_min, y_min, x_max, y_max = map(float, corners)
        except ValueError:
            raise ValueError(
                f"dataset: {where} ({image_id}): expected numbers for "
                f"'{SOLUTION_GROUP}', got {' '.join(fields[start : start + 5])!r}"
            ) from None
        objects.append(
            RawObject(
                synset,
                frozenset({synsets[synset]}),
                (x_min - 1, y_min - 1, x_max, y_max),
                f"{where} ({image_id}), object {start // 5 + 1}",
                f"{IMAGENET_SYNSETS}, {synset}",
            )
        )
    return objects


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
