"""The output format of ``captum-igcam explain-dataset``: writing and reading it.

An output folder holds

- ``shards/rank<R>-<NNNNN>.npz``: one file per group of images, with the
  float32 array ``maps`` of shape ``(n, 1, h, w)`` (the layer-resolution maps)
  and the string array ``keys`` naming the image of each row;
- ``index-rank<R>.json``: what rank ``R`` has written so far, rewritten
  atomically after each of its shards (the source of truth for resuming);
- ``index.json``: all ranks' indexes merged when a run finishes;
- ``.explain-dataset.lock``: the lock a run holds while it writes (an empty
  file; the lock itself dies with the process that holds it).

Each index is a JSON object with ``format`` (:data:`INDEX_FORMAT`),
``settings`` (what the maps depend on: model, layer, steps, ...), ``source``
(the resolved image folder the keys are relative to) and ``images``: image
key -> :class:`MapRecord` fields. An image key is the image's path relative
to the source folder, with ``/`` separators. Each record keeps the size and
modification time of the image file it was computed from, so that a changed
file is explained again instead of being served its old map.

Writing is :class:`ShardWriter` (a background thread, so that the explaining
loop never waits for the disk) and :func:`lock_output`; reading is
:func:`open_maps`.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import queue
import shutil
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from captum_igcam.app import _atomic

INDEX_FORMAT = "captum-igcam-maps/2"
MERGED_INDEX_NAME = "index.json"
SHARD_FOLDER = "shards"
LOCK_NAME = ".explain-dataset.lock"


def rank_index_name(rank: int | str) -> str:
    """File name of rank ``rank``'s own index (``"*"`` gives a glob pattern)."""
    return f"index-rank{rank}.json"


class FileStamp(NamedTuple):
    """What identifies the version of an image file: its size and mtime."""

    size: int
    mtime_ns: int


def file_stamp(path: str | os.PathLike[str]) -> FileStamp | None:
    """Size and modification time of a file, or None if it cannot be read.

    Args:
        path (str or os.PathLike): The file.

    Returns:
        FileStamp or None: ``(size, mtime_ns)`` from :func:`os.stat`.
    """
    try:
        status = os.stat(path)
    except OSError:
        return None
    return FileStamp(status.st_size, status.st_mtime_ns)


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
        file_size (int): Size in bytes of the image file that was explained.
        file_mtime_ns (int): Its modification time, in nanoseconds.
    """

    shard: str
    row: int
    predicted: int
    probability: float
    target: int
    target_probability: float
    file_size: int
    file_mtime_ns: int


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
            f"index: {os.fspath(path)!r} is not a map index of format "
            f"{INDEX_FORMAT!r} (an older version's folder is replaced by "
            "running with overwrite)"
        )
    return index


class OutputMismatchError(ValueError):
    """The output folder holds maps made with other settings or images."""


class OutputLockedError(RuntimeError):
    """Another run is writing to the output folder."""


@contextlib.contextmanager
def lock_output(folder: str | os.PathLike[str]) -> Iterator[None]:
    """Hold the output folder's lock for the duration of the block.

    The lock is :func:`fcntl.flock` on ``folder/.explain-dataset.lock``: the
    operating system releases it when the block ends or the process dies
    (also when killed), so no stale lock is ever left behind.

    Args:
        folder (str or os.PathLike): The output folder; it must exist.

    Raises:
        OutputLockedError: If another process holds the lock.

    Example::

        >>> with lock_output("igcam-maps"):
        ...     ...  # no other run writes to igcam-maps here
    """
    path = Path(folder) / LOCK_NAME
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as error:
            raise OutputLockedError(
                f"out: {os.fspath(folder)!r} is being written by another "
                f"explain-dataset run (it holds {str(path)!r}); wait for it to "
                "finish or choose another folder"
            ) from error
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def new_index(settings: Mapping[str, Any], source: Path) -> dict[str, Any]:
    """An empty index for maps of the images in ``source``."""
    return {
        "format": INDEX_FORMAT,
        "settings": dict(settings),
        "source": str(source.resolve()),
        "images": {},
    }


def rank_index_paths(folder: Path) -> list[Path]:
    """The ranks' own index files in ``folder``, sorted."""
    return sorted(folder.glob(rank_index_name("*")))


