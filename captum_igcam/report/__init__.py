"""Static HTML reports of ``explain-dataset`` folders and benchmark results.

A report is one folder that opens from disk in a browser (no server, no
network): ``index.html``, its style and script, ``data.js`` and thumbnails.
:func:`build_report` picks the kind from what it is given:

- ``explain-dataset`` output folders: a gallery
  (:func:`~captum_igcam.report.gallery.build_gallery`), written into the
  first folder's ``report/`` subfolder;
- a ``captum-igcam benchmark --json`` file: the metric table, curves and
  breakdowns (:func:`~captum_igcam.report.benchmark.build_benchmark_report`),
  written into ``<file name without .json>-report/`` beside it.

Example::

    >>> build_report(["igcam-maps"])
    PosixPath('igcam-maps/report/index.html')
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

__all__ = ["build_report", "default_output"]

#: Subfolder of an ``explain-dataset`` folder that holds its gallery.
GALLERY_FOLDER = "report"


def default_output(paths: Sequence[str | os.PathLike[str]]) -> Path:
    """Where :func:`build_report` writes when not told."""
    first = Path(paths[0])
    if first.is_file():
        return first.with_name(f"{first.stem}-report")
    return first / GALLERY_FOLDER


def build_report(
    paths: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str] | None = None,
    progress: bool = True,
) -> Path:
    """Write the report of ``explain-dataset`` folders or a benchmark result.

    Args:
        paths (sequence of str or os.PathLike): ``explain-dataset`` output
            folders (one per method, same images), or one benchmark JSON file.
        out (str or os.PathLike, optional): The report folder. It must be new,
            empty or an earlier report (files it did not write are never
            replaced); thumbnails already there are reused.
            Default: None (:func:`default_output`)
        progress (bool, optional): Show a progress bar while thumbnails are
            written.
            Default: True

    Returns:
        Path: The report's ``index.html``.

    Raises:
        ValueError: If ``paths`` mixes files and folders, names several
            benchmark files, or names something that is not such an output.
        FileExistsError: If ``out`` holds files the report did not write.
    """
    if not paths:
        raise ValueError(
            "paths: expected explain-dataset folders or a benchmark JSON file"
        )
    missing = [os.fspath(p) for p in paths if not Path(p).exists()]
    if missing:
        raise ValueError(f"paths: {', '.join(map(repr, missing))} does not exist")
    is_file = [Path(p).is_file() for p in paths]
    target = Path(out) if out is not None else default_output(paths)
    if any(is_file):
        if len(paths) > 1:
            raise ValueError(
                "paths: expected one benchmark JSON file or explain-dataset "
                f"folders only, got {', '.join(map(os.fspath, paths))}"
            )
        from captum_igcam.report.benchmark import build_benchmark_report

        return build_benchmark_report(paths[0], target)
    from captum_igcam.report.gallery import build_gallery

    return build_gallery(paths, target, progress=progress)
