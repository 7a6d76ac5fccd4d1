"""Link installed distributions, with everything they require, into a folder.

Usage::

    python .ci/link_installed.py DEST torch torchvision

For each named distribution of this interpreter's environment and every
distribution it requires (transitively, ignoring extras), each top-level
file or folder it installed (its packages, shared libraries and
``.dist-info``) is symlinked into ``DEST``. A fresh virtual environment with
a ``.pth`` file naming ``DEST`` then sees those packages, and pip counts them
as installed, so installing the project's wheel there does not download
torch (several GB with its CUDA libraries) a second time, while every other
dependency is resolved and installed by pip from the wheel's metadata.
"""

from __future__ import annotations

import sys
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name


def requirement_closure(names: list[str]) -> dict[str, metadata.Distribution]:
    """The named distributions and, transitively, what they require.

    Extras count: ``torch`` requires ``cuda-toolkit[cublas, ...]``, whose
    extras pull the CUDA libraries in.
    """
    found: dict[str, metadata.Distribution] = {}
    extras_seen: set[tuple[str, str]] = set()
    pending = [(name, "") for name in names]
    while pending:
        raw_name, extra = pending.pop()
        name = canonicalize_name(raw_name)
        if (name, extra) in extras_seen:
            continue
        extras_seen.add((name, extra))
        try:
            distribution = found.get(name) or metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue  # an optional or platform-specific requirement
        found[name] = distribution
        for line in distribution.requires or []:
            requirement = Requirement(line)
            marker = requirement.marker
            if marker is None or marker.evaluate({"extra": extra}):
                pending += [(requirement.name, "")]
                pending += [(requirement.name, e) for e in requirement.extras]
    return found


def main(dest: str, *names: str) -> None:
    target = Path(dest)
    target.mkdir(parents=True, exist_ok=True)
    for distribution in requirement_closure(list(names)).values():
        root = Path(distribution.locate_file(""))
        top_level = {Path(str(file)).parts[0] for file in distribution.files or []}
        for entry in sorted(top_level - {"..", "__pycache__"}):
            link = target / entry
            if not link.exists() and (root / entry).exists():
                link.symlink_to(root / entry)


if __name__ == "__main__":
    main(*sys.argv[1:])
