"""The index files of an ``explain-dataset`` output folder: names, schema, proofs.

An output folder holds

- ``shards/<run>-rank<R>-<NNNNN>.npz``: the maps of a group of images, with
  the float32 array ``maps`` ``(n, 1, h, w)`` and the string array ``keys``
  naming the image of each row. ``<run>`` is the id of the run that wrote
  it (a UTC time and 8 random hex digits), so no two runs ever use the same
  name;
- ``index-rank<R>.json``: what rank ``R``'s runs have written (the source of
  truth for resuming), replaced atomically after each of its shards;
- ``index.json``: all ranks' indexes merged when a run finishes;
- ``.explain-dataset.lock``: the lock a run holds while it writes.

Each index is a JSON object::

    {"format": "captum-igcam-maps/4",
     "settings": {...},            # what the maps depend on
     "source": "/abs/images",      # the folder the keys are relative to
     "shards": {"shards/<run>-rank0-00000.npz":
                    {"size": 1234, "sha256": "...", "rows": 256}, ...},
     "pending": {name: {"size": ..., "sha256": ...}},  # being written
     "images": {"cats/a.png": {"shard": ..., "row": 0, "predicted": 285,
                               "probability": 0.8, "target": 285,
                               "target_probability": 0.8,
                               "file_sha256": "..."}},
     "unexplained": {}}

A segmentation model's or a detector's image record has, in place of the
softmax fields, ``"requested"`` (the class asked for, ``-1`` for the
default) and ``"explained"`` (what was explained: class, region or box,
matched detection; see :func:`captum_igcam.app.tasks.prepare`), with
``"target"`` the class or label explained. ``"unexplained"`` lists the
images with nothing to explain (no pixel of the class, no such detection),
``{"reason": ..., "requested": ..., "file_sha256": ...}`` each: they are not
explained again while their file's bytes are unchanged.

Every record is bound to the exact bytes of its source image:
``"file_sha256"`` is the SHA-256 of the bytes the job read and decoded
(:func:`captum_igcam.app.images.read_image`). A resumed run explains again
every image whose file no longer has that digest, the reader
(:mod:`~captum_igcam.dataset_job.maps_io`) serves it to compare, and the
report shows no map over a photo of other bytes.

A record holds exactly the fields above (:data:`IMAGE_FIELDS`,
:data:`TASK_IMAGE_FIELDS`, :data:`UNEXPLAINED_FIELDS`): an extra or missing
field is a format error, like a wrong value.

A file is **proven** to be one the job wrote when an index records its name
and its content (size and SHA-256) and the file is a regular file with that
content (:func:`written_by_job`); the job deletes no other file.
:func:`read_index` checks the whole schema and names the file and the field
of any problem.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import stat
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO

INDEX_FORMAT = "captum-igcam-maps/4"
_FORMAT_FAMILY = "captum-igcam-maps/"
MERGED_INDEX_NAME = "index.json"
SHARD_FOLDER = "shards"
LOCK_NAME = ".explain-dataset.lock"
#: Shard names an index may hold: one plain file name in ``shards/``.
_SHARD_NAME = re.compile(r"shards/[0-9A-Za-z][0-9A-Za-z_-]*\.npz")
_SHA256 = re.compile(r"[0-9a-f]{64}")
#: The tasks whose image records say what was explained (``"explained"``).
TASK_RECORDS = ("segmentation", "detection")
#: The fields of a classifier's image record.
IMAGE_FIELDS = frozenset(
    {"shard", "row", "predicted", "probability", "target", "target_probability",
     "file_sha256"}
)  # fmt: skip
#: The fields of a segmentation model's or detector's image record.
TASK_IMAGE_FIELDS = frozenset(
    {"shard", "row", "target", "requested", "explained", "file_sha256"}
)
#: The fields of an image with nothing to explain.
UNEXPLAINED_FIELDS = frozenset({"reason", "requested", "file_sha256"})


class IndexFormatError(ValueError):
    """A file of an output folder is not what the job wrote (damaged, edited,
    old, or not a regular file); the message names the file and the field.

    The one error every reader of the folder's files raises (the job on
    resume, :func:`~captum_igcam.dataset_job.maps_io.open_maps`, the report).
    """


def source_digest(path: str | os.PathLike[str]) -> str | None:
    """SHA-256 of a source image's bytes now, or None if it is not a readable
    regular file.

    The file is opened without blocking and its type checked first, so a
    FIFO or a device put in place of an image is never waited on.

    Args:
        path (str or os.PathLike): The image file (a link to one is followed).

    Returns:
        str or None: 64 hex digits, as ``"file_sha256"`` records them.
    """
    with _regular_file(path, follow_links=True) as handle:
        if handle is None:
            return None
        digest = hashlib.sha256()
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
        return digest.hexdigest()


def rank_index_name(rank: int | str) -> str:
    """File name of rank ``rank``'s own index (``"*"`` gives a glob pattern)."""
    return f"index-rank{rank}.json"


