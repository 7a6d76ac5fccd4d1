"""What every data source returns: samples, their annotations, a lazy data set.

Boxes are ``(x_min, y_min, x_max, y_max)`` in the image's own pixels,
half-open (the convention of :mod:`captum_igcam.evaluation.metrics`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from captum_igcam.app.images import read_image


@dataclass(frozen=True)
class Annotation:
    """One object class present in an image.

    Args:
        label (str): Class name; the pointing game averages over labels.
        classes (frozenset[int]): Model outputs that count as this class
            (e.g. all five ImageNet cat classes); the explained target is the
            highest-scoring of them.
        boxes (np.ndarray): ``(M, 4)`` float boxes of the class's instances,
            inside the image and of positive area
            (:func:`~captum_igcam.evaluation.datasets.boxes.checked_boxes`).
        source (str, optional): Where the class indices come from (a class
            map's file and key), named by errors about them.
            Default: ""
    """

    label: str
    classes: frozenset[int]
    boxes: np.ndarray
    source: str = ""


@dataclass(frozen=True)
class Sample:
    """An image and the objects annotated in it (none for ``folder:``).

    Args:
        name (str): Identifier (file stem or composite description).
        image (np.ndarray): ``HxWx3`` uint8 RGB image.
        annotations (tuple[Annotation, ...]): Annotated classes.
        sha256 (str, optional): SHA-256 of the bytes of the file the image
            was decoded from; None for a generated image.
            Default: None
    """

    name: str
    image: np.ndarray
    annotations: tuple[Annotation, ...] = ()
    sha256: str | None = None


def file_sample(path: Path, annotations: tuple[Annotation, ...] = ()) -> Sample:
    """The sample of an image file, named by its stem, bound to its bytes' digest.

    Args:
        path (Path): The image file.
        annotations (tuple[Annotation, ...], optional): Its annotated classes.
            Default: ()

    Returns:
        Sample: The decoded image (one read of the file) with the SHA-256 of
        the bytes it was decoded from.
    """
    read = read_image(path)
    return Sample(path.stem, np.asarray(read.image), annotations, read.sha256)


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
        skipped (list[str]): One line per annotated object left out because
            its box could not be used (file, object and reason), for reports.
    """

    name: str
    has_boxes: bool
    size: int
    loader: Callable[[int], Sample]
    notes: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[Sample]:
        return (self.loader(index) for index in range(self.size))
