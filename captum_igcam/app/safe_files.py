"""Safe file writes: a reader never sees a half-written output file, and a
file the caller did not write is never replaced.

Each helper writes to a temporary file in the destination's folder, flushes
it to the disk (``fsync``) and then puts it in place:

- by default (``replace=False``, an **exclusive create**) it links it to
  the destination name with :func:`os.link`, which fails if the name exists
  in any form (a file, a folder, a symbolic link, even a dangling one): a
  file the caller did not write is never replaced. On a file system without
  hard links the destination is created with ``O_CREAT | O_EXCL`` and the
  data copied in;
- ``replace=True`` moves it over the destination with :func:`os.replace`
  (atomic on POSIX and Windows), only for a file the caller has proven is
  its own (an index it wrote and has read back).

The folder is flushed too after the name appears, so a file that a later
write (an index) refers to is on the disk before that write. An interrupted
write leaves the previous file (if any) untouched. A failed write (disk
full, no permission, ...) raises an :class:`OSError` whose message names
the destination. New files get the permissions ``open()`` would give them
(``0o666`` less the umask). JSON is written strictly (:func:`strict_json`):
a non-finite number is written as ``null``, never as ``NaN`` or
``Infinity``, which strict parsers refuse.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: Permissions of a new output file before the umask, as for ``open()``.
_NEW_FILE_MODE = 0o666
#: ``os.link`` errors of file systems without hard links.
_NO_HARD_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOSYS, errno.EMLINK}


def fsync_folder(folder: str | os.PathLike[str]) -> None:
    """Flush a folder's entries (names created, renamed or removed) to the disk.

    Args:
        folder (str or os.PathLike): The folder.
    """
    descriptor = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(descriptor)
    except OSError as error:  # some file systems cannot flush a folder
        if error.errno not in (errno.EINVAL, errno.EBADF):
            raise
    finally:
        os.close(descriptor)


def _create_exclusive(temporary: Path, destination: Path) -> None:
    """Give ``temporary``'s data the name ``destination``, which must be new."""
    try:
        os.link(temporary, destination, follow_symlinks=False)
    except OSError as error:
        if error.errno not in _NO_HARD_LINKS:
            raise
        descriptor = os.open(
            destination, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _NEW_FILE_MODE
        )
        with os.fdopen(descriptor, "wb") as target, open(temporary, "rb") as data:
            shutil.copyfileobj(data, target)
            target.flush()
            os.fsync(target.fileno())


@contextlib.contextmanager
def atomic_open(
    path: str | os.PathLike[str], mode: str = "wb", *, replace: bool = False
) -> Iterator[IO[Any]]:
    """Open a temporary file that becomes ``path`` when the block succeeds.

    Args:
        path (str or os.PathLike): Final destination; its folder must exist.
        mode (str, optional): ``"wb"`` or ``"w"`` (text, UTF-8).
            Default: "wb"
        replace (bool, optional): Replace an existing ``path`` (only for a
            file the caller has proven is its own); with False, raise
            :class:`FileExistsError` (naming ``path``) if anything already
            has that name, and leave it as it is.
            Default: False

    Yields:
        IO: The open temporary file. If the block raises, it is deleted and
        ``path`` is left as it was.

    Example::

        >>> with atomic_open("out/data.bin", replace=False) as handle:
        ...     handle.write(b"...")
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"mode: expected 'wb' or 'w', got {mode!r}")
    destination = Path(path)
    temporary = destination.with_name(f".{destination.name}.{secrets.token_hex(6)}.tmp")
    try:
        # os.open applies the process's umask, as open() does (mkstemp would
        # make the file readable by its owner only).
        descriptor = os.open(
            temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _NEW_FILE_MODE
        )
        encoding = "utf-8" if mode == "w" else None
        with os.fdopen(descriptor, mode, encoding=encoding) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        if replace:
            os.replace(temporary, destination)
        else:
            _create_exclusive(temporary, destination)
            os.unlink(temporary)
        fsync_folder(destination.parent)
    except BaseException as error:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        if isinstance(error, FileExistsError):
            raise FileExistsError(
                errno.EEXIST,
                f"cannot write {os.fspath(destination)!r}: something else has "
                "that name (it was left as it is)",
            ) from error
        if isinstance(error, OSError) and error.errno is not None:
            # Disk full, quota, permissions, I/O errors: name the output file
            # (the error itself names the hidden temporary file, or nothing).
            raise OSError(
                error.errno,
                f"cannot write {os.fspath(destination)!r}: "
                f"{error.strerror or os.strerror(error.errno)}",
            ) from error
        raise


def atomic_write_bytes(
    path: str | os.PathLike[str], data: bytes, *, replace: bool = False
) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_open`)."""
    with atomic_open(path, "wb", replace=replace) as handle:
        handle.write(data)


