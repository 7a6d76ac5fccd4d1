"""The ``explain-dataset`` gallery: each photo beside each method's overlay.

:func:`build_gallery` reads one or more ``explain-dataset`` output folders
through :func:`captum_igcam.dataset_job.open_maps` (one folder per method:
e.g. ``--path input`` and ``--path layer``, or two models), writes a photo
thumbnail and one overlay thumbnail per method for every image of the first
folder, and the page that shows them: paged, sortable and filterable by
class, confidence and disagreement between the methods' maps.

Every picture is bound to the bytes it was drawn from. The photo is read
once (:func:`captum_igcam.app.images.read_image`) and its SHA-256 compared
with the digest the index records for the map: a photo whose bytes changed
since ``explain-dataset`` is shown neither as a photo nor under an
overlay, and its card says so plainly.
Thumbnails are named by content: a photo's by the digest of its bytes, an
overlay's by that digest and the map's own bytes, so a photo replaced by
another (even with the same name, size and time) can never show an old
picture. Folders compared side by side must hold maps of the same bytes for
each image they share; otherwise the report is refused, naming the image.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from captum_igcam.app.images import ImageLoadError, read_image
from captum_igcam.app.maps import upsample
from captum_igcam.dataset_job import open_maps
from captum_igcam.dataset_job.maps_io import ExplanationMaps
from captum_igcam.report import files, page, thumbnails

#: Columns of each image's row in the page's data, in order.
GALLERY_COLUMNS = (
    "key",
    "photo",
    "overlays",
    "predicted",
    "probability",
    "target",
    "target_probability",
    "truth",
    "disagreement",
    "source",
)
#: ``source`` column: the photo has the bytes its maps were computed from.
SOURCE_SAME = "same"
#: ``source`` column: the photo's bytes changed since (no overlay is drawn).
SOURCE_CHANGED = "changed"
#: ``source`` column: the photo cannot be read any more.
SOURCE_MISSING = "missing"
#: ``explain-dataset --target`` value whose targets are ground truth.
GROUND_TRUTH_TARGET = "folder"
THUMBNAIL_FOLDER = "thumbs"


def build_gallery(
    folders: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    progress: bool = True,
) -> Path:
    """Write the gallery of ``explain-dataset`` output folders into ``out``.

    Thumbnails are named by the bytes they are drawn from (see the module's
    description), so a second run reuses every thumbnail that is still right
    and writes only the new ones.

    Args:
        folders (sequence of str or os.PathLike): ``explain-dataset --out``
            folders of the same images; the first one's images are shown,
            each folder's maps as one method.
        out (str or os.PathLike): The report folder (see
            :func:`~captum_igcam.report.files.open_report_folder`).
        progress (bool, optional): Show a progress bar, on the screen at
            once and advanced image by image.
            Default: True

    Returns:
        Path: The report's ``index.html``.

    Raises:
        ValueError: If two folders hold maps of different bytes under one
            image name (the message names the image and the folders).

    Example::

        >>> build_gallery(["maps-input", "maps-layer"], "maps-input/report")
        PosixPath('maps-input/report/index.html')
    """
    if not folders:
        raise ValueError("folders: expected at least one explain-dataset folder")
    opened = [open_maps(folder) for folder in folders]
    check_same_images(folders, opened)
    names = method_names(opened, folders)
    report = files.open_report_folder(out)
    (report / THUMBNAIL_FOLDER).mkdir(exist_ok=True)
    first = opened[0]
    truth = first.settings.get("target") == GROUND_TRUTH_TARGET
    rows = _rows(opened, report, truth, progress)
    _note_stale(rows)
    data = {
        "kind": "gallery",
        "title": f"{Path(folders[0]).resolve().name}: {len(rows)} images",
        "methods": names,
        "settings": [maps.settings for maps in opened],
        "truth": truth,
        "classes": _class_names(first, rows),
        "columns": list(GALLERY_COLUMNS),
        "rows": rows,
    }
    return page.write_page(report, "gallery", data)


def _rows(
    opened: Sequence[ExplanationMaps], report: Path, truth: bool, progress: bool
) -> list[list[Any]]:
    """Every row of the first folder's images, with a progress bar."""
    from tqdm import tqdm

    rows = []
    with tqdm(
        total=len(opened[0]),
        unit="image",
        desc="report",
        disable=not progress,
        mininterval=0,
    ) as bar:
        bar.refresh()  # on the screen before the first photo is read
        for key in opened[0]:
            rows.append(_row(key, opened, report, truth))
            bar.update(1)
    return rows


