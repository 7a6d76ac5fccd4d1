"""Images to evaluate explanations on, with ground-truth boxes where known.

One interface, four sources, chosen by a spec string (:func:`load_dataset`),
one module each:

- ``"composites"`` (:mod:`.scenes`): built in and offline; object photos
  pasted onto texture backgrounds, with exact boxes.
- ``"imagenet-loc:PATH"`` (:mod:`.imagenet`): the ILSVRC2012 validation
  images with their CLS-LOC boxes, as distributed.
- ``"voc:PATH"`` (:mod:`.pascal_voc`): a PASCAL VOC-format directory, with a
  class map (:mod:`.class_map`) from VOC class names to model outputs.
- ``"folder:PATH"`` (:mod:`.image_folder`): plain images without boxes, for
  the faithfulness metrics only.

Every source returns a :class:`~.samples.Dataset` of
:class:`~.samples.Sample`; boxes read from files are checked against their
image by :mod:`.boxes` (clipped, or left out and listed).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from captum_igcam.app.settings import check_positive_int
from captum_igcam.evaluation.datasets.boxes import BoxChecker, RawObject
from captum_igcam.evaluation.datasets.class_map import check_class_map, read_class_map
from captum_igcam.evaluation.datasets.image_folder import IMAGE_EXTENSIONS, folder
from captum_igcam.evaluation.datasets.imagenet import imagenet_loc
from captum_igcam.evaluation.datasets.pascal_voc import voc
from captum_igcam.evaluation.datasets.samples import Annotation, Dataset, Sample
from captum_igcam.evaluation.datasets.scenes import (
    COMPOSITE_BACKGROUNDS,
    COMPOSITE_OBJECTS,
    COMPOSITE_SCALE,
    COMPOSITE_SIZE,
    CompositeObject,
    composites,
)

DATASET_KINDS = ("composites", "imagenet-loc:PATH", "voc:PATH", "folder:PATH")
ClassMapLike = Mapping[str, int | Sequence[int]] | str | os.PathLike[str]


def load_dataset(
    spec: str,
    n: int,
    seed: int = 0,
    class_map: ClassMapLike | None = None,
) -> Dataset:
    """Open a data source by its spec string.

    Args:
        spec (str): ``"composites"``, ``"imagenet-loc:PATH"``, ``"voc:PATH"``
            or ``"folder:PATH"``.
        n (int): Most samples to use (the first ``n`` usable images, sorted
            by name, for directories).
        seed (int, optional): Seed of the composites.
            Default: 0
        class_map (Mapping or path, optional): For ``voc:``, VOC class name
            -> model output index or list of indices, or a JSON file of such
            a mapping (:func:`read_class_map`; errors then name the file).
            Default: None

    Returns:
        Dataset: The samples; :attr:`Dataset.skipped` lists the annotated
        objects left out for an unusable box.

    Raises:
        ValueError: For an unknown spec, a missing directory or file,
            ``n < 1``, ``voc:`` without ``class_map``, or a file that cannot
            be parsed (the message names it).

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
        if isinstance(class_map, Mapping):
            return voc(Path(path), check_class_map(class_map), n)
        name = f"class_map {os.fspath(class_map)!r}"
        checked = {k: frozenset(v) for k, v in read_class_map(class_map).items()}
        return voc(Path(path), checked, n, class_map_name=name)
    if kind == "folder" and path:
        return folder(Path(path), n)
    raise ValueError(
        f"dataset: expected one of {', '.join(DATASET_KINDS)}, got {spec!r}"
    )


__all__ = [
    "COMPOSITE_BACKGROUNDS",
    "COMPOSITE_OBJECTS",
    "COMPOSITE_SCALE",
    "COMPOSITE_SIZE",
    "DATASET_KINDS",
    "IMAGE_EXTENSIONS",
    "Annotation",
    "BoxChecker",
    "CompositeObject",
    "Dataset",
    "RawObject",
    "Sample",
    "check_class_map",
    "composites",
    "folder",
    "imagenet_loc",
    "load_dataset",
    "read_class_map",
    "voc",
]