def rank_index_paths(folder: Path) -> list[Path]:
    """The ranks' own index files in ``folder``, sorted."""
    return sorted(folder.glob(rank_index_name("*")))


def shard_name(run_id: str, rank: int, number: int) -> str:
    """Name (relative to the output folder) of a run's ``number``-th shard."""
    return f"{SHARD_FOLDER}/{run_id}-rank{rank}-{number:05d}.npz"


def content_entry(data: bytes) -> dict[str, Any]:
    """``{"size", "sha256"}`` of a file's bytes, as an index records them."""
    return {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def read_regular_file(path: Path) -> bytes | None:
    """A regular file's bytes; None if it is missing, a link or not a file.

    The file is opened without blocking (a FIFO or a device in its place
    would otherwise wait forever for a writer) and its type is checked on
    the open descriptor before anything is read.
    """
    with _regular_file(path, follow_links=False) as handle:
        return None if handle is None else handle.read()


@contextlib.contextmanager
def _regular_file(
    path: str | os.PathLike[str], follow_links: bool
) -> Iterator[BinaryIO | None]:
    """The file open for reading, or None if it cannot be opened or is not a
    regular file; opened without blocking, its type checked on the descriptor."""
    flags = os.O_RDONLY | os.O_NONBLOCK | (0 if follow_links else os.O_NOFOLLOW)
    try:
        descriptor = os.open(path, flags)
    except OSError:
        yield None
        return
    with os.fdopen(descriptor, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            yield None
            return
        os.set_blocking(handle.fileno(), True)
        yield handle


def written_by_job(path: Path, entry: Mapping[str, Any]) -> bool:
    """Whether ``path`` is a regular file with the size and SHA-256 of ``entry``."""
    data = read_regular_file(path)
    return data is not None and content_entry(data) == {
        "size": entry["size"],
        "sha256": entry["sha256"],
    }


def remove_if_written_by_job(path: Path, entry: Mapping[str, Any]) -> bool:
    """Delete ``path`` if it is proven to be the file ``entry`` records.

    Returns:
        bool: True if it was deleted; False if it is missing or anything
        else than that file (then it is left as it is).
    """
    if not written_by_job(path, entry):
        return False
    os.unlink(path)
    return True


def new_index(settings: Mapping[str, Any], source: Path) -> dict[str, Any]:
    """An empty index for maps of the images in ``source``."""
    return {
        "format": INDEX_FORMAT,
        "settings": dict(settings),
        "source": str(source.resolve()),
        "shards": {},
        "pending": {},
        "images": {},
        "unexplained": {},
    }


def read_index(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read one index file and check all of it.

    Args:
        path (str or os.PathLike): An ``index.json`` or ``index-rank<R>.json``.

    Returns:
        dict[str, Any]: The index, as described in the module's docstring.

    Raises:
        IndexFormatError: If the file cannot be read, is not a regular file,
            is of an older format, or any field is not as the job writes it;
            the message names the file and the field.

    Example::

        >>> read_index("igcam-maps/index.json")["settings"]["n_steps"]
        50
    """
    name = os.fspath(path)
    data = read_regular_file(Path(path))
    if data is None:
        raise IndexFormatError(
            f"index: {name!r} is missing, a link or not a regular file (a FIFO, "
            "a device or a folder); remove it or choose another folder"
        )
    try:
        index = json.loads(
            data.decode("utf-8"),
            object_pairs_hook=_no_duplicate_names,
            parse_constant=_no_constant,
        )
    except (ValueError, RecursionError) as error:
        raise IndexFormatError(
            f"index: {name!r} is not valid JSON as the job writes it ({error})"
        ) from error
    _check_index(index, name)
    return index


def _no_duplicate_names(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    names = [key for key, _ in pairs]
    repeated = sorted({key for key in names if names.count(key) > 1})
    if repeated:
        raise ValueError(f"the name {repeated[0]!r} appears twice in one object")
    return dict(pairs)


def _no_constant(text: str) -> None:
    raise ValueError(f"{text} is not a number the job writes")


def _check_index(index: Any, name: str) -> None:
    """Raise :class:`IndexFormatError` unless ``index`` follows the schema."""

    def fail(field: str, expected: str, value: Any) -> None:
        shown = repr(value)
        shown = shown if len(shown) <= 80 else shown[:77] + "..."
        raise IndexFormatError(
            f"index: {name!r}: field {field}: expected {expected}, got {shown}"
        )

    if not isinstance(index, dict):
        fail("(top level)", "a JSON object", type(index).__name__)
    version = index.get("format")
    if version != INDEX_FORMAT:
        if isinstance(version, str) and version.startswith(_FORMAT_FAMILY):
            raise IndexFormatError(
                f"index: {name!r} is of the older format {version!r}; this version "
                f"reads and extends {INDEX_FORMAT!r} only: write the maps into a "
                "new folder (or delete the old folder yourself)"
            )
        fail("format", f"{INDEX_FORMAT!r} (an explain-dataset index)", version)
    for field, kind in (
        ("settings", dict),
        ("source", str),
        ("shards", dict),
        ("pending", dict),
        ("images", dict),
        ("unexplained", dict),
    ):
        if not isinstance(index.get(field), kind):
            fail(
                field,
                f"a JSON {'object' if kind is dict else 'string'}",
                index.get(field),
            )
    for group in ("shards", "pending"):
        for shard, entry in index[group].items():
            where = f"{group}[{shard!r}]"
            if not _SHARD_NAME.fullmatch(shard):
                fail(where, "a name shards/<letters, digits, _ or ->.npz", shard)
            if not isinstance(entry, dict):
                fail(where, "a JSON object", entry)
            _check_count(entry, "size", where, 0, fail)
            if not isinstance(entry.get("sha256"), str) or not _SHA256.fullmatch(
                entry["sha256"]
            ):
                fail(f"{where}.sha256", "64 lower-case hex digits", entry.get("sha256"))
            if group == "shards":
                _check_count(entry, "rows", where, 1, fail)
    for key, record in index["images"].items():
        where = f"images[{key!r}]"
        is_task = isinstance(record, dict) and "explained" in record
        fields = TASK_IMAGE_FIELDS if is_task else IMAGE_FIELDS
        _check_image_entry(key, record, where, fields, fail)
        listed = record["shard"]
        shard = index["shards"].get(listed) if isinstance(listed, str) else None
        if shard is None:
            fail(f"{where}.shard", "a name listed in shards", listed)
        if not _is_int(record.get("row")) or not 0 <= record["row"] < shard["rows"]:
            fail(
                f"{where}.row",
                f"an integer in 0..{shard['rows'] - 1}",
                record.get("row"),
            )
        _check_count(record, "target", where, 0, fail)
        if "explained" in record:
            _check_task_fields(record, where, fail)
            continue
        _check_count(record, "predicted", where, 0, fail)
        for field in ("probability", "target_probability"):
            value = record.get(field)
            if not (_is_number(value) and 0 <= value <= 1):
                fail(f"{where}.{field}", "a number in [0, 1]", value)
    for key, record in index["unexplained"].items():
        where = f"unexplained[{key!r}]"
        _check_image_entry(key, record, where, UNEXPLAINED_FIELDS, fail)
        if key in index["images"]:
            fail(where, "an image without a map (it is in images)", key)
        if not isinstance(record.get("reason"), str):
            fail(f"{where}.reason", "a string", record.get("reason"))
        _check_count(record, "requested", where, -1, fail)


def _check_image_entry(
    key: str, record: Any, where: str, fields: frozenset[str], fail: Any
) -> None:
    """The checks common to ``images`` and ``unexplained`` entries: a
    relative key, exactly ``fields``, the source file's digest."""
    if not key or key.startswith("/") or ".." in key.split("/"):
        fail(where, "a path relative to the source folder", key)
    if not isinstance(record, dict):
        fail(where, "a JSON object", record)
    for extra in sorted(set(record) - fields):
        fail(f"{where}.{extra}", "no such field (it is not one the job writes)", extra)
    for missing in sorted(fields - set(record)):
        fail(f"{where}.{missing}", "a field the job writes (it is missing)", None)
    digest = record["file_sha256"]
    if not isinstance(digest, str) or not _SHA256.fullmatch(digest):
        fail(f"{where}.file_sha256", "64 lower-case hex digits", digest)


def _check_task_fields(record: dict, where: str, fail: Any) -> None:
    """A segmentation or detection record: ``requested`` and ``explained``."""
    _check_count(record, "requested", where, -1, fail)
    explained = record["explained"]
    if not isinstance(explained, dict) or explained.get("task") not in TASK_RECORDS:
        fail(
            f"{where}.explained",
            f"a JSON object with task one of {', '.join(TASK_RECORDS)}",
            explained,
        )
    if explained.get("target_index") != record["target"]:
        fail(
            f"{where}.explained.target_index",
            f"the record's target {record['target']}",
            explained.get("target_index"),
        )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)


def _check_count(entry: dict, field: str, where: str, least: int, fail: Any) -> None:
    value = entry.get(field)
    if not _is_int(value) or value < least:
        fail(f"{where}.{field}", f"an integer >= {least}", value)
