"""The report's folder: files it owns, created once, never someone else's.

A report folder carries a marker file written when the folder is first made
into a report. Every file the report writes lives under such a folder:

- thumbnails are created with exclusive creation (a temporary file linked to
  its final name with :func:`os.link`, which fails when the name exists), so
  a thumbnail is written once and reused by every later run;
- pages (``index.html``, the data script) are replaced atomically on each
  run; they are the report's own, named by the marker.

A folder that exists, is not empty and has no marker is refused, so the
command never writes over files it did not create.
"""

from __future__ import annotations

import os
from pathlib import Path

from captum_igcam.app import safe_files

#: File that marks a folder as written by ``captum-igcam report``.
MARKER_NAME = ".captum-igcam-report"


def open_report_folder(folder: str | os.PathLike[str]) -> Path:
    """Create (or reopen) a report folder.

    Args:
        folder (str or os.PathLike): Where the report goes.

    Returns:
        Path: The folder, with its marker.

    Raises:
        FileExistsError: If ``folder`` exists, holds files and was not made
            by ``captum-igcam report`` (its marker is missing).

    Example::

        >>> open_report_folder("igcam-maps/report")
        PosixPath('igcam-maps/report')
    """
    path = Path(folder)
    marker = path / MARKER_NAME
    if path.is_dir() and not marker.is_file() and any(path.iterdir()):
        raise FileExistsError(
            f"out: {os.fspath(folder)!r} holds files that captum-igcam report "
            f"did not write (no {MARKER_NAME}); choose another folder"
        )
    safe_files.ensure_writable_folder(path)
    if not marker.is_file():
        create_once(marker, b"written by captum-igcam report\n")
    return path


def create_once(path: Path, data: bytes) -> bool:
    """Write ``data`` to a new file ``path``; leave an existing file alone.

    The file appears complete or not at all.

    Args:
        path (Path): The file; its folder must exist.
        data (bytes): Its content.

    Returns:
        bool: True if the file was written, False if it already existed.
    """
    try:
        safe_files.atomic_write_bytes(path, data)  # an exclusive create
    except FileExistsError:
        return False
    return True


def replace_page(folder: Path, name: str, text: str) -> None:
    """Write one of the report's own pages, replacing the previous version."""
    safe_files.atomic_write_bytes(folder / name, text.encode("utf-8"), replace=True)
