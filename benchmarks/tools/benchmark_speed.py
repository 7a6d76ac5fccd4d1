"""Speed of the benchmark loop: batched passes against one image at a time.

Times :func:`captum_igcam.evaluation.evaluate` on the same composites with
``batch_size=1`` and with a larger batch, and, with ``--reference-runner``,
a reference loop (a ``runner.py`` file, e.g. the one of commit 7f948b1:
``git show 7f948b1:captum_igcam/evaluation/runner.py``), which explained one
image at a time and ran each method's deletion/insertion curves apart. The
ratios are measured side by side in one process. It also checks that the
batched values equal the one-image values.

Run::

    git show 7f948b1:captum_igcam/evaluation/runner.py > /tmp/old_runner.py
    python benchmarks/tools/benchmark_speed.py --n 8 \
        --reference-runner /tmp/old_runner.py
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path

# benchmarks/lib: the results files every script writes.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))

import numpy as np
import results_file
import torch

from captum_igcam import evaluation
from captum_igcam.app.models import load_model
from captum_igcam.app.settings import MethodSettings
from captum_igcam.evaluation.datasets import composites

#: This script's name in the results files it writes.
SCRIPT = Path(__file__).name

METHODS = ["gradcam", "igcam", "igcam-paper", "igcam-notebook"]


def timed(function, *args, **kwargs):
    started = time.perf_counter()
    value = function(*args, **kwargs)
    return value, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--curve-steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--reference-runner", metavar="PATH")
    parser.add_argument("--out", default="benchmark_speed.json")
    args = parser.parse_args()
    out = results_file.claim(args.out, SCRIPT)
    torch.set_num_threads(args.threads)
    bundle = load_model(device=args.device)
    dataset = composites(args.n, seed=0)
    common = {"methods": METHODS, "curve_steps": args.curve_steps, "progress": False}
    settings = {**common, "settings": MethodSettings(n_steps=args.steps)}
    timings = {}
    if args.reference_runner:
        spec = importlib.util.spec_from_file_location(
            "earlier_runner", args.reference_runner
        )
        old = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = old  # its dataclasses look themselves up
        spec.loader.exec_module(old)
        _, timings["earlier loop (one image, curves per method)"] = timed(
            old.evaluate, bundle, dataset, n_steps=args.steps, **common
        )
    one, timings["batch_size=1"] = timed(
        evaluation.evaluate, bundle, dataset, batch_size=1, **settings
    )
    batched, timings[f"batch_size={args.batch}"] = timed(
        evaluation.evaluate, bundle, dataset, batch_size=args.batch, **settings
    )
    largest = 0.0
    for name, record in one.records.items():
        for metric, values in record.values.items():
            other = np.asarray(batched.records[name].values[metric])
            largest = max(largest, float(np.nanmax(np.abs(other - np.asarray(values)))))
    slowest = max(timings.values())
    report = {
        "images": args.n,
        "methods": METHODS,
        "steps": args.steps,
        "curve_steps": args.curve_steps,
        "threads": args.threads,
        "device": args.device,
        "seconds": timings,
        "speed_up_vs_slowest": {k: slowest / v for k, v in timings.items()},
        "largest_difference_batched_vs_one_image": largest,
    }
    results_file.write(out, report, SCRIPT)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
