"""Peak memory of one Integrated Grad-CAM call over its floor's, per model.

Usage::

    python benchmarks/measurements/call_memory.py [--repeats 3] [--json FILE]

For ResNet-50 at ``layer4`` and VGG-16 at ``features.29`` (random weights:
memory does not depend on them), batch 1, ``n_steps=50``,
``internal_batch_size=25``, each run in a fresh subprocess of its own:

- ``floor``: the ``n_steps`` no-grad forward passes over the same scaled
  inputs, in the same chunks (``internal_batch_size`` rows per pass);
- ``igcam``: one ``IntegratedLayerGradCam.attribute`` call (the public API).

Peak memory is the growth of the resident set from just before the run to
its high-water mark (``VmHWM``, reset through ``/proc/self/clear_refs``;
Linux). The script prints the median of ``--repeats`` subprocesses per
variant and the ratio igcam / floor, with the machine's load
average before and after, since other processes can move the figures.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

# benchmarks/lib: the results files every script writes.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))

import results_file
from speed import Case, measure_memory

#: This script's name in the results files it writes.
SCRIPT = Path(__file__).name

CASES = (
    Case("resnet50", "layer4", batch_size=1, internal_batch_size=25),
    Case("vgg16", "features.29", batch_size=1, internal_batch_size=25),
)
VARIANTS = ("floor", "igcam")


def measure(case: Case, repeats: int) -> dict[str, object]:
    """Median peak growth of each variant, in MiB, and their ratio."""
    runs: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for _ in range(repeats):  # interleaved, so that load changes hit both
        for name in VARIANTS:
            runs[name].append(measure_memory(case, name))
            print(f"  {name}: {runs[name][-1]:.0f} MiB", file=sys.stderr, flush=True)
    medians = {name: statistics.median(values) for name, values in runs.items()}
    return {
        "peak_mb": medians,
        "runs_mb": runs,
        "igcam_over_floor": medians["igcam"] / medians["floor"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="subprocesses each")
    parser.add_argument("--json", metavar="FILE", help="write the results as JSON")
    args = parser.parse_args()
    out = args.json and results_file.claim(args.json, SCRIPT)
    load_before = os.getloadavg()
    results = {}
    for case in CASES:
        print(f"measuring {case.name} ...", file=sys.stderr, flush=True)
        results[case.name] = measure(case, args.repeats)
    load_after = os.getloadavg()
    print(
        f"load average (1, 5, 15 min) before {load_before}, after {load_after}; "
        f"{os.cpu_count()} CPUs; median of {args.repeats} fresh subprocesses"
    )
    print("| case | floor MiB | igcam MiB | igcam / floor |")
    print("|---|---|---|---|")
    for name, result in results.items():
        peak = result["peak_mb"]
        ratio = result["igcam_over_floor"]
        print(f"| {name} | {peak['floor']:.0f} | {peak['igcam']:.0f} | {ratio:.2f} |")
    if out:
        report = {"load_before": load_before, "load_after": load_after, **results}
        results_file.write(out, report, SCRIPT)


if __name__ == "__main__":
    main()
