"""Speed and peak memory of IntegratedLayerGradCam against its floor and peers.

Usage::

    python benchmarks/measurements/speed.py [--quick] [--json FILE]

In one process, on the same inputs, the variants below are run interleaved
and repeated (after a warm-up on a tiny case), and the median time of each
is reported:

- ``floor``: ``n_steps`` no-grad forward passes over the same scaled inputs,
  in the same chunks as ``igcam``;
- ``igcam``: ``IntegratedLayerGradCam.attribute`` (paper's input-space path);
- ``igcam_layer``: ``LayerSpaceIntegratedGradCam`` (layer-space path, not the
  paper's method);
- ``layer_ig``: Captum's ``LayerIntegratedGradients`` on the same layer with
  the same ``n_steps`` and ``internal_batch_size``;
- ``naive``: all path points of one example in one batch with full autograd,
  as the authors' released code runs (one example at a time; timed at
  batch 1 only, since at batch 8 it is 8 times that);
- ``gradcam``: one ``LayerGradCam`` call, for scale.

The configurations users pick to make that floor faster are cases of their
own, each against its own floor (the same model, in the same
configuration, without autograd): model and inputs in
``torch.channels_last`` (float32 and bfloat16 autocast), and a
``torch.compile``-d model, where ``igcam_eager`` (the same call on the
uncompiled model) gives the compiled speed-up. Compiled runs are warmed up
on the case itself, so compilation is not timed.

Peak memory (resident set growth) of each variant is measured in a fresh
subprocess of its own (not for compiled cases, whose subprocess would
compile again). Models have random weights: speed does not depend on them.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

# benchmarks/lib: the results files every script writes.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))

import results_file
import torch
import torchvision
from captum.attr import LayerGradCam, LayerIntegratedGradients
from torch import nn

from captum_igcam import IntegratedLayerGradCam, LayerSpaceIntegratedGradCam

#: This script's name in the results files it writes.
SCRIPT = Path(__file__).name


@dataclass(frozen=True)
class Case:
    architecture: str
    layer_name: str
    batch_size: int
    internal_batch_size: int
    repeats: int = 3
    n_steps: int = 50
    image_size: int = 224
    memory_format: str = "contiguous"  # or "channels_last"
    precision: str = "float32"  # or "bfloat16" (CPU autocast)
    compiled: bool = False  # torch.compile(model), default options

    @property
    def name(self) -> str:
        configuration = "".join(
            f"/{flag}"
            for flag, on in (
                ("channels_last", self.memory_format == "channels_last"),
                ("bf16", self.precision == "bfloat16"),
                ("compiled", self.compiled),
            )
            if on
        )
        return f"{self.architecture}.{self.layer_name}/batch{self.batch_size}" + (
            configuration
        )


RESNET50_BATCH1 = Case(
    "resnet50", "layer4", batch_size=1, internal_batch_size=25, repeats=3
)
# Repeats shrink with the cost of a case so that the full run fits in about
# an hour on 2 CPU cores (a VGG-16 batch of 8 is 400 forward passes of
# 15 GFLOPs per variant).
FULL_CASES = (
    RESNET50_BATCH1,
    Case("resnet50", "layer4", batch_size=8, internal_batch_size=40, repeats=2),
    Case("vgg16", "features.29", batch_size=1, internal_batch_size=25, repeats=2),
    Case("vgg16", "features.29", batch_size=8, internal_batch_size=40, repeats=1),
    dataclasses.replace(RESNET50_BATCH1, repeats=2, precision="bfloat16"),
    dataclasses.replace(RESNET50_BATCH1, memory_format="channels_last"),
    dataclasses.replace(
        RESNET50_BATCH1,
        repeats=2,
        memory_format="channels_last",
        precision="bfloat16",
    ),
    Case("resnet18", "layer4", batch_size=1, internal_batch_size=25, compiled=True),
)
QUICK_CASES = (
    dataclasses.replace(RESNET50_BATCH1, repeats=2),
    Case(
        "resnet18",
        "layer4",
        batch_size=1,
        internal_batch_size=25,
        repeats=2,
        memory_format="channels_last",
    ),
)
VARIANTS = (
    "floor",
    "igcam",
    "igcam_layer",
    "layer_ig",
    "naive",
    "gradcam",
    "igcam_eager",
)
# The authors' code explains one example at a time, so ``naive`` at batch 8
# is 8 times its batch-1 time; it is run at batch 1 only.
BATCH_ONE_ONLY = ("naive",)


def variants_of(case: Case) -> tuple[str, ...]:
    if case.compiled:  # igcam first: its hooks exist when the model is compiled
        return ("igcam", "igcam_eager", "floor")
    if case.memory_format != "contiguous" or case.precision != "float32":
        return ("floor", "igcam", "igcam_layer")
    return tuple(
        name
        for name in VARIANTS
        if name != "igcam_eager"
        and (case.batch_size == 1 or name not in BATCH_ONE_ONLY)
    )


TARGET = 7


MEMORY_FORMATS = {
    "contiguous": torch.contiguous_format,
    "channels_last": torch.channels_last,
}


def _setup(case: Case) -> tuple[nn.Module, nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    memory_format = MEMORY_FORMATS[case.memory_format]
    model = getattr(torchvision.models, case.architecture)(weights=None).eval()
    model = model.to(memory_format=memory_format)
    inputs = torch.randn(case.batch_size, 3, case.image_size, case.image_size)
    inputs = inputs.to(memory_format=memory_format)
    return model, model.get_submodule(case.layer_name), inputs


def _scaled_chunks(case: Case, inputs: torch.Tensor) -> list[torch.Tensor]:
    """The path points of ``igcam``'s chunks (Gauss-Legendre, zero baseline)."""
    import numpy as np

    nodes, _ = np.polynomial.legendre.leggauss(case.n_steps)
    alphas = ((nodes + 1) / 2).tolist()
    steps_per_chunk = max(1, case.internal_batch_size // case.batch_size)
    return [
        torch.cat([alpha * inputs for alpha in alphas[start : start + steps_per_chunk]])
        for start in range(0, case.n_steps, steps_per_chunk)
    ]


def _naive(model: nn.Module, layer: nn.Module, inputs: torch.Tensor, n_steps: int):
    """All path points of one example in one batch, full autograd graph."""
    maps = []
    for example in inputs:
        alphas = torch.linspace(1 / n_steps, 1, n_steps).view(-1, 1, 1, 1)
        scaled = (alphas * example).requires_grad_()
        stored: list[torch.Tensor] = []
        handle = layer.register_forward_hook(
            lambda module, args, out, stored=stored: stored.append(out)
        )
        try:
            scores = model(scaled)[:, TARGET]
        finally:
            handle.remove()
        (grads,) = torch.autograd.grad(scores.sum(), stored[0])
        weights = grads.mean(dim=(2, 3), keepdim=True)
        cams = torch.relu((weights * stored[0]).sum(dim=1, keepdim=True))
        maps.append(cams.mean(dim=0).detach())
    return torch.stack(maps)


def _variant(case: Case, name: str) -> Callable[[], object]:
    """``name``'s run on ``case``, in the case's precision."""
    run = _plain_variant(case, name)
    if case.precision == "float32":
        return run
    dtype = getattr(torch, case.precision)

    def in_autocast() -> object:
        with torch.autocast("cpu", dtype=dtype):
            return run()

    return in_autocast


def _plain_variant(case: Case, name: str) -> Callable[[], object]:
    model, layer, inputs = _setup(case)
    eager = model
    if case.compiled:
        model = torch.compile(model)
    common = dict(target=TARGET, n_steps=case.n_steps)
    if name == "floor":
        chunks = _scaled_chunks(case, inputs)

        def floor() -> None:
            with torch.no_grad():
                for chunk in chunks:
                    model(chunk)

        return floor
    if name in ("igcam", "igcam_layer", "igcam_eager"):
        explainer_class = (
            LayerSpaceIntegratedGradCam
            if name == "igcam_layer"
            else IntegratedLayerGradCam
        )
        explainer = explainer_class(eager if name == "igcam_eager" else model, layer)
        return lambda: explainer.attribute(
            inputs, internal_batch_size=case.internal_batch_size, **common
        )
    if name == "layer_ig":
        layer_ig = LayerIntegratedGradients(model, layer)
        return lambda: layer_ig.attribute(
            inputs, internal_batch_size=case.internal_batch_size, **common
        )
    if name == "naive":
        return lambda: _naive(model, layer, inputs, case.n_steps)
    if name == "gradcam":
        grad_cam = LayerGradCam(model, layer)
        return lambda: grad_cam.attribute(inputs, target=TARGET)
    raise ValueError(f"variant: expected one of {VARIANTS}, got {name!r}")


def _time_case(case: Case) -> dict[str, float]:
    names = variants_of(case)
    runs = {name: _variant(case, name) for name in names}
    if case.compiled:  # compile every graph the timed runs use
        for run in runs.values():
            run()
    else:  # first-call costs (kernels, thread pools) on a tiny case
        warm_up = dataclasses.replace(
            case, batch_size=1, n_steps=2, internal_batch_size=2
        )
        for name in names:
            _variant(warm_up, name)()
    times: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(case.repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def _status_mb(field: str) -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


def _measure_memory_here(case: Case, variant: str) -> float:
    """Peak resident-set growth of one run of ``variant``, in MiB (Linux)."""
    run = _variant(case, variant)
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")  # resets the peak (VmHWM) to the current RSS
    before = _status_mb("VmRSS")
    run()
    return _status_mb("VmHWM") - before


def measure_memory(case: Case, variant: str) -> float:
    command = [
        sys.executable,
        __file__,
        "--memory-of",
        variant,
        "--case",
        json.dumps(case.__dict__),
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return float(result.stdout.strip().splitlines()[-1])


#: Reported ratios: name -> (numerator, denominator), each a time or a
#: memory ("mem:" prefix) of a variant; a ratio is left out when its case
#: lacks one of the variants.
RATIOS = {
    "igcam_over_floor": ("igcam", "floor"),
    "igcam_over_layer_ig": ("igcam", "layer_ig"),
    "igcam_over_naive": ("igcam", "naive"),
    "layer_path_speedup": ("igcam", "igcam_layer"),
    "compiled_speedup": ("igcam_eager", "igcam"),
    "peak_mem_igcam_over_floor": ("mem:igcam", "mem:floor"),
    "peak_mem_igcam_over_layer_ig": ("mem:igcam", "mem:layer_ig"),
}


def run_case(case: Case) -> dict[str, object]:
    times = _time_case(case)
    memory = (
        {}
        if case.compiled
        else {name: measure_memory(case, name) for name in variants_of(case)}
    )
    measured = {**times, **{f"mem:{name}": mb for name, mb in memory.items()}}
    ratios = {
        ratio: measured[top] / measured[bottom]
        for ratio, (top, bottom) in RATIOS.items()
        if top in measured and bottom in measured
    }
    return {
        "repeats": case.repeats,
        "seconds": times,
        "peak_mem_mb": memory,
        **ratios,
    }


def _print_table(results: dict[str, dict[str, object]]) -> None:
    shown = ("igcam_over_floor", "igcam_over_layer_ig", "peak_mem_igcam_over_floor")
    header = "| case | " + " | ".join(f"{v} s" for v in VARIANTS)
    header += " | igcam/floor | igcam/layer_ig | mem igcam/floor | layer speedup "
    header += "| compiled speedup |"
    print(header)
    print("|" + "---|" * (len(VARIANTS) + 6))
    for name, result in results.items():
        seconds = result["seconds"]
        cells = [f"{seconds[v]:.2f}" if v in seconds else "-" for v in VARIANTS]
        cells += [f"{result[r]:.3f}" if r in result else "-" for r in shown]
        cells += [
            f"{result[r]:.2f}x" if r in result else "-"
            for r in ("layer_path_speedup", "compiled_speedup")
        ]
        print(f"| {name} | " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="two batch-1 cases, 2 repeats"
    )
    parser.add_argument("--json", metavar="FILE", help="write the results as JSON")
    parser.add_argument(
        "--cases", help="comma-separated case names to run (default: all)"
    )
    parser.add_argument("--memory-of", help=argparse.SUPPRESS)
    parser.add_argument("--case", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_of:
        print(_measure_memory_here(Case(**json.loads(args.case)), args.memory_of))
        return
    out = args.json and results_file.claim(args.json, SCRIPT)
    cases = QUICK_CASES if args.quick else FULL_CASES
    if args.cases:
        cases = tuple(case for case in cases if case.name in args.cases.split(","))
    results: dict[str, dict[str, object]] = {}
    for case in cases:
        print(f"running {case.name} ...", file=sys.stderr, flush=True)
        results[case.name] = run_case(case)
        if out:  # after every case, so that a long run keeps what it did
            _write_json(out, results)
    _print_table(results)


def _write_json(path: Path, results: dict[str, dict[str, object]]) -> None:
    report = {
        "machine": {
            "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(),
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
        },
        "cases": results,
    }
    results_file.write(path, report, SCRIPT)


if __name__ == "__main__":
    main()
