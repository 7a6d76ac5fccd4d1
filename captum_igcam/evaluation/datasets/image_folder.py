"""The ``folder:PATH`` source: plain images without boxes."""

from __future__ import annotations

from pathlib import Path

from captum_igcam.evaluation.datasets.samples import Dataset, Sample, file_sample

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")


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
        return file_sample(paths[index])

    return Dataset(f"folder:{root}", False, len(paths), load, [])
