"""The layer-space path against the input-space path at the application's
defaults, measured side by side in one process.

For each model, the application's ``igcam-layer`` and ``igcam`` methods
(:data:`captum_igcam.app.methods.METHODS`, built with the default
:class:`~captum_igcam.app.settings.MethodSettings`: 50 path points,
Gauss-Legendre, the chunk sizes that the memory budget gives) explain the
same batch of images at the model's default layer; the script prints each
method's time and their ratio. Models: the embedded EfficientNet-Lite0 and
torchvision's ResNet-50 with random weights (the time does not depend on
the weights). One warm-up call per method first (it also measures the chunk
sizes, once per input shape, as a command does).

Usage: ``python benchmarks/measurements/layer_space_speed.py [--images 2]
[--repeats 1] [--threads N] [--json FILE]``. On a loaded machine, one torch
thread (``--threads 1``) keeps small operations from waiting on a
descheduled second thread, which slows both methods unevenly.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))
import results_file  # noqa: E402

from captum_igcam.app.methods import METHODS  # noqa: E402
from captum_igcam.app.models import load_model  # noqa: E402
from captum_igcam.app.settings import MethodSettings  # noqa: E402

SCRIPT = "layer_space_speed.py"
MODELS = {"efficientnet-lite0": {}, "resnet50": {"pretrained": False}}
COMPARED = ("igcam-layer", "igcam")


def measure(name: str, images: int, repeats: int) -> dict[str, object]:
    """Seconds per call of each compared method on ``images`` images."""
    bundle = load_model(name, **MODELS[name])
    layer = bundle.model.get_submodule(bundle.layer_name)
    settings = MethodSettings(reshape_transform=bundle.reshape_transform)
    torch.manual_seed(0)
    inputs = torch.randn(images, 3, bundle.input_size, bundle.input_size)
    target = bundle.model(inputs).argmax(dim=1).tolist()
    maps = {m: METHODS[m].build(bundle.model, layer, settings) for m in COMPARED}
    for method in COMPARED:  # warm-up, and the chunk sizes for this shape
        maps[method](inputs, target)
    seconds: dict[str, list[float]] = {method: [] for method in COMPARED}
    for _ in range(repeats):
        for method in COMPARED:
            start = time.perf_counter()
            maps[method](inputs, target)
            seconds[method].append(time.perf_counter() - start)
    layer_s, input_s = (statistics.median(seconds[m]) for m in COMPARED)
    return {
        "model": name,
        "layer": bundle.layer_name,
        "images": images,
        "seconds": seconds,
        "ratio": input_s / layer_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--threads", type=int, help="torch threads (default: torch's own)"
    )
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.json is not None:
        results_file.claim(args.json, SCRIPT)
    load_before = os.getloadavg()
    rows = []
    for name in MODELS:
        row = measure(name, args.images, args.repeats)
        layer_s, input_s = (statistics.median(row["seconds"][m]) for m in COMPARED)
        print(
            f"{name:20s} igcam-layer {layer_s:7.2f} s  igcam {input_s:7.2f} s  "
            f"ratio {row['ratio']:.1f}x  ({args.images} images)",
            flush=True,
        )
        rows.append(row)
    load_after = os.getloadavg()
    print(f"load average before {load_before[0]:.1f}, after {load_after[0]:.1f}")
    if args.json is not None:
        settings = MethodSettings()
        results_file.write(
            args.json,
            {
                "settings": {
                    "n_steps": settings.n_steps,
                    "method": settings.method,
                    "memory_budget_mb": settings.memory_budget_mb,
                },
                "machine": {
                    "processor": platform.processor() or platform.machine(),
                    "torch_threads": torch.get_num_threads(),
                    "torch": torch.__version__,
                    "load_average": [load_before[0], load_after[0]],
                },
                "results": rows,
            },
            SCRIPT,
        )


if __name__ == "__main__":
    main()