def check_compatible(folder: Path, settings: Mapping[str, Any], source: Path) -> None:
    """Refuse a folder whose indexes hold other settings or another source.

    Raises:
        OutputMismatchError: Naming what differs.
    """
    resolved = str(source.resolve())
    for path in rank_index_paths(folder):
        index = read_index(path)
        old = index["settings"]
        differences = [
            f"{name}: {old.get(name)!r} there, {settings.get(name)!r} now"
            for name in sorted(set(old) | set(settings))
            if old.get(name) != settings.get(name)
        ]
        if index["source"] != resolved:
            differences.append(f"source: {index['source']!r} there, {resolved!r} now")
        if differences:
            raise OutputMismatchError(
                f"out: {str(folder)!r} holds maps made with other settings or "
                f"images ({'; '.join(differences)}); choose another folder or "
                "overwrite it"
            )


def forget_changed_images(folder: Path, source: Path) -> int:
    """Drop the records of images whose file changed or vanished since.

    Each rank index whose records include such an image is rewritten
    atomically without them, so the image is explained again and its old
    map (left in its shard) is never served.

    Returns:
        int: How many records were dropped.
    """
    dropped = 0
    for path in rank_index_paths(folder):
        index = read_index(path)
        images = index["images"]
        kept = {
            key: record
            for key, record in images.items()
            if file_stamp(source / key)
            == FileStamp(record["file_size"], record["file_mtime_ns"])
        }
        if len(kept) < len(images):
            dropped += len(images) - len(kept)
            _atomic.atomic_write_json(path, {**index, "images": kept})
    return dropped


def remove_outputs(folder: Path) -> None:
    """Delete the shards and indexes in ``folder`` (only files this module writes)."""
    shutil.rmtree(folder / SHARD_FOLDER, ignore_errors=True)
    for path in [folder / MERGED_INDEX_NAME, *rank_index_paths(folder)]:
        path.unlink(missing_ok=True)


def merge_indexes(folder: Path, settings: Mapping[str, Any], source: Path) -> None:
    """Write ``index.json`` from the ranks' indexes; delete unlisted shard files.

    Only call it while holding :func:`lock_output` and after every rank of
    the run has closed its writer: the shards no index lists are then those
    of interrupted runs (and their temporary files), never those of a run
    still writing.
    """
    merged = new_index(settings, source)
    for path in rank_index_paths(folder):
        merged["images"].update(read_index(path)["images"])
    merged["images"] = dict(sorted(merged["images"].items()))
    _atomic.atomic_write_json(folder / MERGED_INDEX_NAME, merged)
    listed = {record["shard"] for record in merged["images"].values()}
    for path in (folder / SHARD_FOLDER).iterdir():
        if path.relative_to(folder).as_posix() not in listed:
            path.unlink()


class _Pending(NamedTuple):
    keys: Sequence[str]
    stamps: Sequence[FileStamp]
    maps: torch.Tensor  # (n, 1, h, w) float32 on the CPU, maybe still being copied
    classes: torch.Tensor  # (n, 2) int64: predicted, target
    probabilities: torch.Tensor  # (n, 2) float32: of predicted, of target
    ready: torch.cuda.Event | None  # recorded after the copies to the CPU


