"""GPU check: correctness, speed against the floor, memory, data-set ratio.

Usage::

    python benchmarks/gpu/gpu_check.py [--json FILE]          # on a CUDA GPU, < 5 min
    python benchmarks/gpu/gpu_check.py --device cpu           # small smoke run

1. **Correctness.** ResNet-18 (random weights) at 64x64, 4 examples, a
   short last chunk: the maps on the device, compared with the same call in
   float64 on the CPU (the class itself is checked against a naive
   reference by the test suite), in float32 with TF32 off (the verdict;
   cuDNN uses TF32 for float32 convolutions by default on Ampere and later,
   which alone gives errors around 1e-3), float32 with TF32 on (reported
   beside it, no verdict), float16/bfloat16 autocast, channels_last, and
   ``torch.compile`` (after the same model was explained uncompiled).
2. **Speed against the floor.** ResNet-50 ``layer4`` at 224x224, batch 16,
   ``n_steps=50``, ``internal_batch_size=400``, with PyTorch's default TF32
   settings: the floor (the same path points through the model without
   autograd, in the same chunks), the input-space path and
   ``LayerSpaceIntegratedGradCam``,
   contiguous and channels_last, float32 and bfloat16 autocast.
3. **Memory against Captum's LayerIntegratedGradients** at the same
   ``internal_batch_size`` (peak CUDA memory allocated), ResNet-50 float32.
4. **torch.compile against eager**: ResNet-18 channels_last, bfloat16
   autocast, batch 16 (compilation is not timed).
5. **explain-dataset over in-memory**
   (``benchmarks/measurements/dataset_throughput.py``): embedded
   EfficientNet-Lite0 on 1024 JPEGs, both paths.

``--device cpu`` runs every part with small sizes on the CPU (no TF32 and
no peak memory there), to show that the script works before a GPU is lent.
The exit status is 1 if a correctness verdict fails.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

# benchmarks/lib (the results files) and the scripts this one imports.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "measurements"))

import dataset_throughput
import results_file
import torch
import torchvision
from captum.attr import LayerIntegratedGradients
from torch import nn

from captum_igcam import IntegratedLayerGradCam, LayerSpaceIntegratedGradCam

#: This script's name in the results files it writes.
SCRIPT = Path(__file__).name

#: Largest relative error (max abs difference over max abs value) accepted
#: against the float64 reference; None: reported only.
TOLERANCES = {
    "float32": 1e-4,
    "float32_tf32": None,
    "float16": 5e-2,
    "bfloat16": 1e-1,
    "channels_last_float32": 1e-4,
    "channels_last_bfloat16": 1e-1,
    "compiled_float32": 1e-4,
    "compiled_bfloat16": 1e-1,
}


@dataclass(frozen=True)
class Sizes:
    """How big each part is."""

    speed_architecture: str = "resnet50"
    speed_image: int = 224
    speed_batch: int = 16
    speed_steps: int = 50
    speed_internal_batch: int = 400
    compile_batch: int = 16
    compile_image: int = 224
    repeats: int = 3
    dataset: dataset_throughput.Settings = dataset_throughput.GPU_SETTINGS


CPU_SIZES = Sizes(
    speed_architecture="resnet18",
    speed_image=64,
    speed_batch=2,
    speed_steps=4,
    speed_internal_batch=4,
    compile_batch=2,
    compile_image=64,
    repeats=1,
    dataset=dataset_throughput.Settings(
        images=4, steps=2, images_per_batch=2, internal_batch_size=4, repeats=1
    ),
)


@contextlib.contextmanager
def tf32(enabled: bool) -> Iterator[None]:
    """Allow or forbid TF32 in CUDA matmuls and cuDNN convolutions."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = enabled
    torch.backends.cudnn.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    if precision == "float32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=getattr(torch, precision))


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    actual, expected = actual.double().cpu(), expected.double().cpu()
    return float((actual - expected).abs().max() / expected.abs().max())


def _section(title: str) -> float:
    print(f"== {title}", flush=True)
    return time.perf_counter()


def _done(started: float) -> None:
    print(f"   ({time.perf_counter() - started:.1f} s)", flush=True)


