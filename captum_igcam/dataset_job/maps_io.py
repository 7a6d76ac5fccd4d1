"""Reading the output of ``captum-igcam explain-dataset``: :func:`open_maps`.

The folder's layout and index schema are described in
:mod:`captum_igcam.dataset_job.index`. The reader trusts nothing it has
not checked: the index is validated when it is opened
(:func:`~captum_igcam.dataset_job.index.read_index`), each shard's size
and SHA-256 are compared with the index's before its maps are used, and
each map is served only if the key stored in its shard row is the key
asked for. Any failure raises
:class:`~captum_igcam.dataset_job.index.IndexFormatError` naming the file.
"""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from captum_igcam.dataset_job.index import (
    MERGED_INDEX_NAME,
    IndexFormatError,
    content_entry,
    read_index,
    read_regular_file,
    source_digest,
)


@dataclass(frozen=True)
class MapRecord:
    """Where one image's map is stored, and what the model said about it.

    A classifier's record has ``predicted``, ``probability`` and
    ``target_probability``; a segmentation model's or detector's has
    ``requested`` and ``explained`` instead (None otherwise).

    Args:
        shard (str): Shard file, relative to the output folder.
        row (int): Row of the image in the shard's ``maps`` array.
        target (int): The class the map explains (a detection's label).
        file_sha256 (str): SHA-256 of the bytes of the image file the map
            was computed from (compare it with
            :func:`captum_igcam.app.images.read_image`'s before showing the
            map over a photo).
        predicted (int, optional): The classifier's top-1 class.
        probability (float, optional): Softmax probability of ``predicted``.
        target_probability (float, optional): Softmax probability of ``target``.
        requested (int, optional): The class asked for (``-1``: the default,
            see ``docs/tasks.md``).
        explained (dict, optional): What was explained: the class, the
            region or the box (photo pixels), the matched detection
            (:func:`captum_igcam.app.tasks.prepare`'s record).
    """

    shard: str
    row: int
    target: int
    file_sha256: str
    predicted: int | None = None
    probability: float | None = None
    target_probability: float | None = None
    requested: int | None = None
    explained: dict[str, Any] | None = None