def strict_json(obj: Any) -> str:
    """``obj`` as indented UTF-8 JSON text that every JSON parser accepts.

    Non-finite floats (``nan``, ``inf``, ``-inf``), which Python's
    :mod:`json` would write as the non-standard tokens ``NaN`` and
    ``Infinity``, are written as ``null``.

    Args:
        obj (Any): Dicts, lists, tuples, strings, numbers, booleans, None.

    Returns:
        str: The JSON text, ending with a newline.

    Example::

        >>> strict_json({"auc": float("nan")})
        '{\\n  "auc": null\\n}\\n'
    """
    text = json.dumps(_finite(obj), indent=2, ensure_ascii=False, allow_nan=False)
    return text + "\n"


def _finite(obj: Any) -> Any:
    """``obj`` with every non-finite float replaced by None."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {key: _finite(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(value) for value in obj]
    return obj


def atomic_write_json(
    path: str | os.PathLike[str], obj: Any, *, replace: bool = False
) -> None:
    """Write ``obj`` as strict JSON (:func:`strict_json`) to ``path`` atomically."""
    with atomic_open(path, "w", replace=replace) as handle:
        handle.write(strict_json(obj))


def atomic_save_npy(
    path: str | os.PathLike[str], array: np.ndarray, *, replace: bool = False
) -> None:
    """Save ``array`` in ``.npy`` format to ``path`` atomically."""
    with atomic_open(path, "wb", replace=replace) as handle:
        np.save(handle, array)


def atomic_save_figure(
    figure: Figure,
    path: str | os.PathLike[str],
    *,
    replace: bool = False,
    **savefig_kwargs: Any,
) -> None:
    """Save a matplotlib figure to ``path`` atomically.

    Args:
        figure (matplotlib.figure.Figure): The figure to save.
        path (str or os.PathLike): Destination; its suffix gives the format.
        replace (bool, optional): See :func:`atomic_open`.
            Default: False
        **savefig_kwargs: Passed on to ``Figure.savefig`` (e.g. ``dpi``).
    """
    image_format = Path(path).suffix.lstrip(".") or "png"
    with atomic_open(path, "wb", replace=replace) as handle:
        figure.savefig(handle, format=image_format, **savefig_kwargs)


def ensure_writable_folder(folder: str | os.PathLike[str]) -> list[Path]:
    """Create ``folder`` (with parents) and check that files can be made in it.

    Args:
        folder (str or os.PathLike): The folder.

    Returns:
        list[Path]: The folders this call created, outermost first (empty
        when ``folder`` existed), for :func:`remove_empty_folders`.

    Raises:
        OSError: If the folder cannot be created or written to.

    Example::

        >>> ensure_writable_folder("out/maps")  # neither existed
        [PosixPath('out'), PosixPath('out/maps')]
    """
    path = Path(folder)
    missing = [p for p in (path, *path.parents) if not os.path.lexists(p)][::-1]
    path.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile(dir=folder):
        pass
    return missing


def remove_empty_folders(folders: list[Path]) -> None:
    """Remove the folders of :func:`ensure_writable_folder` that are still empty.

    Innermost first; a folder that holds anything (and every folder around
    it) is left as it is.

    Args:
        folders (list[Path]): Outermost first, as
            :func:`ensure_writable_folder` returns them.
    """
    for folder in reversed(folders):
        try:
            folder.rmdir()  # only an empty folder
        except OSError:
            return
