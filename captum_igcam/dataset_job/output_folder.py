"""An ``explain-dataset`` output folder: its lock, resuming into it, the merge.

Only rank 0 of a run calls these, while it holds :func:`lock_output`:
:func:`prepare_output` before any rank reads the indexes, and
:func:`merge_indexes` after every rank has closed its shard writer.

The rule for deleting: a file is deleted only when an index records its
name and content (size and SHA-256) and the file has that content
(:func:`~captum_igcam.dataset_job.index.remove_if_written_by_job`). Nothing
is deleted by listing a folder, so a user's file in ``shards/``, a folder
there, or a ``shards`` link to another disk is never touched.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import secrets
import stat
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from captum_igcam.app import safe_files
from captum_igcam.dataset_job.index import (
    LOCK_NAME,
    MERGED_INDEX_NAME,
    IndexFormatError,
    new_index,
    rank_index_paths,
    read_index,
    remove_if_written_by_job,
    source_digest,
    written_by_job,
)
from captum_igcam.dataset_job.source_images import PREDICTED


class OutputMismatchError(ValueError):
    """The output folder holds maps made with other settings or images."""


class OutputLockedError(RuntimeError):
    """Another run is writing to the output folder."""


#: (device, inode) of the lock files this process holds: POSIX record locks
#: belong to a process, so a second lock in the same process would succeed
#: (and closing it would release the first); this set refuses it instead.
_HELD: set[tuple[int, int]] = set()
_HELD_GUARD = threading.Lock()


@contextlib.contextmanager
def lock_output(folder: str | os.PathLike[str]) -> Iterator[None]:
    """Hold the output folder's lock for the duration of the block.

    The lock is a POSIX record lock (:func:`fcntl.lockf`) on
    ``folder/.explain-dataset.lock``, opened close-on-exec. Such a lock
    belongs to the process that took it: forked ``DataLoader`` workers do
    not hold it, and the operating system releases it the moment the
    process ends, however it ends (``kill -9`` included), so neither a
    dead run nor its surviving workers block the next run. It works across
    NFS clients (NLM); a file system without locks gives an error rather
    than an unlocked run.

    Args:
        folder (str or os.PathLike): The output folder; it must exist.

    Raises:
        OutputLockedError: If another run (in any process) holds the lock.

    Example::

        >>> with lock_output("igcam-maps"):
        ...     ...  # no other run writes to igcam-maps here
    """
    path = Path(folder) / LOCK_NAME
    locked = OutputLockedError(
        f"out: {os.fspath(folder)!r} is being written by another "
        f"explain-dataset run (it holds {str(path)!r}); wait for it to "
        "finish or choose another folder"
    )
    with _HELD_GUARD:
        with contextlib.suppress(FileNotFoundError):
            status = os.stat(path)
            if (status.st_dev, status.st_ino) in _HELD:
                raise locked
        flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK
        try:
            descriptor = os.open(path, flags, 0o666)
        except OSError as error:
            raise OutputLockedError(
                f"out: cannot open the lock file {str(path)!r} ({error}); remove "
                "it if it is not a regular file, or choose another folder"
            ) from error
        status = os.fstat(descriptor)
        if not stat.S_ISREG(status.st_mode):
            os.close(descriptor)
            raise OutputLockedError(
                f"out: the lock file {str(path)!r} is not a regular file; remove "
                "it or choose another folder"
            )
        identity = (status.st_dev, status.st_ino)
        try:
            fcntl.lockf(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            os.close(descriptor)
            if error.errno in (errno.EACCES, errno.EAGAIN):
                raise locked from error
            raise
        _HELD.add(identity)
    try:
        yield
    finally:
        with _HELD_GUARD:
            _HELD.discard(identity)
            os.close(descriptor)  # releases the lock


def new_run_id() -> str:
    """A run's id: UTC time and 8 random hex digits (unique in shard names)."""
    return f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{secrets.token_hex(4)}"


def prepare_output(
    folder: Path,
    settings: Mapping[str, Any],
    source: Path,
    targets: Mapping[str, int],
    overwrite: bool,
) -> list[str]:
    """Check the folder and make its indexes true again; return notes for the user.

    Reads (and so checks) every index; removes ``index.json`` so that no
    stale merged index is read while the run is under way; refuses other
    settings, another source folder or other targets; then, in each rank
    index, resolves the shards an interrupted run was writing (deleting
    those proven complete), verifies every listed shard (size and SHA-256;
    a damaged or missing one is unlisted and its images explained again),
    drops the records of image files whose bytes changed (their SHA-256
    differs from the record's) or that vanished, deletes
    shards no record uses any more (when proven), and rewrites the index.

    Args:
        folder (Path): The output folder (locked by the caller).
        settings (Mapping[str, Any]): What the maps of this run depend on.
        source (Path): The image folder.
        targets (Mapping[str, int]): Image key -> class to explain, or
            :data:`PREDICTED` for the top-1 class (a segmentation model's or
            detector's default class).
        overwrite (bool): Delete the job's files (only those proven to be
            its own) and start afresh instead of resuming.

    Returns:
        list[str]: One line per thing the user should know (maps that will
        be explained again, files left because they cannot be proven to be
        the job's).

    Raises:
        OutputMismatchError: Other settings, source or targets (unless
            ``overwrite``).
        IndexFormatError: An index is damaged, edited or of an older format.
    """
    merged = folder / MERGED_INDEX_NAME
    if os.path.lexists(merged):
        read_index(merged)  # only the job's own index is removed
    indexes = {path: read_index(path) for path in rank_index_paths(folder)}
    if not overwrite:  # refusals come before any change
        _check_compatible(folder, indexes, settings, source)
        _check_targets(folder, indexes, targets)
        _check_unique_keys(indexes)
    merged.unlink(missing_ok=True)
    notes: list[str] = []
    for path, index in indexes.items():
        if overwrite:
            for group in ("shards", "pending"):
                for name, entry in index[group].items():
                    if not remove_if_written_by_job(folder / name, entry):
                        _note_left(folder, name, notes)
            path.unlink()
            continue
        changed = _resolve_pending(folder, index, notes)
        changed |= _drop_damaged_shards(folder, index, notes)
        changed |= _forget_changed_images(index, source)
        changed |= _remove_unused_shards(folder, index, notes)
        if changed:
            safe_files.atomic_write_json(path, index, replace=True)
    return notes


