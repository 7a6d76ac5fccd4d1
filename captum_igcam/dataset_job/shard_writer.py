"""One rank's shard writer: maps to shards and index, in a background thread.

The commit protocol of a shard (each step durable before the next):

1. the shard's bytes are made in memory, with their size and SHA-256;
2. the rank index is replaced atomically with the shard under ``pending``
   (name and content), so a file left by a kill after step 3 is provably
   the job's;
3. the shard file is created under its run-unique name, never replacing
   anything (temporary file, ``fsync``, hard link to the new name,
   ``fsync`` of the folder);
4. the rank index is replaced atomically with the shard moved to
   ``shards`` and its images' records added.

An index therefore only lists a shard that is complete on the disk, and a
shard name, unique to its run, is never written twice.
"""

from __future__ import annotations

import io
import math
import queue
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from captum_igcam.app import safe_files
from captum_igcam.dataset_job.index import (
    content_entry,
    new_index,
    rank_index_name,
    read_index,
    shard_name,
)


class _Pending(NamedTuple):
    keys: Sequence[str]
    digests: Sequence[str]  # SHA-256 of each source image's bytes
    maps: torch.Tensor  # (n, 1, h, w) float32 on the CPU, maybe still being copied
    records: Callable[[], Sequence[Mapping[str, Any]]]  # each row's, once ready
    ready: torch.cuda.Event | None  # recorded after the copies to the CPU


class _Unexplained(NamedTuple):
    key: str
    record: dict[str, Any]


class ShardWriter:
    """Writes one rank's maps shard by shard, in a background thread.

    :meth:`add` only queues a batch (tensors whose copy from the GPU may
    still be running, with the CUDA event that marks its end), so the
    explaining loop goes on while the thread waits for the copy, converts
    the batch and commits full shards (see the module's description). At
    most ``max_pending`` batches wait; :meth:`close` writes the rest (a
    last, smaller shard) and re-raises an error of the thread.

    Args:
        folder (Path): The output folder; ``shards/`` must exist in it.
        rank (int): The process's rank (names its shards and index).
        run_id (str): The run's id (names its shards).
        settings (Mapping[str, Any]): Stored in a new index.
        source (Path): The image folder, stored in a new index.
        shard_size (int): Images per shard.
        max_pending (int, optional): Batches that may wait to be written.
                    Default: 4

    Example::

        >>> with ShardWriter(Path("maps"), 0, run_id, settings, source, 256) as writer:
        ...     writer.add(keys, digests, maps, lambda: records)
    """

    def __init__(
        self,
        folder: Path,
        rank: int,
        run_id: str,
        settings: Mapping[str, Any],
        source: Path,
        shard_size: int,
        max_pending: int = 4,
    ) -> None:
        self.folder = folder
        self.rank = rank
        self.run_id = run_id
        self.shard_size = shard_size
        self.index_path = folder / rank_index_name(rank)
        self.index = (
            read_index(self.index_path)
            if self.index_path.exists()
            else new_index(settings, source)
        )
        self.next_shard = 0
        self._keys: list[str] = []
        self._maps: list[np.ndarray] = []
        self._records: list[dict[str, Any]] = []
        self._unexplained: dict[str, dict[str, Any]] = {}
        self._queue: queue.Queue[_Pending | _Unexplained | None] = queue.Queue(
            max_pending
        )
        self._error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._run, name=f"igcam-shard-writer-{rank}", daemon=True
        )
        self._thread.start()

    def add(
        self,
        keys: Sequence[str],
        digests: Sequence[str],
        maps: torch.Tensor,
        records: Callable[[], Sequence[Mapping[str, Any]]],
        ready: torch.cuda.Event | None = None,
    ) -> None:
        """Queue explained images: ``maps`` ``(n, 1, h, w)`` on the CPU once
        ``ready`` (if given) has completed, each image's source digest and,
        from ``records()`` (called in the writer's thread after ``ready``),
        each image's record (JSON values; the fields of
        :data:`~captum_igcam.dataset_job.index.IMAGE_FIELDS` or
        :data:`~captum_igcam.dataset_job.index.TASK_IMAGE_FIELDS` but
        ``shard``, ``row`` and ``file_sha256``)."""
        self._raise_error()
        self._queue.put(_Pending(keys, digests, maps, records, ready))

    def add_unexplained(
        self, key: str, digest: str, reason: str, requested: int
    ) -> None:
        """Queue an image with nothing to explain, ``reason`` saying why."""
        self._raise_error()
        record = {"reason": reason, "requested": requested, "file_sha256": digest}
        self._queue.put(_Unexplained(key, record))

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
        if self._error is None and (self._keys or self._unexplained):
            try:
                self._write(len(self._keys))
            except BaseException as error:  # noqa: BLE001 - re-raised by close()
                self._error = error

    def _buffer(self, pending: _Pending | _Unexplained) -> None:
        if isinstance(pending, _Unexplained):
            self._unexplained[pending.key] = pending.record
            return
        if pending.ready is not None:
            pending.ready.synchronize()
        records = pending.records()
        for key, record in zip(pending.keys, records):
            if not _finite(record):
                raise ValueError(
                    f"model: expected finite outputs, got NaN or infinity for "
                    f"{key!r} ({dict(record)})"
                )
        self._keys.extend(pending.keys)
        self._maps.extend(pending.maps.numpy())
        for record, digest in zip(records, pending.digests):
            self._records.append({**record, "file_sha256": digest})
        while len(self._keys) >= self.shard_size:
            self._write(self.shard_size)

    def _write(self, count: int) -> None:
        """Commit a shard of ``count`` rows (none: only the unexplained images)."""
        self.index["unexplained"].update(self._unexplained)
        self._unexplained = {}
        if not count:
            safe_files.atomic_write_json(self.index_path, self.index, replace=True)
            return
        name = shard_name(self.run_id, self.rank, self.next_shard)
        keys, self._keys = self._keys[:count], self._keys[count:]
        maps, self._maps = self._maps[:count], self._maps[count:]
        records, self._records = self._records[:count], self._records[count:]
        buffer = io.BytesIO()
        np.savez(buffer, maps=np.stack(maps), keys=np.array(keys))
        data = buffer.getvalue()
        entry = content_entry(data)
        self.index["pending"][name] = entry
        safe_files.atomic_write_json(self.index_path, self.index, replace=True)
        safe_files.atomic_write_bytes(self.folder / name, data)
        del self.index["pending"][name]
        self.index["shards"][name] = {**entry, "rows": count}
        for row, (key, record) in enumerate(zip(keys, records)):
            self.index["images"][key] = {"shard": name, "row": row, **record}
        safe_files.atomic_write_json(self.index_path, self.index, replace=True)
        self.next_shard += 1


def _finite(value: Any) -> bool:
    """Whether every number in a JSON-like value is finite."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, Mapping):
        return all(_finite(item) for item in value.values())
    if isinstance(value, (list, tuple)):
        return all(_finite(item) for item in value)
    return True