class ShardWriter:
    """Writes one rank's maps shard by shard, in a background thread.

    :meth:`add` only queues a batch (tensors whose copy from the GPU may
    still be running, with the CUDA event that marks its end), so the
    explaining loop goes on while the thread waits for the copy, converts
    the batch and writes full shards and the rank's index. At most
    ``max_pending`` batches wait; :meth:`close` writes the rest (a last,
    smaller shard) and re-raises an error of the thread.

    Args:
        folder (Path): The output folder.
        rank (int): The process's rank (names its shards and index).
        settings (Mapping[str, Any]): Stored in a new index.
        source (Path): The image folder, stored in a new index.
        shard_size (int): Images per shard.
        max_pending (int, optional): Batches that may wait to be written.
                    Default: 4

    Example::

        >>> with ShardWriter(Path("maps"), 0, settings, Path("photos"), 256) as writer:
        ...     writer.add(keys, stamps, maps, classes, probabilities)
    """

    def __init__(
        self,
        folder: Path,
        rank: int,
        settings: Mapping[str, Any],
        source: Path,
        shard_size: int,
        max_pending: int = 4,
    ) -> None:
        self.folder = folder
        self.rank = rank
        self.shard_size = shard_size
        self.index_path = folder / rank_index_name(rank)
        self.index = (
            read_index(self.index_path)
            if self.index_path.is_file()
            else new_index(settings, source)
        )
        shards = {record["shard"] for record in self.index["images"].values()}
        self.next_shard = 1 + max(
            (int(Path(name).stem.rpartition("-")[2]) for name in shards), default=-1
        )
        self._keys: list[str] = []
        self._maps: list[np.ndarray] = []
        self._records: list[dict[str, Any]] = []
        self._queue: queue.Queue[_Pending | None] = queue.Queue(max_pending)
        self._error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._run, name=f"igcam-shard-writer-{rank}", daemon=True
        )
        self._thread.start()

    def add(
        self,
        keys: Sequence[str],
        stamps: Sequence[FileStamp],
        maps: torch.Tensor,
        classes: torch.Tensor,
        probabilities: torch.Tensor,
        ready: torch.cuda.Event | None = None,
    ) -> None:
        """Queue a batch: ``maps`` (n, 1, h, w), ``classes`` (n, 2) predicted
        and target, ``probabilities`` (n, 2) of those classes, all on the CPU
        once ``ready`` (if given) has completed."""
        self._raise_error()
        self._queue.put(_Pending(keys, stamps, maps, classes, probabilities, ready))

    def close(self) -> None:
        """Write what is queued and buffered, stop the thread, raise its error."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        self._raise_error()

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _raise_error(self) -> None:
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        while (pending := self._queue.get()) is not None:
            if self._error is None:
                try:
                    self._buffer(pending)
                except BaseException as error:  # noqa: BLE001 - re-raised by close()
                    self._error = error
        if self._error is None and self._keys:
            try:
                self._write(len(self._keys))
            except BaseException as error:  # noqa: BLE001 - re-raised by close()
                self._error = error

    def _buffer(self, pending: _Pending) -> None:
        if pending.ready is not None:
            pending.ready.synchronize()
        classes = pending.classes.tolist()
        probabilities = pending.probabilities.tolist()
        self._keys.extend(pending.keys)
        self._maps.extend(pending.maps.numpy())
        for (predicted, target), (p_top, p_target), stamp in zip(
            classes, probabilities, pending.stamps
        ):
            self._records.append(
                {
                    "predicted": predicted,
                    "probability": p_top,
                    "target": target,
                    "target_probability": p_target,
                    "file_size": stamp.size,
                    "file_mtime_ns": stamp.mtime_ns,
                }
            )
        while len(self._keys) >= self.shard_size:
            self._write(self.shard_size)

    def _write(self, count: int) -> None:
        name = f"{SHARD_FOLDER}/rank{self.rank}-{self.next_shard:05d}.npz"
        keys, self._keys = self._keys[:count], self._keys[count:]
        maps, self._maps = self._maps[:count], self._maps[count:]
        records, self._records = self._records[:count], self._records[count:]
        with _atomic.atomic_open(self.folder / name) as handle:
            np.savez(handle, maps=np.stack(maps), keys=np.array(keys))
        for row, (key, record) in enumerate(zip(keys, records)):
            self.index["images"][key] = {"shard": name, "row": row, **record}
        _atomic.atomic_write_json(self.index_path, self.index)
        self.next_shard += 1


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
