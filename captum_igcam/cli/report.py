"""``captum-igcam report``: a static HTML report to open in a browser.

For ``explain-dataset`` output folders, a gallery of every photo beside each
method's overlay; for a ``benchmark --json`` file, the metric table, curves
and breakdowns. The work is :func:`captum_igcam.report.build_report`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from captum_igcam.app.errors import UsageError

NAME = "report"
HELP = "write a static HTML report of explain-dataset folders or a benchmark result"
DESCRIPTION = (
    "Write a self-contained HTML report (one folder; open its index.html "
    "from disk, no server or network needed). Given explain-dataset output "
    "folders (one per method, same images): a gallery of each photo beside "
    "each method's overlay, with the prediction and its probability, paged "
    "and sortable by class, confidence and disagreement between methods; "
    "written into the first folder's report/ subfolder. Given a benchmark "
    "--json file: the metric table with 95% intervals, the deletion and "
    "insertion curves, breakdowns by object size and class, and the images "
    "where the methods differ most; written into FILE-report/ beside it. "
    "Thumbnails are written once and reused when the report is made again."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the arguments of ``report``."""
    parser.add_argument(
        "paths",
        nargs="+",
        type=Path,
        metavar="PATH",
        help="explain-dataset --out folders, or one benchmark --json file",
    )
    parser.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help="report folder (default: DIR/report/ for explain-dataset folders, "
        "FILE-report/ for a benchmark file); files it did not write are never "
        "replaced",
    )
    parser.add_argument(
        "--no-progress", action="store_true", help="do not show a progress bar"
    )


def run(args: argparse.Namespace) -> int:
    """Run ``captum-igcam report``; print where the report is."""
    if not args.no_progress:
        shown = ", ".join(map(str, args.paths))
        print(f"captum-igcam report: reading {shown}", file=sys.stderr, flush=True)
    from captum_igcam.report import build_report

    try:
        index = build_report(args.paths, args.out, progress=not args.no_progress)
    except (ValueError, FileExistsError) as error:  # IndexFormatError included
        raise UsageError(str(error)) from error
    print(f"report written: open {index} in a browser")
    return 0
