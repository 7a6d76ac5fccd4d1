"""Ground-truth boxes as the files give them, checked against their image.

The file parsers (:mod:`~captum_igcam.evaluation.datasets.pascal_voc`,
:mod:`~captum_igcam.evaluation.datasets.imagenet`) turn each annotated object
into a :class:`RawObject` with half-open, 0-based corners; :class:`BoxChecker`
then clips each box to its image and leaves out, with a line naming the file
and the object, every box that cannot be used: a missing or non-finite
coordinate, or no area inside the image. A metric is never computed on a
box that is not there, so a broken annotation cannot be averaged in as a
miss.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from captum_igcam.evaluation.datasets.samples import Annotation

#: Names of the four corners, in the order of a box.
CORNERS = ("xmin", "ymin", "xmax", "ymax")


@dataclass(frozen=True)
class RawObject:
    """One annotated object as its file gives it.

    Args:
        label (str): Class name.
        classes (frozenset[int]): Model outputs that count as the class.
        corners (tuple[float, ...]): ``(x_min, y_min, x_max, y_max)``,
            half-open and 0-based; NaN for a coordinate the file lacks.
        where (str): The file and the object, for messages (e.g.
            ``"'a.xml', object 2"``).
        source (str, optional): Where ``classes`` come from, see
            :class:`~captum_igcam.evaluation.datasets.samples.Annotation`.
            Default: ""
    """

    label: str
    classes: frozenset[int]
    corners: tuple[float, ...]
    where: str
    source: str = ""


@dataclass
class BoxChecker:
    """Clips boxes to their image and records what it clips and leaves out.

    Args:
        skipped (list[str]): One line per object left out.
        clipped (int): Number of boxes that reached outside their image.

    Example::

        >>> checker = BoxChecker()
        >>> objects = [RawObject("cat", frozenset({281}), (-5, 0, 20, 10), "a.xml")]
        >>> checker.annotations(objects, (8, 16))[0].boxes.tolist()
        [[0.0, 0.0, 16.0, 8.0]]
        >>> checker.clipped
        1
    """

    skipped: list[str] = field(default_factory=list)
    clipped: int = 0

    def annotations(
        self, objects: Sequence[RawObject], image_size: tuple[int, int]
    ) -> tuple[Annotation, ...]:
        """The usable boxes of an image's objects, one annotation per class.

        Args:
            objects (sequence of RawObject): The image's objects.
            image_size (tuple[int, int]): Image height and width.

        Returns:
            tuple[Annotation, ...]: Classes with at least one usable box, in
            the order they first occur.
        """
        height, width = image_size
        boxes: dict[str, list[list[float]]] = {}
        first: dict[str, RawObject] = {}
        for obj in objects:
            missing = [
                name
                for name, value in zip(CORNERS, obj.corners, strict=True)
                if not math.isfinite(value)
            ]
            if missing:
                self._skip(obj, f"missing or non-finite {', '.join(missing)}")
                continue
            x_min, y_min, x_max, y_max = obj.corners
            clipped = [
                min(max(x_min, 0.0), width),
                min(max(y_min, 0.0), height),
                min(max(x_max, 0.0), width),
                min(max(y_max, 0.0), height),
            ]
            # The metrics round corners to pixel edges: at least one pixel.
            x0, y0, x1, y1 = np.round(clipped)
            if x1 - x0 < 1 or y1 - y0 < 1:
                self._skip(
                    obj,
                    f"box {_format(obj.corners)} has no area inside the "
                    f"{width}x{height} image",
                )
                continue
            self.clipped += clipped != list(obj.corners)
            boxes.setdefault(obj.label, []).append(clipped)
            first.setdefault(obj.label, obj)
        return tuple(
            Annotation(
                label,
                first[label].classes,
                np.asarray(found, dtype=np.float64),
                first[label].source,
            )
            for label, found in boxes.items()
        )

    def notes(self) -> list[str]:
        """Report lines: counts of clipped and left-out boxes, and the latter."""
        lines = []
        if self.clipped:
            lines.append(f"{self.clipped} boxes reaching outside their image clipped")
        if self.skipped:
            lines.append(
                f"{len(self.skipped)} annotated objects left out (unusable box): "
                + "; ".join(self.skipped)
            )
        return lines

    def _skip(self, obj: RawObject, reason: str) -> None:
        self.skipped.append(f"{obj.where} ({obj.label}): {reason}")


def image_size(path: str | os.PathLike[str]) -> tuple[int, int]:
    """Height and width of an image file as it is loaded (EXIF orientation applied).

    Reads only the file's header.

    Args:
        path (str or os.PathLike): The image file.

    Returns:
        tuple[int, int]: ``(height, width)``.

    Raises:
        ValueError: If the file cannot be opened as an image.
    """
    from PIL import ExifTags, Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            width, height = image.size
            orientation = image.getexif().get(ExifTags.Base.Orientation, 1)
    except (OSError, UnidentifiedImageError) as error:
        raise ValueError(
            f"dataset: cannot read the image {os.fspath(path)!r} ({error})"
        ) from error
    # Orientations 5 to 8 turn the image by a quarter: width and height swap.
    return (width, height) if orientation in (5, 6, 7, 8) else (height, width)


def _format(corners: Sequence[float]) -> str:
    return "(" + ", ".join(f"{value:g}" for value in corners) + ")"
