"""Atomic file writes: a reader never sees a half-written output file.

Each helper writes to a temporary file in the destination's folder and moves
it into place with :func:`os.replace`, which is atomic on POSIX and Windows.
An interrupted write leaves the previous file (if any) untouched. A failed
write (disk full, no permission, ...) raises an :class:`OSError` whose
message names the destination. New files get the permissions ``open()``
would give them (``0o666`` less the umask).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: Permissions of a new output file before the umask, as for ``open()``.
_NEW_FILE_MODE = 0o666


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temporary file that replaces ``path`` when the block succeeds.

    Args:
        path (str or os.PathLike): Final destination; its folder must exist.
        mode (str, optional): ``"wb"`` or ``"w"`` (text, UTF-8).
            Default: "wb"

    Yields:
        IO: The open temporary file. If the block raises, it is deleted and
        ``path`` is left as it was.

    Example::

        >>> with atomic_open("out/data.bin") as handle:
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
        os.replace(temporary, destination)
    except BaseException as error:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        if isinstance(error, OSError) and error.errno is not None:
            # Disk full, quota, permissions, I/O errors: name the output file
            # (the error itself names the hidden temporary file, or nothing).
            raise OSError(
                error.errno,
                f"cannot write {os.fspath(destination)!r}: "
                f"{error.strerror or os.strerror(error.errno)}",
            ) from error
        raise


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_open(path, "wb") as handle:
        handle.write(data)


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as indented UTF-8 JSON to ``path`` atomically."""
    with atomic_open(path, "w") as handle:
        json.dump(obj, handle, indent=2, ensure_ascii=False)
        handle.write("\n")


def atomic_save_npy(path: str | os.PathLike[str], array: np.ndarray) -> None:
    """Save ``array`` in ``.npy`` format to ``path`` atomically."""
    with atomic_open(path, "wb") as handle:
        np.save(handle, array)


def atomic_save_figure(
    figure: Figure, path: str | os.PathLike[str], **savefig_kwargs: Any
) -> None:
    """Save a matplotlib figure to ``path`` atomically.

    Args:
        figure (matplotlib.figure.Figure): The figure to save.
        path (str or os.PathLike): Destination; its suffix gives the format.
        **savefig_kwargs: Passed on to ``Figure.savefig`` (e.g. ``dpi``).
    """
    image_format = Path(path).suffix.lstrip(".") or "png"
    with atomic_open(path, "wb") as handle:
        figure.savefig(handle, format=image_format, **savefig_kwargs)


def ensure_writable_folder(folder: str | os.PathLike[str]) -> None:
    """Create ``folder`` (with parents) and check that files can be made in it.

    Raises:
        OSError: If the folder cannot be created or written to.
    """
    Path(folder).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile(dir=folder):
        pass
