"""Count the tests and the assertions of the test suite.

Counts, by walking the syntax tree of every ``tests/*.py`` file, the
``assert`` statements and the calls that assert on their own
(``pytest.raises``, ``pytest.warns``, ``pytest.deprecated_call`` and any
``assert_*`` function of numpy, torch or Quantus, such as ``np.testing.assert_allclose``
and ``torch.testing.assert_close``), and asks
pytest how many tests it collects for the fast set (``-m 'not slow'``) and the
slow set (``-m slow``).

Example::

    python benchmarks/tools/count_assertions.py            # totals
    python benchmarks/tools/count_assertions.py --by-file  # one line a file
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

RAISING_CALLS = {"raises", "warns", "deprecated_call"}
LIBRARIES = ("np.", "numpy.", "torch.", "quantus.")


def _call_name(node: ast.Call) -> str:
    parts = []
    func = node.func
    while isinstance(func, ast.Attribute):
        parts.append(func.attr)
        func = func.value
    if isinstance(func, ast.Name):
        parts.append(func.id)
    return ".".join(reversed(parts))


def count_file(path: Path) -> Counter:
    """Count the assertions of one file.

    Args:
        path: A Python file.

    Returns:
        A Counter with keys ``assert`` (statements), ``raises`` (calls of
        ``pytest.raises``/``warns``/``deprecated_call``) and ``testing``
        (calls of the ``assert_*`` functions of numpy, torch and Quantus).
    """
    counts: Counter = Counter()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Assert):
            counts["assert"] += 1
        elif isinstance(node, ast.Call):
            name = _call_name(node)
            last = name.rsplit(".", 1)[-1]
            if name.startswith("pytest.") and last in RAISING_CALLS:
                counts["raises"] += 1
            elif last.startswith("assert_") and name.startswith(LIBRARIES):
                counts["testing"] += 1
    return counts


def collected(tests: Path, marker: str) -> int:
    """Return how many tests pytest collects under ``-m marker``."""
    command = [sys.executable, "-m", "pytest", "--collect-only", "-q"]
    command += ["-p", "no:cacheprovider", "-o", "addopts=", "-m", marker, str(tests)]
    out = subprocess.run(command, capture_output=True, text=True, check=False).stdout
    match = re.search(r"(\d+)(?:/\d+)? tests? (?:collected|selected)", out)
    if match is None:
        raise RuntimeError(f"pytest --collect-only printed no count:\n{out[-2000:]}")
    return int(match.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tests", nargs="?", default="tests", type=Path)
    parser.add_argument("--by-file", action="store_true", help="one line a file")
    parser.add_argument("--no-collect", action="store_true", help="no pytest counts")
    args = parser.parse_args()
    total: Counter = Counter()
    per_file = {}
    for path in sorted(args.tests.glob("*.py")):
        counts = count_file(path)
        per_file[path.name] = dict(counts, total=sum(counts.values()))
        total += counts
    report = {"assertions": dict(total, total=sum(total.values()))}
    if args.by_file:
        report["by_file"] = per_file
    if not args.no_collect:
        report["tests"] = {
            "fast": collected(args.tests, "not slow"),
            "slow": collected(args.tests, "slow"),
        }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
