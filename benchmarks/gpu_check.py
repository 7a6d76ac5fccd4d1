"""GPU check: correctness against a float64 CPU reference, then throughput.

Usage::

    python benchmarks/gpu_check.py [--json FILE]

1. ResNet-18 (random weights) at 64x64: the CUDA maps in float32, and in
   float16/bfloat16 autocast, are compared with the same call in float64 on
   the CPU (the class itself is checked against a naive reference by the
   test suite).
2. ResNet-50 ``layer4`` at 224x224, batch 16, ``n_steps=50``: images per
   second in float32 and in bfloat16 autocast, for the paper's input-space
   path and for ``path="layer"``, beside Grad-CAM.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
import torchvision

from captum_igcam import IntegratedLayerGradCam

TOLERANCES = {"float32": 1e-4, "float16": 5e-2, "bfloat16": 1e-1}


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    actual, expected = actual.double().cpu(), expected.double().cpu()
    return float((actual - expected).abs().max() / expected.abs().max())


def check_correctness() -> dict[str, float]:
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).eval()
    inputs = torch.randn(4, 3, 64, 64)
    targets = [1, 5, 9, 13]
    kwargs = dict(target=targets, n_steps=16, internal_batch_size=32)
    reference_model = model.double()
    reference = IntegratedLayerGradCam(reference_model, reference_model.layer4)
    expected = reference.attribute(inputs.double(), **kwargs)
    model = model.float().cuda()
    igcam = IntegratedLayerGradCam(model, model.layer4)
    errors = {
        "float32": relative_error(igcam.attribute(inputs.cuda(), **kwargs), expected)
    }
    for name in ("float16", "bfloat16"):
        with torch.autocast("cuda", dtype=getattr(torch, name)):
            errors[name] = relative_error(
                igcam.attribute(inputs.cuda(), **kwargs), expected
            )
    for name, error in errors.items():
        status = "ok" if error <= TOLERANCES[name] else "FAILED"
        print(
            f"correctness {name:9s} relative error {error:.2e} "
            f"(tolerance {TOLERANCES[name]:.0e}) {status}"
        )
    return errors


def images_per_second(run, batch_size: int, repeats: int = 3) -> float:
    run()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        run()
    torch.cuda.synchronize()
    return batch_size * repeats / (time.perf_counter() - start)


def measure_throughput(batch_size: int = 16, n_steps: int = 50) -> dict[str, float]:
    from captum.attr import LayerGradCam

    model = torchvision.models.resnet50(weights=None).eval().cuda()
    inputs = torch.randn(batch_size, 3, 224, 224, device="cuda")
    igcam = IntegratedLayerGradCam(model, model.layer4)
    grad_cam = LayerGradCam(model, model.layer4)
    kwargs = dict(target=7, n_steps=n_steps, internal_batch_size=batch_size * 25)
    runs = {
        "igcam": lambda: igcam.attribute(inputs, **kwargs),
        "igcam_layer_path": lambda: igcam.attribute(inputs, path="layer", **kwargs),
        "gradcam": lambda: grad_cam.attribute(inputs, target=7),
    }
    results = {}
    for precision in ("float32", "bfloat16"):
        for name, run in runs.items():
            with torch.autocast(
                "cuda", dtype=torch.bfloat16, enabled=precision == "bfloat16"
            ):
                rate = images_per_second(run, batch_size)
            results[f"{name}_{precision}"] = rate
            print(f"throughput {name:17s} {precision:9s} {rate:8.1f} images/s")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("gpu_check: no CUDA device is visible")
    device = torch.cuda.get_device_name()
    print(f"device: {device}, torch {torch.__version__}")
    report = {
        "device": device,
        "torch": torch.__version__,
        "relative_error": check_correctness(),
        "images_per_second": measure_throughput(),
    }
    failed = [
        name
        for name, error in report["relative_error"].items()
        if error > TOLERANCES[name]
    ]
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(report, handle, indent=2)
    if failed:
        raise SystemExit(f"gpu_check: correctness failed for {failed}")


if __name__ == "__main__":
    main()
