"""Read maps precomputed by ``captum-igcam explain-dataset``.

An output folder holds

- ``shards/rank<R>-<NNNNN>.npz``: one file per group of images, with the
  float32 array ``maps`` of shape ``(n, 1, h, w)`` (the layer-resolution maps)
  and the string array ``keys`` naming the image of each row;
- ``index-rank<R>.json``: what rank ``R`` has written so far, rewritten
  atomically after each of its shards (the source of truth for resuming);
- ``index.json``: all ranks' indexes merged when a run finishes.

Each index is a JSON object with ``format`` (:data:`INDEX_FORMAT`),
``settings`` (what the maps depend on: model, layer, steps, ...), ``source``
(the image folder the keys are relative to) and ``images``: image key ->
:class:`MapRecord` fields. An image key is the image's path relative to the
source folder, with ``/`` separators.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

INDEX_FORMAT = "captum-igcam-maps/1"
MERGED_INDEX_NAME = "index.json"
SHARD_FOLDER = "shards"


def rank_index_name(rank: int | str) -> str:
    """File name of rank ``rank``'s own index (``"*"`` gives a glob pattern)."""
    return f"index-rank{rank}.json"


@dataclass(frozen=True)
class MapRecord:
    """Where one image's map is stored, and what the model said about it.

    Args:
        shard (str): Shard file, relative to the output folder.
        row (int): Row of the image in the shard's ``maps`` array.
        predicted (int): The model's top-1 class.
        probability (float): Softmax probability of ``predicted``.
        target (int): The class the map explains.
        target_probability (float): Softmax probability of ``target``.
    """

    shard: str
    row: int
    predicted: int
    probability: float
    target: int
    target_probability: float


def read_index(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read one index file and check its format.

    Args:
        path (str or os.PathLike): An ``index.json`` or ``index-rank<R>.json``.

    Returns:
        dict[str, Any]: The index: ``format``, ``settings``, ``source`` and
        ``images`` (key -> record fields).

    Raises:
        ValueError: If the file cannot be read or is not such an index.
    """
    try:
        with open(path, encoding="utf-8") as handle:
            index = json.load(handle)
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"index: cannot read {os.fspath(path)!r} ({error})") from error
    if not isinstance(index, dict) or index.get("format") != INDEX_FORMAT:
        raise ValueError(
            f"index: {os.fspath(path)!r} is not a map index of format {INDEX_FORMAT!r}"
        )
    return index


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
        if not index_path.is_file():
            raise ValueError(
                f"folder: {os.fspath(folder)!r} holds no {MERGED_INDEX_NAME}; "
                "it is not an explain-dataset output folder, or its run has not "
                "finished (re-run the same command to complete it)"
            )
        index = read_index(index_path)
        self.settings: dict[str, Any] = index["settings"]
        self.source = Path(index["source"])
        self._records = {
            key: MapRecord(**fields) for key, fields in index["images"].items()
        }
        self._cached_shard: tuple[str, np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self._records)

    def __iter__(self) -> Iterator[str]:
        return iter(self._records)

    def __contains__(self, path: object) -> bool:
        if not isinstance(path, (str, os.PathLike)):
            return False
        return self._key(path) in self._records

    def __getitem__(self, path: str | os.PathLike[str]) -> torch.Tensor:
        record = self.record(path)
        if self._cached_shard is None or self._cached_shard[0] != record.shard:
            with np.load(self.folder / record.shard, allow_pickle=False) as shard:
                self._cached_shard = (record.shard, shard["maps"])
        return torch.from_numpy(self._cached_shard[1][record.row].copy())

    def record(self, path: str | os.PathLike[str]) -> MapRecord:
        """The index entry of one image.

        Args:
            path (str or os.PathLike): Image key, or the image's file path.

        Returns:
            MapRecord: Its shard, row, prediction and explained class.

        Raises:
            KeyError: If the image has no map in this folder.
        """
        key = self._key(path)
        if key not in self._records:
            raise KeyError(
                f"path: no map for {os.fspath(path)!r} in {str(self.folder)!r} "
                f"(keys are paths relative to {str(self.source)!r})"
            )
        return self._records[key]

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