def _check_unique_keys(indexes: Mapping[Path, dict[str, Any]]) -> None:
    """Refuse an image or a shard listed by two rank indexes (a hand edit)."""
    owner: dict[str, Path] = {}
    for path, index in indexes.items():
        names = [*index["images"], *index["unexplained"]]
        for name in [*names, *index["shards"], *index["pending"]]:
            if name in owner:
                raise IndexFormatError(
                    f"index: {str(path)!r} and {str(owner[name])!r} both list "
                    f"{name!r}; one was edited by hand: remove its entry from one"
                )
            owner[name] = path


def _check_compatible(
    folder: Path,
    indexes: Mapping[Path, dict[str, Any]],
    settings: Mapping[str, Any],
    source: Path,
) -> None:
    resolved = str(source.resolve())
    for index in indexes.values():
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


def _check_targets(
    folder: Path, indexes: Mapping[Path, dict[str, Any]], targets: Mapping[str, int]
) -> None:
    """Refuse a folder whose maps explain other classes than asked for now."""
    for index in indexes.values():
        records = [*index["images"].items(), *index["unexplained"].items()]
        for key, record in records:
            wanted = targets.get(key)
            if wanted is None:
                continue
            default = "the predicted class"
            if "requested" in record:  # a segmentation or detection image
                if wanted == record["requested"]:
                    continue
                default = "the default class"
                asked = record["requested"]
                there = default if asked == PREDICTED else f"class {asked}"
            elif wanted == PREDICTED and record["target"] != record["predicted"]:
                there = f"class {record['target']}"
            elif wanted not in (PREDICTED, record["target"]):
                there = f"class {record['target']}"
            else:
                continue
            now = default if wanted == PREDICTED else f"class {wanted}"
            raise OutputMismatchError(
                f"out: {str(folder)!r} holds maps for other classes ({key!r}: "
                f"{there} there, {now} now); choose another folder or overwrite it"
            )


def _note_left(folder: Path, name: str, notes: list[str]) -> None:
    if os.path.lexists(folder / name):
        notes.append(
            f"left {str(folder / name)!r}: it is not the file the job wrote under "
            "that name (changed, or written only in part), so it is not deleted"
        )


def _resolve_pending(folder: Path, index: dict[str, Any], notes: list[str]) -> bool:
    """Delete the complete shards an interrupted run had not yet listed."""
    for name, entry in index["pending"].items():
        if not remove_if_written_by_job(folder / name, entry):
            _note_left(folder, name, notes)
    changed = bool(index["pending"])
    index["pending"] = {}
    return changed


def _drop_damaged_shards(folder: Path, index: dict[str, Any], notes: list[str]) -> bool:
    """Unlist shards whose file is not the one written (and their images)."""
    damaged = {
        name
        for name, entry in index["shards"].items()
        if not written_by_job(folder / name, entry)
    }
    for name in sorted(damaged):
        count = sum(r["shard"] == name for r in index["images"].values())
        notes.append(
            f"{str(folder / name)!r} is damaged or missing (not the size and "
            f"SHA-256 its index records): its {count} image(s) are explained "
            "again, and the file is left as it is"
        )
        del index["shards"][name]
    index["images"] = {
        key: record
        for key, record in index["images"].items()
        if record["shard"] not in damaged
    }
    return bool(damaged)


def _forget_changed_images(index: dict[str, Any], source: Path) -> bool:
    """Drop the records (maps and unexplained) of images whose file's bytes
    changed (whatever its size and time say) or that vanished since."""
    changed = False
    for group in ("images", "unexplained"):
        kept = {
            key: record
            for key, record in index[group].items()
            if source_digest(source / key) == record["file_sha256"]
        }
        changed |= len(kept) < len(index[group])
        index[group] = kept
    return changed


def _remove_unused_shards(
    folder: Path, index: dict[str, Any], notes: list[str]
) -> bool:
    """Delete the shards no record uses any more (their maps were replaced)."""
    used = {record["shard"] for record in index["images"].values()}
    unused = [name for name in index["shards"] if name not in used]
    for name in unused:
        if not remove_if_written_by_job(folder / name, index["shards"].pop(name)):
            _note_left(folder, name, notes)
    return bool(unused)


def done_keys(folder: Path) -> set[str]:
    """The image keys any rank index of ``folder`` lists (unexplained too)."""
    done: set[str] = set()
    for path in rank_index_paths(folder):
        index = read_index(path)
        done.update(index["images"], index["unexplained"])
    return done


def merge_indexes(folder: Path, settings: Mapping[str, Any], source: Path) -> None:
    """Write ``index.json`` from the ranks' indexes (it deletes nothing).

    Only call it while holding :func:`lock_output` and after every rank of
    the run has closed its writer.
    """
    merged = new_index(settings, source)
    for path in rank_index_paths(folder):
        index = read_index(path)
        merged["shards"].update(index["shards"])
        merged["images"].update(index["images"])
        merged["unexplained"].update(index["unexplained"])
    for group in ("images", "unexplained"):
        merged[group] = dict(sorted(merged[group].items()))
    safe_files.atomic_write_json(folder / MERGED_INDEX_NAME, merged)
