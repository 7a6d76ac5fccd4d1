"""Throughput of two models explained in two threads, over the same calls run
one after the other, measured side by side in one process.

Each thread explains its own model: two ResNet-18s with different random
weights (the same architecture, so that the two threads have the same work
and the ideal ratio is 2x), ``layer4``, one 112 x 112 image, ``n_steps=16``.
Every call runs with one torch thread. ``torch.set_num_threads`` sets
the OpenMP thread count of the calling thread only, and a new thread starts
with the default (all cores), so each worker sets it itself: without that,
two threads of two OpenMP threads each compete for two cores and the ratio
stays near 1x. A process-wide lock around calls would also keep it at 1x.

Usage: ``python benchmarks/measurements/threads.py [--calls 4] [--repeats 3]
[--size 112]``.
It prints each repeat, the median ratio and the load average before and
after (on a shared machine the ratio moves with the load).
"""

from __future__ import annotations

import argparse
import os
import statistics
import threading
import time

import torch
import torchvision

from captum_igcam import IntegratedLayerGradCam

Job = tuple[IntegratedLayerGradCam, torch.Tensor]


def jobs(size: int) -> list[Job]:
    """Two ResNet-18s with different random weights, each with its input."""
    made = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        model = torchvision.models.resnet18(weights=None).eval()
        made.append(
            (IntegratedLayerGradCam(model, model.layer4), torch.rand(1, 3, size, size))
        )
    return made


def run(job: Job, calls: int) -> None:
    """``calls`` attributions with one torch thread in the calling thread."""
    torch.set_num_threads(1)
    explainer, inputs = job
    for _ in range(calls):
        explainer.attribute(inputs, target=1, n_steps=16)


def serial(work: list[Job], calls: int) -> float:
    start = time.perf_counter()
    for job in work:
        run(job, calls)
    return time.perf_counter() - start


def threaded(work: list[Job], calls: int) -> float:
    threads = [threading.Thread(target=run, args=(job, calls)) for job in work]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=4, help="calls per model")
    parser.add_argument("--repeats", type=int, default=3, help="measurements")
    parser.add_argument("--size", type=int, default=112, help="image side, pixels")
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.2f}", flush=True)
    work = jobs(args.size)
    serial(work, 1)  # warm-up
    ratios = []
    for repeat in range(args.repeats):
        one_after_the_other = serial(work, args.calls)
        side_by_side = threaded(work, args.calls)
        ratios.append(one_after_the_other / side_by_side)
        print(
            f"repeat {repeat + 1}: serial {one_after_the_other:.2f} s, two threads "
            f"{side_by_side:.2f} s, throughput {ratios[-1]:.2f}x",
            flush=True,
        )
    print(
        "median throughput of two threads over serial: "
        f"{statistics.median(ratios):.2f}x (ideal 2x on 2 idle cores)"
    )
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
