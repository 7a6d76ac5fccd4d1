"""The ``explain-dataset`` gallery: each photo beside each method's overlay.

:func:`build_gallery` reads one or more ``explain-dataset`` output folders
through :func:`captum_igcam.dataset_job.open_maps` (one folder per method:
e.g. ``--path input`` and ``--path layer``, or two models), writes a photo
thumbnail and one overlay thumbnail per method for every image of the first
folder, and the page that shows them: paged, sortable and filterable by
class, confidence and disagreement between the methods' maps.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from captum_igcam.app.images import ImageLoadError
from captum_igcam.app.maps import upsample
from captum_igcam.dataset_job import open_maps
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
)
#: ``explain-dataset --target`` value whose targets are ground truth.
GROUND_TRUTH_TARGET = "folder"
THUMBNAIL_FOLDER = "thumbs"


def build_gallery(
    folders: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    progress: bool = True,
) -> Path:
    """Write the gallery of ``explain-dataset`` output folders into ``out``.

    Thumbnails are named by what they show (image key, the image file's size
    and modification time, the folder's settings), so a second run reuses
    every thumbnail that is still right and writes only the new ones.

    Args:
        folders (sequence of str or os.PathLike): ``explain-dataset --out``
            folders of the same images; the first one's images are shown,
            each folder's maps as one method.
        out (str or os.PathLike): The report folder (see
            :func:`~captum_igcam.report.files.open_report_folder`).
        progress (bool, optional): Show a progress bar over images.
            Default: True

    Returns:
        Path: The report's ``index.html``.

    Example::

        >>> build_gallery(["maps-input", "maps-layer"], "maps-input/report")
        PosixPath('maps-input/report/index.html')
    """
    if not folders:
        raise ValueError("folders: expected at least one explain-dataset folder")
    opened = [open_maps(folder) for folder in folders]
    names = method_names(folders)
    report = files.open_report_folder(out)
    (report / THUMBNAIL_FOLDER).mkdir(exist_ok=True)
    first = opened[0]
    labels = class_labels(first.settings)
    truth = first.settings.get("target") == GROUND_TRUTH_TARGET
    from tqdm import tqdm

    rows = [
        _row(key, opened, report, truth)
        for key in tqdm(first, unit="image", desc="report", disable=not progress)
    ]
    predicted, target = (
        GALLERY_COLUMNS.index("predicted"),
        GALLERY_COLUMNS.index("target"),
    )
    used = sorted({row[predicted] for row in rows} | {row[target] for row in rows})
    data = {
        "kind": "gallery",
        "title": f"{Path(folders[0]).resolve().name}: {len(rows)} images",
        "methods": names,
        "settings": [maps.settings for maps in opened],
        "truth": truth,
        "classes": {str(index): label_of(index, labels) for index in used},
        "columns": list(GALLERY_COLUMNS),
        "rows": rows,
    }
    return page.write_page(report, "gallery", data)


def method_names(folders: Sequence[str | os.PathLike[str]]) -> list[str]:
    """One name per folder: its base name, or its path where names repeat."""
    bases = [Path(folder).resolve().name for folder in folders]
    if len(set(bases)) == len(bases):
        return bases
    return [os.fspath(folder) for folder in folders]


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
    images shown.
    """
    first = opened[0]
    record = first.record(key)
    stamp = [key, record.file_size, record.file_mtime_ns]
    photo_name = _thumbnail_name("photo", stamp)
    overlays: list[str | None] = []
    present = [maps for maps in opened if key in maps]
    photo = None
    for maps in opened:
        if key not in maps:
            overlays.append(None)
            continue
        name = _thumbnail_name("overlay", [*stamp, maps.settings])
        if not (report / THUMBNAIL_FOLDER / name).exists():
            if photo is None:
                photo = _photo(
                    first.source / key, report / THUMBNAIL_FOLDER / photo_name
                )
            if photo is False:
                overlays.append(None)
                continue
            files.create_once(
                report / THUMBNAIL_FOLDER / name,
                thumbnails.jpeg_bytes(thumbnails.overlay(photo, maps[key])),
            )
        overlays.append(f"{THUMBNAIL_FOLDER}/{name}")
    if photo is None:
        photo = _photo(first.source / key, report / THUMBNAIL_FOLDER / photo_name)
    return [
        key,
        None if photo is False else f"{THUMBNAIL_FOLDER}/{photo_name}",
        overlays,
        record.predicted,
        round(record.probability, 4),
        record.target,
        round(record.target_probability, 4),
        record.target if truth else None,
        _rounded(disagreement([maps[key] for maps in present])),
    ]


def _photo(source: Path, thumbnail: Path) -> Any:
    """The photo's thumbnail (written once), or False if the file is gone."""
    from PIL import Image

    if thumbnail.exists():
        with Image.open(thumbnail) as image:
            return image.convert("RGB")
    try:
        photo = thumbnails.photo_thumbnail(source)
    except ImageLoadError:
        return False
    files.create_once(thumbnail, thumbnails.jpeg_bytes(photo))
    return photo


def _thumbnail_name(kind: str, identity: list[Any]) -> str:
    text = json.dumps([kind, *identity], sort_keys=True, default=str)
    return f"{kind}-{hashlib.sha256(text.encode()).hexdigest()[:24]}.jpg"


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)