def check_correctness(device: torch.device) -> dict[str, float]:
    """Relative error of each configuration against float64 on the CPU."""
    started = _section("correctness against float64 on the CPU")
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).eval()
    inputs = torch.randn(4, 3, 64, 64)
    # 4 examples x 16 steps in chunks of 24 points: 24, 24 and a short 16.
    kwargs = dict(target=[1, 5, 9, 13], n_steps=16, internal_batch_size=24)
    reference_model = model.double()
    expected = IntegratedLayerGradCam(
        reference_model, reference_model.layer4
    ).attribute(inputs.double(), **kwargs)
    model = model.float().to(device)
    precisions = ["float16", "bfloat16"] if device.type == "cuda" else ["bfloat16"]

    def error_of(
        explained: nn.Module, layer: nn.Module, precision: str, memory_format
    ) -> float:
        on_device = inputs.to(device).to(memory_format=memory_format)
        with autocast(device, precision):
            maps = IntegratedLayerGradCam(explained, layer).attribute(
                on_device, **kwargs
            )
        return relative_error(maps, expected)

    contiguous = torch.contiguous_format
    errors: dict[str, float] = {}
    with tf32(False):
        errors["float32"] = error_of(model, model.layer4, "float32", contiguous)
    if device.type == "cuda":
        with tf32(True):
            errors["float32_tf32"] = error_of(
                model, model.layer4, "float32", contiguous
            )
    with tf32(False):
        for precision in precisions:
            errors[precision] = error_of(model, model.layer4, precision, contiguous)
        cl_model = model.to(memory_format=torch.channels_last)
        for precision in ("float32", "bfloat16"):
            errors[f"channels_last_{precision}"] = error_of(
                cl_model, cl_model.layer4, precision, torch.channels_last
            )
        # The model was explained uncompiled above, in this process.
        compiled = torch.compile(model)
        for precision in ("float32", "bfloat16"):
            errors[f"compiled_{precision}"] = error_of(
                compiled, model.layer4, precision, torch.channels_last
            )
    for name, error in errors.items():
        tolerance = TOLERANCES[name]
        verdict = (
            "reported only"
            if tolerance is None
            else f"(tolerance {tolerance:.0e}) "
            + ("ok" if error <= tolerance else "FAILED")
        )
        print(f"correctness {name:23s} relative error {error:.2e} {verdict}")
    _done(started)
    return errors


