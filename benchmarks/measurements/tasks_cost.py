"""Cost of Integrated Grad-CAM on a segmentation model and a detector.

Usage::

    python benchmarks/measurements/tasks_cost.py [--steps 8] [--repeats 2]
        [--chunks 2,8] [--size-scale 1.0] [--json FILE]

For torchvision's ``deeplabv3_mobilenet_v3_large`` (``SegmentationScores``
over a box) and ``fasterrcnn_mobilenet_v3_large_320_fpn`` (``DetectionScore``
of its top detection), both with random weights (offline; cost does not
depend on the weights, except that a random detector keeps every detection,
score threshold 0), one image each, it prints side by side in one process:

- ``forward``: ``n_steps`` no-grad forward passes of the same wrapped model
  over the same path points, in the same chunks;
- ``floor``: the same passes with the backward pass of the part after the
  layer added (the layer's output is made a leaf and the explained score's
  gradient taken to it), the work the method cannot avoid when, as here,
  the layer is early (heavy heads after it), as for classifiers;
- ``igcam``: ``IntegratedLayerGradCam.attribute`` with the same
  ``internal_batch_size``;

the median time of each over ``--repeats`` interleaved runs and the ratios
of ``igcam`` to each (``--json FILE`` also writes them),
and the peak memory (growth of the resident set) of each, measured in a
fresh subprocess per variant, for two internal batch sizes: memory grows
with ``internal_batch_size``, not with ``n_steps``. For the detector it also
prints how many path points match the explained box (the rest score 0,
see docs/tasks.md).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))
import results_file  # noqa: E402

from captum_igcam import IntegratedLayerGradCam
from captum_igcam.targets import DetectionScore, SegmentationScores, box_region

SCRIPT = "tasks_cost.py"


@dataclass(frozen=True)
class Case:
    name: str
    model: str
    layer: str
    size: int


CASES = (
    Case("segmentation", "deeplabv3_mobilenet_v3_large", "backbone.16", 256),
    Case("detection", "fasterrcnn_mobilenet_v3_large_320_fpn", "backbone.body.16", 320),
)


def _build(case: Case, size: int):
    """``(target, layer, inputs, forward_args)`` for one image of ``size`` px."""
    from captum_igcam.app.layers import resolve_layer
    from captum_igcam.app.models import load_model

    torch.manual_seed(0)
    model = load_model(case.model, pretrained=False).model
    inputs = torch.rand(1, 3, size, size)
    if case.name == "segmentation":
        target = SegmentationScores(model)
        side = size // 2
        args = (box_region(torch.tensor([[0, 0, side, side]]), (size, size)),)
    else:
        target = DetectionScore(model)
        with torch.no_grad():
            found = target.detect(inputs)[0]
        args = (found["boxes"][:1], found["labels"][:1])
    return target, resolve_layer(model, case.layer), inputs, args


def _floor(target, layer, inputs, args, n_steps: int, chunk: int, backward: bool):
    """``n_steps`` no-grad passes over the path points, ``chunk`` per pass;
    with ``backward``, each followed by the backward pass of the part after
    ``layer`` (whose output starts the graph)."""
    alphas = torch.linspace(0, 1, n_steps)
    leaves = []

    def start_graph(module, module_args, output):
        torch.set_grad_enabled(True)
        leaves.append(output.detach().requires_grad_())
        return leaves[-1]

    handle = layer.register_forward_hook(start_graph) if backward else None
    try:
        for start in range(0, n_steps, chunk):
            part = alphas[start : start + chunk]
            points = part.reshape(-1, 1, 1, 1) * inputs
            with torch.no_grad():
                scores = target(
                    points, *(a.expand(len(part), *a.shape[1:]) for a in args)
                )
                if backward:
                    picked = scores[:, 1] if scores.dim() > 1 else scores
                    torch.autograd.grad(picked.sum(), leaves.pop())
    finally:
        if handle is not None:
            handle.remove()


def _igcam(target, layer, inputs, args, n_steps: int, chunk: int) -> None:
    IntegratedLayerGradCam(target, layer).attribute(
        inputs,
        target=1 if isinstance(target, SegmentationScores) else None,
        additional_forward_args=args,
        n_steps=n_steps,
        internal_batch_size=chunk,
    )


def _run(case: Case, size: int, variant: str, n_steps: int, chunk: int) -> float:
    target, layer, inputs, args = _build(case, size)
    started = time.perf_counter()
    _call(variant, target, layer, inputs, args, n_steps, chunk)
    return time.perf_counter() - started


def _call(variant: str, target, layer, inputs, args, n_steps: int, chunk: int):
    if variant == "igcam":
        _igcam(target, layer, inputs, args, n_steps, chunk)
    else:
        _floor(target, layer, inputs, args, n_steps, chunk, variant == "floor")


def _peak_memory_mib(case: Case, size: int, variant: str, steps: int, chunk: int):
    """Resident-set growth of one call, in a fresh subprocess."""
    command = [sys.executable, __file__, "--child", case.name, variant]
    command += [str(size), str(steps), str(chunk)]
    output = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(output.stdout.strip().splitlines()[-1])["peak_mib"]


def _child(name: str, variant: str, size: str, steps: str, chunk: str) -> None:
    case = next(case for case in CASES if case.name == name)
    torch.set_num_threads(1)
    target, layer, inputs, args = _build(case, int(size))
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")  # resets the peak (VmHWM) to the current RSS (Linux)
    before = _status_mib("VmRSS")
    _call(variant, target, layer, inputs, args, int(steps), int(chunk))
    print(json.dumps({"peak_mib": round(_status_mib("VmHWM") - before, 1)}))


def _status_mib(field: str) -> float:
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith(field + ":"))
    return int(line.split()[1]) / 1024


def _matched_fraction(case: Case, size: int, n_steps: int) -> tuple[int, int]:
    """How many of Gauss-Legendre's path points match the explained box."""
    import numpy as np

    target, _, inputs, args = _build(case, size)
    nodes, _ = np.polynomial.legendre.leggauss(n_steps)
    with torch.no_grad():
        matched = sum(
            bool(target.match(float(a) * inputs, *args).matched[0])
            for a in (nodes + 1) / 2
        )
    return matched, n_steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--chunks", default="2,8", help="internal batch sizes")
    parser.add_argument("--size-scale", type=float, default=1.0)
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(*args.child)
        return
    if args.json:
        results_file.claim(args.json, SCRIPT)
    rows = []
    torch.set_num_threads(1)
    chunks = [int(c) for c in args.chunks.split(",")]
    print(
        f"torch {torch.__version__}, 1 thread, {os.cpu_count()} cores, "
        f"load {os.getloadavg()[0]:.1f}; n_steps={args.steps}, batch 1, "
        "random weights"
    )
    for case in CASES:
        size = round(case.size * args.size_scale)
        print(f"\n{case.name}: {case.model} at {size}x{size}, layer {case.layer}")
        for chunk in chunks:
            times = {"forward": [], "floor": [], "igcam": []}
            for _ in range(args.repeats):
                for variant in times:
                    times[variant].append(_run(case, size, variant, args.steps, chunk))
            median = {v: statistics.median(t) for v, t in times.items()}
            memory = {
                v: _peak_memory_mib(case, size, v, args.steps, chunk)
                for v in ("floor", "igcam")
            }
            print(
                f"  internal_batch_size={chunk}: igcam {median['igcam']:.2f} s / "
                f"floor {median['floor']:.2f} s = "
                f"{median['igcam'] / median['floor']:.2f} (forward passes alone "
                f"{median['forward']:.2f} s: "
                f"{median['igcam'] / median['forward']:.2f}); peak memory "
                f"{memory['igcam']:.0f} MiB / floor {memory['floor']:.0f} MiB"
            )
            rows.append(
                {
                    "case": case.name,
                    "model": case.model,
                    "layer": case.layer,
                    "size": size,
                    "internal_batch_size": chunk,
                    "seconds": median,
                    "ratio_to_floor": median["igcam"] / median["floor"],
                    "ratio_to_forward": median["igcam"] / median["forward"],
                    "peak_mib": memory,
                }
            )
        if case.name == "detection":
            matched, total = _matched_fraction(case, size, args.steps)
            print(f"  path points matching the explained box: {matched} of {total}")
    if args.json:
        settings = {"n_steps": args.steps, "repeats": args.repeats, "threads": 1}
        load = os.getloadavg()[0]
        results = {"settings": settings, "load_average": load, "results": rows}
        results_file.write(args.json, results, SCRIPT)


if __name__ == "__main__":
    main()