class ExplanationMaps(Mapping[str, torch.Tensor]):
    r"""The maps of an ``explain-dataset`` output folder, by image path.

    A read-only mapping from image key to its ``(1, h, w)`` float32 map.
    Lookups also accept the image's path as a file system path (absolute or
    relative to the working directory) when it lies in the source folder
    recorded in the index. The last shard read is kept in memory, so reading
    maps in index order loads each shard once.

    Args:
        folder (str or os.PathLike): The ``--out`` folder of a finished run.

    Raises:
        ValueError: If the folder holds no merged ``index.json`` (the run
            has not finished: re-run the same command to complete it).
        IndexFormatError: If the index is damaged, edited or of an older
            format, or (when a map is read) its shard is damaged or does
            not hold the image's map in the index's row.

    Example::

        >>> maps = ExplanationMaps("igcam-maps")
        >>> maps.settings["model"]
        'efficientnet-lite0'
        >>> maps["cats/chelsea.png"].shape
        torch.Size([1, 7, 7])
        >>> maps.record("/data/pets/cats/chelsea.png").predicted
        285
    """

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        index_path = self.folder / MERGED_INDEX_NAME
        if not os.path.lexists(index_path):
            raise ValueError(
                f"folder: {os.fspath(folder)!r} holds no {MERGED_INDEX_NAME}; "
                "it is not an explain-dataset output folder, or its run has not "
                "finished (re-run the same command to complete it)"
            )
        index = read_index(index_path)
        self.settings: dict[str, Any] = index["settings"]
        self.source = Path(index["source"])
        self._shards: dict[str, dict[str, Any]] = index["shards"]
        self._records = {
            key: MapRecord(**fields) for key, fields in index["images"].items()
        }
        #: Image key -> why it has no map (nothing to explain on it).
        self.unexplained: dict[str, str] = {
            key: fields["reason"] for key, fields in index["unexplained"].items()
        }
        #: Image key -> SHA-256 of the source file's bytes, for every image
        #: of the index (with a map or with nothing to explain).
        self.digests: dict[str, str] = {
            key: fields["file_sha256"]
            for group in ("images", "unexplained")
            for key, fields in index[group].items()
        }
        self._cached_shard: tuple[str, np.ndarray, np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self._records)

    def __iter__(self) -> Iterator[str]:
        return iter(self._records)

    def __contains__(self, path: object) -> bool:
        if not isinstance(path, (str, os.PathLike)):
            return False
        return self._key(path) in self._records

    def __getitem__(self, path: str | os.PathLike[str]) -> torch.Tensor:
        key = self._key(path)
        record = self.record(key)
        if self._cached_shard is None or self._cached_shard[0] != record.shard:
            self._cached_shard = (record.shard, *self._load(record.shard))
        _, maps, keys = self._cached_shard
        if keys[record.row] != key:
            raise IndexFormatError(
                f"shard: {str(self.folder / record.shard)!r} holds the map of "
                f"{str(keys[record.row])!r} in row {record.row}, where "
                f"{MERGED_INDEX_NAME} puts the map of {key!r}; the folder was "
                "changed by hand: re-run the command into a new folder"
            )
        return torch.from_numpy(maps[record.row].copy())

    def _load(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """A shard's ``maps`` and ``keys``, after checking its bytes and arrays."""
        path = self.folder / name
        entry = self._shards[name]
        data = read_regular_file(path)
        if data is None or content_entry(data) != {
            "size": entry["size"],
            "sha256": entry["sha256"],
        }:
            raise IndexFormatError(
                f"shard: {str(path)!r} is missing or damaged (not the size and "
                f"SHA-256 that {MERGED_INDEX_NAME} records); re-run the command "
                "to explain its images again"
            )
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
                maps, keys = arrays["maps"], arrays["keys"]
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as error:
            raise IndexFormatError(
                f"shard: {str(path)!r} is not a shard as the job writes it ({error})"
            ) from error
        rows = entry["rows"]
        if maps.dtype != np.float32 or maps.ndim != 4 or len(maps) != rows:
            raise IndexFormatError(
                f"shard: {str(path)!r}: maps: expected float32 (n, 1, h, w) with "
                f"n = {rows}, got {maps.dtype} {maps.shape}"
            )
        if keys.ndim != 1 or len(keys) != rows or keys.dtype.kind != "U":
            raise IndexFormatError(
                f"shard: {str(path)!r}: keys: expected {rows} strings, got "
                f"{keys.dtype} {keys.shape}"
            )
        return maps, keys

    def record(self, path: str | os.PathLike[str]) -> MapRecord:
        """The index entry of one image.

        Args:
            path (str or os.PathLike): Image key, or the image's file path.

        Returns:
            MapRecord: Its shard, row, prediction and explained class.

        Raises:
            KeyError: If the image has no map in this folder (the message
                says why when it had nothing to explain).
        """
        key = self._key(path)
        if key in self.unexplained:
            raise KeyError(
                f"path: {os.fspath(path)!r} has no map in {str(self.folder)!r}: "
                f"nothing to explain ({self.unexplained[key]})"
            )
        if key not in self._records:
            raise KeyError(
                f"path: no map for {os.fspath(path)!r} in {str(self.folder)!r} "
                f"(keys are paths relative to {str(self.source)!r})"
            )
        return self._records[key]

    def source_matches(self, path: str | os.PathLike[str]) -> bool:
        """Whether the image's file still has the bytes its map was computed from.

        Args:
            path (str or os.PathLike): Image key, or the image's file path.

        Returns:
            bool: True if the file in the source folder has the SHA-256 the
            index records; False if its bytes differ (whatever its name,
            size and time), it is not a readable regular file, or the index
            lists no such image.
        """
        key = self._key(path)
        recorded = self.digests.get(key)
        return recorded is not None and source_digest(self.source / key) == recorded

    def _key(self, path: str | os.PathLike[str]) -> str:
        text = os.fspath(path)
        if text in self._records:
            return text
        resolved = Path(text).resolve()
        if resolved.is_relative_to(self.source):
            return resolved.relative_to(self.source).as_posix()
        return Path(text).as_posix()


def open_maps(folder: str | os.PathLike[str]) -> ExplanationMaps:
    """Open the output folder of ``captum-igcam explain-dataset``.

    Args:
        folder (str or os.PathLike): The folder given as ``--out``.

    Returns:
        ExplanationMaps: Image key or path -> ``(1, h, w)`` map.

    Example::

        >>> maps = open_maps("igcam-maps")
        >>> heat = maps["/data/pets/cats/chelsea.png"]
    """
    return ExplanationMaps(folder)
