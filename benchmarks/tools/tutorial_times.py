"""How long each tutorial notebook takes, against its time budget.

Usage::

    python benchmarks/tools/tutorial_times.py [NOTEBOOK ...]

Runs each notebook of ``tutorials/`` (or the ones named) with nbclient in a
kernel on this interpreter, one after the other, and prints the seconds it
took beside its budget and the ratio, then the total beside the sum of the
budgets. The budgets (:data:`BUDGETS_S`, one per notebook; a test checks that
every notebook of ``tutorials/`` has one) are the tutorials' promise ("a few
minutes on 2 CPU cores"); the test suite only checks that the notebooks run,
with no time limit, because a busy machine is not a fault of the code. Exits
with status 1 when a notebook is over its budget, so the script can gate a
release on an idle machine.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import nbclient
import nbformat

TUTORIALS = Path(__file__).resolve().parents[2] / "tutorials"
#: Seconds each notebook may take on 2 idle CPU cores.
BUDGETS_S = {
    "01_getting_started.ipynb": 120,
    "02_steps_method_baseline.ipynb": 120,
    "03_evaluating_explanations.ipynb": 240,
    "04_vision_transformers.ipynb": 240,
    "05_segmentation_detection.ipynb": 120,
    "06_sanity_checks.ipynb": 240,
}


def time_notebook(name: str, workdir: Path) -> float:
    """Execute one notebook and return its wall-clock seconds."""
    notebook = nbformat.read(TUTORIALS / name, as_version=4)
    client = nbclient.NotebookClient(
        notebook,
        timeout=None,
        kernel_name="python3",  # ipykernel's spec: this interpreter
        resources={"metadata": {"path": str(workdir)}},
    )
    started = time.perf_counter()
    client.execute()
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", help=f"default: all of {BUDGETS_S}")
    names = parser.parse_args(argv).notebooks or list(BUDGETS_S)
    unknown = sorted(set(names) - set(BUDGETS_S))
    if unknown:
        parser.error(f"notebooks: expected names in {sorted(BUDGETS_S)}, got {unknown}")
    over_budget = False
    os.environ["MPLBACKEND"] = "Agg"  # inherited by the kernels
    with tempfile.TemporaryDirectory() as tmp:
        print(f"{'notebook':36s} {'seconds':>8s} {'budget':>7s} {'ratio':>6s}")
        total = 0.0
        for name in names:
            seconds = time_notebook(name, Path(tmp))
            total += seconds
            budget = BUDGETS_S[name]
            over_budget |= seconds > budget
            print(f"{name:36s} {seconds:8.1f} {budget:7d} {seconds / budget:6.2f}")
        budgets = sum(BUDGETS_S[name] for name in names)
        everything = f"all {len(names)}"
        print(f"{everything:36s} {total:8.1f} {budgets:7d} {total / budgets:6.2f}")
    return 1 if over_budget else 0


if __name__ == "__main__":
    raise SystemExit(main())
