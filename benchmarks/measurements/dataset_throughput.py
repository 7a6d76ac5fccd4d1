"""Does ``explain-dataset`` keep the accelerator busy? Its rate over in-memory.

Usage::

    python benchmarks/measurements/dataset_throughput.py [--device cpu|cuda]
        [--json FILE]

In one process, with the same model, layer, path, ``n_steps``, images per
batch and ``internal_batch_size``, two ways of explaining the same JPEG
files are timed, interleaved and repeated:

- ``in_memory``: the images already decoded, preprocessed and on the device;
  per batch one no-grad forward pass for the top-1 class and the registry's
  maps for it (``igcam`` or ``igcam-layer``, built from the same
  ``MethodSettings``: what the data-set job computes, without any of its
  input or output);
- ``explain_dataset``: :func:`captum_igcam.dataset_job.explainer.explain_dataset`
  on the folder, from the files to the written shards (its loop's wall time,
  so model loading and the weights' digest are excluded).

It prints images/s of both and their ratio for each integration path (1.0:
the job adds nothing to the model's own time). On a CPU the loader's
workers share the cores with the model, so the ratio there also counts
decoding and resizing, which compete with the explaining for the CPU.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# benchmarks/lib: the results files every script writes.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))

import numpy as np
import results_file
import torch
from PIL import Image

from captum_igcam.app import models
from captum_igcam.app.baselines import InputAndBaseline
from captum_igcam.app.images import bundled_images, load_image
from captum_igcam.app.methods import METHODS, MapFunction
from captum_igcam.app.settings import MethodSettings
from captum_igcam.cli.explain_dataset import METHOD_BY_PATH
from captum_igcam.dataset_job.explainer import JobOptions, explain_dataset, find_images

#: This script's name in the results files it writes.
SCRIPT = Path(__file__).name


@dataclasses.dataclass(frozen=True)
class Settings:
    """What both ways share."""

    device: str = "cpu"
    model: str | None = None  # None: the embedded EfficientNet-Lite0
    images: int = 24
    steps: int = 16
    images_per_batch: int = 4
    internal_batch_size: int = 64
    workers: int = 1
    repeats: int = 2
    paths: tuple[str, ...] = ("input", "layer")


#: The GPU case: 1024 JPEGs, batches of 64, 8 workers, 1600 points.
GPU_SETTINGS = Settings(
    device="cuda",
    images=1024,
    steps=50,
    images_per_batch=64,
    internal_batch_size=1600,
    workers=8,
    repeats=2,
)


def write_jpegs(folder: Path, count: int, seed: int = 0) -> None:
    """``count`` 400x300 JPEG crops of scikit-image's photos in ``folder``."""
    rng = np.random.default_rng(seed)
    photos = [p for p in bundled_images().values() if p.ndim == 3]
    for index in range(count):
        photo = photos[index % len(photos)]
        top = rng.integers(0, max(1, photo.shape[0] - 150))
        left = rng.integers(0, max(1, photo.shape[1] - 200))
        crop = Image.fromarray(photo[top : top + 150, left : left + 200])
        crop.resize((400, 300)).save(folder / f"{index:05d}.jpg", quality=90)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def method_settings(settings: Settings) -> MethodSettings:
    """The attribution settings both ways use (an all-zero baseline input)."""
    return MethodSettings(
        device=settings.device,
        n_steps=settings.steps,
        baseline="mean",
        internal_batch_size=settings.internal_batch_size,
    )


def in_memory_rate(
    model: torch.nn.Module,
    maps: MapFunction,
    inputs: torch.Tensor,
    baselines: torch.Tensor,
    settings: Settings,
) -> float:
    """Images/s of prediction + the registry's maps on batches on the device."""
    _synchronize(inputs.device)
    started = time.perf_counter()
    for start in range(0, len(inputs), settings.images_per_batch):
        batch = inputs[start : start + settings.images_per_batch]
        with torch.no_grad():
            predicted = model(batch).argmax(dim=1)
        maps(batch, predicted, baselines[start : start + settings.images_per_batch])
    _synchronize(inputs.device)
    return len(inputs) / (time.perf_counter() - started)