def _note_stale(rows: Sequence[list[Any]]) -> None:
    """Say on stderr which images' files changed or vanished since."""
    stale = [row[COLUMN["key"]] for row in rows if row[COLUMN["source"]] != SOURCE_SAME]
    if stale:
        listed = ", ".join(map(repr, stale[:5])) + (", ..." if len(stale) > 5 else "")
        print(
            f"captum-igcam: note: {len(stale)} image file(s) changed or gone since "
            f"their maps were computed ({listed}): marked on their cards, shown "
            "without photo or overlay; run explain-dataset again to explain them",
            file=sys.stderr,
        )


def _class_names(first: ExplanationMaps, rows: Sequence[list[Any]]) -> dict[str, str]:
    """Index -> name of every class the rows show: the label a segmentation
    or detection record names, ImageNet's, or ``class N``."""
    labels = class_labels(first.settings)
    records = [first.record(key) for key in first]
    named = {r.target: r.explained["target_label"] for r in records if r.explained}
    shown = {row[COLUMN[name]] for row in rows for name in ("predicted", "target")}
    return {
        str(index): named.get(index) or label_of(index, labels)
        for index in sorted(shown - {None})
    }


#: Position of each column in a row.
COLUMN = {name: position for position, name in enumerate(GALLERY_COLUMNS)}


def check_same_images(
    folders: Sequence[str | os.PathLike[str]], opened: Sequence[ExplanationMaps]
) -> None:
    """Refuse folders whose maps of one image name come from different bytes.

    Args:
        folders (sequence of str or os.PathLike): The folders, as given.
        opened (sequence of ExplanationMaps): Their readers, in order.

    Raises:
        ValueError: Naming the first image whose source digests differ.
    """
    first = opened[0]
    for folder, maps in zip(folders[1:], opened[1:]):
        for key, digest in maps.digests.items():
            if key in first.digests and first.digests[key] != digest:
                there = os.fspath(folders[0])
                raise ValueError(
                    f"paths: {key!r} is not the same image in {there!r} and "
                    f"{os.fspath(folder)!r} (SHA-256 {first.digests[key][:12]}... "
                    f"and {digest[:12]}...); a report compares maps of the same "
                    "images: explain the same source folder into each"
                )


def method_names(
    opened: Sequence[ExplanationMaps], folders: Sequence[str | os.PathLike[str]]
) -> list[str]:
    """One label per folder: its method's title, with the model where methods
    repeat, and the folder's name where both repeat.

    Args:
        opened (sequence of ExplanationMaps): The folders' readers.
        folders (sequence of str or os.PathLike): The folders, as given.

    Returns:
        list[str]: E.g. ``["Integrated Grad-CAM", "IG-CAM (layer path)"]``.
    """
    from captum_igcam.app.methods import METHODS

    def title(maps: ExplanationMaps) -> str:
        name = maps.settings.get("attribution")
        return METHODS[name].title if name in METHODS else str(name)

    labels = [title(maps) for maps in opened]
    if len(set(labels)) < len(labels):
        labels = [f"{t}, {m.settings.get('model')}" for t, m in zip(labels, opened)]
    if len(set(labels)) < len(labels):
        labels = [
            f"{label} ({Path(folder).resolve().name})"
            for label, folder in zip(labels, folders)
        ]
    if len(set(labels)) < len(labels):
        labels = [f"{label} ({os.fspath(f)})" for label, f in zip(labels, folders)]
    return labels


def class_labels(settings: dict[str, Any]) -> list[str] | None:
    """ImageNet's class names for a registered (ImageNet) model, else None."""
    from captum_igcam.app.models import imagenet_categories, known_models

    return imagenet_categories() if settings.get("model") in known_models() else None