def _seconds(run: Callable[[], object], device: torch.device, repeats: int) -> float:
    """Median seconds of ``repeats`` runs after one untimed run."""
    run()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        run()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def _floor(model: nn.Module, inputs: torch.Tensor, sizes: Sizes) -> Callable[[], None]:
    """The path points of ``igcam``'s chunks through the model, no autograd."""
    import numpy as np

    nodes, _ = np.polynomial.legendre.leggauss(sizes.speed_steps)
    alphas = ((nodes + 1) / 2).tolist()
    per_chunk = max(1, sizes.speed_internal_batch // len(inputs))
    chunks = [
        torch.cat([alpha * inputs for alpha in alphas[start : start + per_chunk]])
        for start in range(0, sizes.speed_steps, per_chunk)
    ]

    def floor() -> None:
        with torch.no_grad():
            for chunk in chunks:
                model(chunk)

    return floor


def _model_and_inputs(
    architecture: str, batch: int, image: int, device: torch.device, memory_format
) -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    model = getattr(torchvision.models, architecture)(weights=None).eval()
    model = model.to(device, memory_format=memory_format)
    inputs = torch.randn(batch, 3, image, image, device=device)
    return model, inputs.to(memory_format=memory_format)


def _attribute_kwargs(sizes: Sizes) -> dict[str, int]:
    return dict(
        target=7,
        n_steps=sizes.speed_steps,
        internal_batch_size=sizes.speed_internal_batch,
    )


def measure_speed(device: torch.device, sizes: Sizes) -> dict[str, dict[str, float]]:
    """igcam/floor, layer-path speed-up and images/s per configuration."""
    started = _section(
        f"speed: {sizes.speed_architecture} layer4, batch {sizes.speed_batch}, "
        f"n_steps {sizes.speed_steps}, internal_batch_size "
        f"{sizes.speed_internal_batch} (default TF32 settings)"
    )
    results = {}
    for format_name, memory_format in (
        ("contiguous", torch.contiguous_format),
        ("channels_last", torch.channels_last),
    ):
        model, inputs = _model_and_inputs(
            sizes.speed_architecture,
            sizes.speed_batch,
            sizes.speed_image,
            device,
            memory_format,
        )
        runs = {
            "floor": _floor(model, inputs, sizes),
            **{
                name: functools.partial(
                    explainer_class(model, model.layer4).attribute,
                    inputs,
                    **_attribute_kwargs(sizes),
                )
                for name, explainer_class in (
                    ("igcam", IntegratedLayerGradCam),
                    ("igcam_layer", LayerSpaceIntegratedGradCam),
                )
            },
        }
        for precision in ("float32", "bfloat16"):
            with autocast(device, precision):
                seconds = {
                    name: _seconds(run, device, sizes.repeats)
                    for name, run in runs.items()
                }
            result = {
                "seconds": seconds,
                "igcam_over_floor": seconds["igcam"] / seconds["floor"],
                "layer_path_speedup": seconds["igcam"] / seconds["igcam_layer"],
                "igcam_images_per_s": sizes.speed_batch / seconds["igcam"],
            }
            results[f"{format_name}_{precision}"] = result
            print(
                f"speed {format_name:13s} {precision:8s} floor "
                f"{seconds['floor']:.4f} s, igcam {seconds['igcam']:.4f} s "
                f"(igcam/floor {result['igcam_over_floor']:.3f}), "
                f"layer path {result['layer_path_speedup']:.1f}x faster, "
                f"{result['igcam_images_per_s']:.1f} images/s"
            )
    _done(started)
    return results


def measure_memory(device: torch.device, sizes: Sizes) -> dict[str, float]:
    """Peak memory of igcam and LayerIntegratedGradients (CUDA only)."""
    started = _section(
        "memory against LayerIntegratedGradients, same internal_batch_size"
    )
    model, inputs = _model_and_inputs(
        sizes.speed_architecture,
        sizes.speed_batch,
        sizes.speed_image,
        device,
        torch.contiguous_format,
    )
    kwargs = _attribute_kwargs(sizes)
    methods = {
        "igcam": IntegratedLayerGradCam(model, model.layer4),
        "layer_ig": LayerIntegratedGradients(model, model.layer4),
    }
    peaks = {}
    for name, method in methods.items():
        if device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
        method.attribute(inputs, **kwargs)
        if device.type == "cuda":
            peaks[name] = (torch.cuda.max_memory_allocated() - base) / 2**30
    if peaks:
        ratio = peaks["layer_ig"] / peaks["igcam"]
        peaks["layer_ig_over_igcam"] = ratio
        print(
            f"memory igcam {peaks['igcam']:.2f} GiB, LayerIntegratedGradients "
            f"{peaks['layer_ig']:.2f} GiB: {ratio:.1f}x less"
        )
    else:
        print("memory: peak CUDA memory is not measured on the CPU (both ran)")
    _done(started)
    return peaks


def measure_compiled(device: torch.device, sizes: Sizes) -> dict[str, float]:
    """torch.compile against eager: ResNet-18 channels_last bf16 autocast."""
    started = _section("torch.compile against eager (compilation not timed)")
    model, inputs = _model_and_inputs(
        "resnet18",
        sizes.compile_batch,
        sizes.compile_image,
        device,
        torch.channels_last,
    )
    kwargs = _attribute_kwargs(sizes)
    eager = IntegratedLayerGradCam(model, model.layer4)
    compiled = IntegratedLayerGradCam(torch.compile(model), model.layer4)
    with autocast(device, "bfloat16"):
        seconds = {
            "eager": _seconds(lambda: eager.attribute(inputs, **kwargs), device, 3),
            "compiled": _seconds(
                lambda: compiled.attribute(inputs, **kwargs), device, 3
            ),
        }
    speedup = seconds["eager"] / seconds["compiled"]
    print(
        f"compiled {seconds['compiled']:.4f} s, eager {seconds['eager']:.4f} s: "
        f"compiled is {speedup:.2f}x as fast"
    )
    _done(started)
    return {**seconds, "compiled_speedup": speedup}


def measure_dataset_ratio(device: torch.device, sizes: Sizes) -> dict:
    """explain-dataset images/s over in-memory images/s, both paths."""
    started = _section("explain-dataset over in-memory")
    settings = dataclasses.replace(sizes.dataset, device=device.type)
    results = dataset_throughput.measure(settings)
    dataset_throughput.print_results(settings, results)
    _done(started)
    return results


PARTS = ("relative_error", "speed", "memory_gib", "compiled", "dataset_ratio")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    parser.add_argument("--json", metavar="FILE")
    parser.add_argument(
        "--parts",
        default=",".join(PARTS),
        help=f"comma-separated parts to run (default: all of {', '.join(PARTS)})",
    )
    args = parser.parse_args()
    out = args.json and results_file.claim(args.json, SCRIPT)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("gpu_check: no CUDA device is visible (--device cpu?)")
    sizes = Sizes() if device.type == "cuda" else CPU_SIZES
    name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU (smoke)"
    print(f"device: {name}, torch {torch.__version__}", flush=True)
    started = time.perf_counter()
    report: dict = {"device": name, "torch": torch.__version__}
    parts = {
        "relative_error": lambda: check_correctness(device),
        "speed": lambda: measure_speed(device, sizes),
        "memory_gib": lambda: measure_memory(device, sizes),
        "compiled": lambda: measure_compiled(device, sizes),
        "dataset_ratio": lambda: measure_dataset_ratio(device, sizes),
    }
    for part in args.parts.split(","):
        report[part] = parts[part]()
        report["seconds"] = time.perf_counter() - started
        if out:  # after every part, so that a timeout keeps what was done
            results_file.write(out, report, SCRIPT)
    print(f"gpu_check: {report['seconds']:.0f} s in all")
    failed = [
        name
        for name, error in report.get("relative_error", {}).items()
        if TOLERANCES[name] is not None and error > TOLERANCES[name]
    ]
    if failed:
        print(f"gpu_check: correctness FAILED for {failed}", file=sys.stderr)
        raise SystemExit(1)


if __name__ == "__main__":
    main()