def dataset_rate(
    bundle: models.ModelBundle, source: Path, out: Path, path: str, settings: Settings
) -> float:
    """Images/s of ``explain_dataset``'s loop into a fresh folder ``out``."""
    summary = explain_dataset(
        bundle,
        source,
        out,
        method_settings(settings),
        method=METHOD_BY_PATH[path],
        options=JobOptions(
            images_per_batch=settings.images_per_batch,
            workers=settings.workers,
            progress=False,
        ),
    )
    assert summary.explained == settings.images, summary
    return summary.images_per_second


def measure(settings: Settings) -> dict[str, dict[str, Any]]:
    """Median images/s of both ways, their ratio and every run, per path."""
    device = torch.device(settings.device)
    bundle = models.load_model(
        settings.model, str(device), pretrained=settings.model is None
    )
    attribution = method_settings(settings).for_model(bundle)
    maps = {
        path: METHODS[METHOD_BY_PATH[path]].build(
            bundle.model, bundle.layer(), attribution
        )
        for path in settings.paths
    }
    transform = InputAndBaseline.for_model(bundle, attribution.baseline)
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        source = Path(scratch) / "images"
        source.mkdir()
        write_jpegs(source, settings.images)
        pairs = [transform(load_image(source / key)) for key in find_images(source)]
        inputs = torch.stack([p[0] for p in pairs]).to(device)
        baselines = torch.stack([p[1] for p in pairs]).to(device)
        rates: dict[str, dict[str, list[float]]] = {
            path: {"in_memory": [], "explain_dataset": []} for path in settings.paths
        }
        model = bundle.model
        for path in settings.paths:  # warm-up: kernels, autotuning, thread pools
            in_memory_rate(model, maps[path], inputs[:2], baselines[:2], settings)
        for repeat in range(settings.repeats):
            for path in settings.paths:
                print(f"{path} path, repeat {repeat + 1} ...", file=sys.stderr)
                rates[path]["in_memory"].append(
                    in_memory_rate(model, maps[path], inputs, baselines, settings)
                )
                out = Path(scratch) / f"maps-{path}-{repeat}"
                rates[path]["explain_dataset"].append(
                    dataset_rate(bundle, source, out, path, settings)
                )
        for path, measured in rates.items():
            in_memory = statistics.median(measured["in_memory"])
            from_files = statistics.median(measured["explain_dataset"])
            results[path] = {
                "in_memory_images_per_s": in_memory,
                "explain_dataset_images_per_s": from_files,
                "ratio": from_files / in_memory,
                "runs": measured,
            }
    return results


def print_results(settings: Settings, results: dict[str, dict[str, Any]]) -> None:
    print(
        f"explain-dataset over in-memory ({settings.device}, "
        f"{settings.model or 'efficientnet-lite0'}, {settings.images} JPEGs, "
        f"steps {settings.steps}, images/batch {settings.images_per_batch}, "
        f"internal_batch_size {settings.internal_batch_size}, workers "
        f"{settings.workers}, median of {settings.repeats})"
    )
    for path, result in results.items():
        print(
            f"  {path:5s} path: in-memory {result['in_memory_images_per_s']:8.2f} "
            f"images/s, explain-dataset {result['explain_dataset_images_per_s']:8.2f}"
            f" images/s, ratio {result['ratio']:.3f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--model", help="model name (default: EfficientNet-Lite0)")
    defaults = Settings()
    for field in ("images", "steps", "images_per_batch", "workers", "repeats"):
        parser.add_argument(f"--{field.replace('_', '-')}", type=int)
    parser.add_argument("--internal-batch-size", type=int)
    parser.add_argument("--json", metavar="FILE", help="write the results as JSON")
    args = parser.parse_args()
    out = args.json and results_file.claim(args.json, SCRIPT)
    base = GPU_SETTINGS if args.device == "cuda" else defaults
    overrides = {
        name: getattr(args, name)
        for name in (
            "model",
            "images",
            "steps",
            "images_per_batch",
            "workers",
            "repeats",
            "internal_batch_size",
        )
        if getattr(args, name) is not None
    }
    settings = dataclasses.replace(base, device=args.device, **overrides)
    results = measure(settings)
    print_results(settings, results)
    if out:
        report = {"settings": dataclasses.asdict(settings), "results": results}
        results_file.write(out, report, SCRIPT)


if __name__ == "__main__":
    main()