def label_of(index: int, labels: list[str] | None) -> str:
    """A class's name, or ``class N`` where the names are unknown."""
    if labels is not None and 0 <= index < len(labels):
        return labels[index]
    return f"class {index}"


def disagreement(maps: Sequence[torch.Tensor]) -> float | None:
    """1 - Pearson correlation of the maps' positive parts, mean over pairs.

    Maps of other resolutions are upsampled to the first one's. A constant
    map correlates 1 with another constant map and 0 with anything else.

    Args:
        maps (sequence of torch.Tensor): ``(1, h, w)`` maps of one image.

    Returns:
        float or None: In ``[0, 2]``; None for fewer than two maps.

    Example::

        >>> disagreement([torch.ones(1, 2, 2), torch.ones(1, 2, 2)])
        0.0
    """
    if len(maps) < 2:
        return None
    size = tuple(maps[0].shape[-2:])
    flat = [
        upsample(m[None].float(), size).clamp(min=0).flatten().numpy() for m in maps
    ]
    values = []
    for a, b in itertools.combinations(flat, 2):
        constant_a, constant_b = np.ptp(a) == 0, np.ptp(b) == 0
        if constant_a or constant_b:
            r = 1.0 if constant_a and constant_b else 0.0
        else:
            r = float(np.corrcoef(a, b)[0, 1])
        values.append(1.0 - r)
    return float(np.mean(values))


def _row(key: str, opened: list[Any], report: Path, truth: bool) -> list[Any]:
    """One image's row of :data:`GALLERY_COLUMNS`, writing missing thumbnails.

    ``opened`` are the folders' :func:`open_maps` readers, the first one's
    images shown. The photo is read once; it and its overlays are shown
    only when its bytes are those the maps were computed from.
    """
    first = opened[0]
    record = first.record(key)
    present = [maps for maps in opened if key in maps]
    try:
        read = read_image(first.source / key)
    except ImageLoadError:
        read = None
    if read is None or read.sha256 != record.file_sha256:
        # Neither the photo nor an overlay: the record is of other bytes.
        photo_path, overlays = None, [None] * len(opened)
        source = SOURCE_MISSING if read is None else SOURCE_CHANGED
    else:
        photo_path, photo = _photo_thumbnail(read.image, read.sha256, report)
        overlays = [
            _overlay(photo, read.sha256, maps[key], report) if key in maps else None
            for maps in opened
        ]
        source = SOURCE_SAME
    return [
        key,
        photo_path,
        overlays,
        record.predicted,
        _rounded(record.probability),
        record.target,
        _rounded(record.target_probability),
        record.target if truth else None,
        _rounded(disagreement([maps[key] for maps in present])),
        source,
    ]


def _photo_thumbnail(image: Any, digest: str, report: Path) -> tuple[str, Any]:
    """The photo's thumbnail path (written once) and picture, named by the
    digest of the bytes ``image`` was decoded from."""
    from PIL import Image

    name = f"{THUMBNAIL_FOLDER}/photo-{digest}.jpg"
    if (report / name).is_file():
        with Image.open(report / name) as thumbnail:
            return name, thumbnail.convert("RGB")
    photo = thumbnails.resized(image)
    files.create_once(report / name, thumbnails.jpeg_bytes(photo))
    return name, photo


def _overlay(photo: Any, digest: str, layer_map: torch.Tensor, report: Path) -> str:
    """An overlay's thumbnail path (written once), named by the photo's digest
    and the map's bytes."""
    identity = hashlib.sha256(digest.encode())
    identity.update(repr(tuple(layer_map.shape)).encode())
    identity.update(layer_map.float().contiguous().numpy().tobytes())
    name = f"{THUMBNAIL_FOLDER}/overlay-{identity.hexdigest()}.jpg"
    if not (report / name).is_file():
        files.create_once(
            report / name, thumbnails.jpeg_bytes(thumbnails.overlay(photo, layer_map))
        )
    return name


def _rounded(value: float | None) -> float | None:
    """Four decimals; None stays None (a segmentation or detection record has
    no probability)."""
    return None if value is None else round(value, 4)
