"""The images of a source folder: listing them, and reading them in a loader.

:func:`find_images` lists a folder's images as keys; :class:`ImageFileDataset`
serves each one as a model input and baseline, read and preprocessed in
``DataLoader`` workers, with the SHA-256 of the exact bytes it was decoded
from (:func:`captum_igcam.app.images.read_image`): the digest every map of
the job is bound to.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch.utils.data import Dataset

from captum_igcam.app.images import ImageLoadError, read_image

#: ``target`` of an image: "explain the model's top-1 class".
PREDICTED = -1


@dataclass(frozen=True)
class ImageItem:
    """One image to explain.

    Args:
        key (str): Path relative to the source folder, ``/``-separated.
        target (int): Class to explain, or :data:`PREDICTED` for the top-1
            (a segmentation model's class on most pixels; a detector's
            detection of any label).
    """

    key: str
    target: int = PREDICTED


def find_images(
    source: str | os.PathLike[str], exclude: str | os.PathLike[str] | None = None
) -> list[str]:
    """List the images of a folder, as sorted keys relative to it.

    A VOC-format directory (with ``JPEGImages/`` and ``Annotations/``) gives
    the files of ``JPEGImages/``; any other folder gives every file with an
    image extension, recursively (so a torchvision ``ImageFolder`` layout,
    ``SOURCE/<class>/<image>``, gives ``<class>/<image>`` keys). Links to
    folders are not followed, and the folder ``exclude`` (the output folder,
    found by identity, so also under another name) is never entered.

    Args:
        source (str or os.PathLike): The folder.
        exclude (str or os.PathLike, optional): A folder whose files are not
            listed, wherever it lies inside ``source``.
            Default: None

    Returns:
        list[str]: Keys such as ``"cats/chelsea.png"`` or
        ``"JPEGImages/2007_000027.jpg"``, sorted.

    Raises:
        ValueError: If ``source`` is not a directory or holds no image.

    Example::

        >>> find_images("pets", exclude="pets/maps")
        ['cats/chelsea.png', 'dogs/rex.jpg']
    """
    from torchvision.datasets.folder import IMG_EXTENSIONS

    root = Path(source)
    if not root.is_dir():
        raise ValueError(f"source: expected a directory, got {os.fspath(source)!r}")
    is_voc = (root / "JPEGImages").is_dir() and (root / "Annotations").is_dir()
    searched = root / "JPEGImages" if is_voc else root
    skipped = folder_identity(exclude) if exclude is not None else None
    keys = []
    for folder, subfolders, files in os.walk(searched):
        subfolders[:] = [
            name
            for name in subfolders
            if folder_identity(Path(folder, name)) != skipped
        ]
        keys.extend(
            Path(folder, name).relative_to(root).as_posix()
            for name in files
            if Path(name).suffix.lower() in IMG_EXTENSIONS
            and Path(folder, name).is_file()
        )
    if not keys:
        raise ValueError(
            f"source: no images ({', '.join(IMG_EXTENSIONS)}) in "
            f"{os.fspath(searched)!r}"
        )
    return sorted(keys)


def folder_identity(path: str | os.PathLike[str]) -> tuple[int, int] | None:
    """A folder's (device, inode), or None if it does not exist."""
    try:
        status = os.stat(path)
    except OSError:
        return None
    return status.st_dev, status.st_ino


class Example(NamedTuple):
    """One image as the loader serves it (``error`` set when it is unreadable)."""

    key: str
    sha256: str | None  # of the bytes decoded
    size: tuple[int, int] | None  # the photo's (H, W)
    inputs: torch.Tensor | None
    baseline: torch.Tensor | None
    target: int
    error: str | None


class Batch(NamedTuple):
    """The readable images of a loader batch, stacked, and the unreadable ones."""

    keys: list[str]
    digests: list[str]  # SHA-256 of each image's bytes
    sizes: list[tuple[int, int]]  # the photos' (H, W)
    inputs: torch.Tensor | None  # (B, C, S, S), None when every image failed
    baselines: torch.Tensor | None
    targets: torch.Tensor
    failed: list[tuple[str, str]]  # (key, error)


class ImageFileDataset(Dataset):
    """Images of a folder, preprocessed into model inputs and baselines.

    Args:
        root (str or os.PathLike): The source folder.
        items (Sequence[ImageItem]): Images to serve, by key.
        transform (Callable): Turns a PIL RGB image into ``(inputs,
            baseline)``, two CPU tensors of the model's input shape without
            the batch dimension (it runs in the loader's workers).

    Example::

        >>> bundle = load_model()
        >>> def black_baseline(image):
        ...     inputs = bundle.preprocess(image)
        ...     return inputs, bundle.preprocess(Image.new("RGB", image.size))
        >>> dataset = ImageFileDataset(
        ...     "pets", [ImageItem(k) for k in find_images("pets")], black_baseline)
        >>> dataset[0].inputs.shape
        torch.Size([3, 224, 224])
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        items: Sequence[ImageItem],
        transform: Callable[[Any], tuple[torch.Tensor, torch.Tensor]],
    ) -> None:
        self.root = Path(root)
        self.items = list(items)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, position: int) -> Example:
        """Item ``position``: its key, the SHA-256 of the bytes read, the
        photo's ``(H, W)``, inputs, baseline and target. When the image
        cannot be read, only ``key``, ``target`` and ``error`` are set."""
        item = self.items[position]
        try:
            read = read_image(self.root / item.key)
        except ImageLoadError as error:
            return Example(item.key, None, None, None, None, item.target, str(error))
        inputs, baseline = self.transform(read.image)
        size = (read.image.height, read.image.width)
        return Example(item.key, read.sha256, size, inputs, baseline, item.target, None)


def collate(examples: list[Example]) -> Batch:
    """Stack a batch in the loader's worker (so the main loop does not)."""
    loaded = [example for example in examples if example.error is None]
    return Batch(
        keys=[example.key for example in loaded],
        digests=[example.sha256 for example in loaded],
        sizes=[example.size for example in loaded],
        inputs=torch.stack([e.inputs for e in loaded]) if loaded else None,
        baselines=torch.stack([e.baseline for e in loaded]) if loaded else None,
        targets=torch.tensor([example.target for example in loaded]),
        failed=[(e.key, e.error) for e in examples if e.error is not None],
    )
