"""Throughput of two models explained in two threads, over the same calls run
one after the other, measured side by side in one process.

Each call runs ``IntegratedLayerGradCam`` on its own model (ResNet-18 and
VGG-11 at 64 x 64 pixels, random weights) with one torch thread, so two
threads can use two cores; with a process-wide lock the ratio would stay at
1x (or below). Usage: ``python benchmarks/threads.py [--calls 6] [--repeats 3]``.
"""

from __future__ import annotations

import argparse
import threading
import time

import torch
import torchvision

from captum_igcam import IntegratedLayerGradCam


def explainers() -> list[tuple[IntegratedLayerGradCam, torch.Tensor]]:
    torch.manual_seed(0)
    resnet = torchvision.models.resnet18(weights=None).eval()
    vgg = torchvision.models.vgg11(weights=None).eval()
    inputs = torch.randn(2, 3, 64, 64)
    return [
        (IntegratedLayerGradCam(resnet, resnet.layer4), inputs),
        (IntegratedLayerGradCam(vgg, vgg.features[18]), inputs.clone()),
    ]


def run(explainer: IntegratedLayerGradCam, inputs: torch.Tensor, calls: int) -> None:
    for _ in range(calls):
        explainer.attribute(inputs, target=1, n_steps=16)


def serial(jobs, calls: int) -> float:
    start = time.perf_counter()
    for explainer, inputs in jobs:
        run(explainer, inputs, calls)
    return time.perf_counter() - start


def threaded(jobs, calls: int) -> float:
    threads = [threading.Thread(target=run, args=(*job, calls)) for job in jobs]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=6, help="calls per model")
    parser.add_argument("--repeats", type=int, default=3, help="measurements")
    args = parser.parse_args()
    torch.set_num_threads(1)
    jobs = explainers()
    serial(jobs, 1)  # warm-up
    ratios = []
    for repeat in range(args.repeats):
        one_after_the_other = serial(jobs, args.calls)
        side_by_side = threaded(jobs, args.calls)
        ratios.append(one_after_the_other / side_by_side)
        print(
            f"repeat {repeat + 1}: serial {one_after_the_other:.2f} s, two threads "
            f"{side_by_side:.2f} s, throughput {ratios[-1]:.2f}x",
            flush=True,
        )
    ratios.sort()
    print(
        f"median throughput of two threads over serial: {ratios[len(ratios) // 2]:.2f}x"
    )


if __name__ == "__main__":
    main()
