"""The benchmark scripts' results files: no script writes over a file it did not write.

Every results file a script writes holds the script's file name under
``"written_by"``. Before it measures anything, a script claims the name it
was given (:func:`claim`): the name must be new, or hold an earlier results
file of the same script, which the new results then replace. Anything else
under that name (a user's file, another script's results, a folder, a
link) stops the script with a message naming it, before any work, and is
left as it is. Each write is atomic (``captum_igcam.app.safe_files``): a
killed run leaves the previous file whole, and a write that finds a new
file under the name in the meantime fails instead of replacing it.

Files whose name ends in ``.gz`` are gzip-compressed.
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path
from typing import Any

from captum_igcam.app.safe_files import atomic_write_bytes

#: The key that names the script that wrote a results file.
WRITTEN_BY = "written_by"


def read(path: str | os.PathLike[str]) -> Any:
    """The JSON in ``path`` (gzip-compressed for ``.gz``), or None if ``path``
    is not a regular file holding JSON."""
    path = Path(path)
    if path.is_symlink() or not path.is_file():
        return None
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, UnicodeDecodeError, ValueError):
        return None


def written_by(path: str | os.PathLike[str]) -> str | None:
    """The script that wrote the results file ``path``, or None."""
    data = read(path)
    return data.get(WRITTEN_BY) if isinstance(data, dict) else None


def claim(path: str | os.PathLike[str], script: str) -> Path:
    """Checks that ``script`` may write its results to ``path``.

    Args:
        path (str or os.PathLike): The results file asked for.
        script (str): The script's file name, e.g. ``"speed.py"``.

    Returns:
        Path: ``path``, new or an earlier results file of ``script``.

    Raises:
        SystemExit: Something else has that name; it is left as it is.
    """
    path = Path(path)
    if os.path.lexists(path) and written_by(path) != script:
        raise SystemExit(
            f"{path}: exists and is not a results file of {script} (no "
            f'"{WRITTEN_BY}": "{script}" in it); it was left as it is. Name a '
            "new file, or move that one away yourself"
        )
    if not path.parent.is_dir():
        raise SystemExit(f"{path}: its folder {path.parent} does not exist")
    return path


def write(
    path: str | os.PathLike[str], results: dict[str, Any], script: str, **dumps: Any
) -> None:
    """Writes ``results`` to ``path`` atomically, marked as ``script``'s.

    Args:
        path (str or os.PathLike): A name :func:`claim` accepted.
        results (dict): The results; ``"written_by"`` is put first.
        script (str): The script's file name.
        **dumps: Options of :func:`json.dumps` (default: ``indent=2``).

    Raises:
        FileExistsError: Something that is not ``script``'s results file
            appeared under the name since it was claimed (left as it is).
    """
    text = json.dumps({WRITTEN_BY: script, **results}, **(dumps or {"indent": 2}))
    data = (text + "\n").encode("utf-8")
    if Path(path).suffix == ".gz":
        data = gzip.compress(data, mtime=0)
    atomic_write_bytes(path, data, replace=written_by(path) == script)
