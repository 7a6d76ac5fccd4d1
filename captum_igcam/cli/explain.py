"""``captum-igcam explain``: heat maps for a few images, side by side per method.

For every image it writes, into ``--out``:

- ``<name>.png``: the photo, then one overlay per method;
- ``<name>_<method>_layer.npy``: the raw map at the layer's resolution;
- ``<name>_<method>_upsampled.npy``: the raw map upsampled bilinearly to the
  photo's size;

and one ``summary.json`` for the whole run. Every file is written atomically.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from captum_igcam import maps
from captum_igcam.app import _atomic, images, models
from captum_igcam.app.methods import METHODS, MapFunction
from captum_igcam.cli import _options

DEFAULT_METHODS = "gradcam,igcam"
FIGURE_DPI = 90


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the ``explain`` subcommand."""
    parser = subparsers.add_parser(
        "explain",
        help="explain a model's predictions on a few images",
        description=(
            "Explain an image classifier's predictions with Grad-CAM and "
            "Integrated Grad-CAM. Without images, explains photos bundled with "
            "scikit-image; without --model, uses the embedded ImageNet-pretrained "
            "EfficientNet-Lite0."
        ),
    )
    parser.add_argument("images", nargs="*", metavar="IMAGE", help="image files")
    _options.add_model_options(parser)
    _options.add_attribution_options(parser)
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("igcam-out"),
        metavar="DIR",
        help="output folder (default: ./igcam-out)",
    )
    parser.add_argument(
        "--methods",
        type=_options.method_list,
        default=_options.method_list(DEFAULT_METHODS),
        metavar="LIST",
        help=f"comma-separated, from {', '.join(METHODS)} (default: {DEFAULT_METHODS})",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``captum-igcam explain``; return 1 if any image failed, else 0."""
    started = time.perf_counter()
    device = _options.check_device(args.device)
    _options.prepare_output_folder(args.out)
    bundle = _options.load_bundle(args, device)
    layer = bundle.layer()
    target = _options.parse_target(args.target, bundle.categories)
    settings = _options.method_settings(args, bundle)
    explainers = {
        name: METHODS[name].build(bundle.model, layer, settings)
        for name in args.methods
    }
    sources = _image_sources(args.images)

    from tqdm import tqdm

    records, errors = [], []
    stems: set[str] = set()
    for label, loader in tqdm(
        sources, desc="explaining", unit="image", disable=len(sources) <= 1
    ):
        try:
            photo = loader()
        except images.ImageLoadError as error:
            tqdm.write(f"captum-igcam: error: {error}", file=sys.stderr)
            errors.append({"image": label, "error": str(error)})
            continue
        stem = _unique_stem(label, stems)
        records.append(
            _explain_image(args, bundle, explainers, target, label, stem, photo)
        )

    summary = {
        "model": bundle.name,
        "layer": bundle.layer_name,
        "methods": args.methods,
        "steps": args.steps,
        "approximation_method": args.method,
        "baseline": args.baseline,
        "images": records,
        "errors": errors,
        "seconds": round(time.perf_counter() - started, 3),
    }
    _atomic.atomic_write_json(args.out / "summary.json", summary)
    print(
        f"explained {len(records)} of {len(sources)} image(s) with "
        f"{len(args.methods)} method(s) in {summary['seconds']:.1f} s; "
        f"results in {args.out}"
    )
    return 1 if errors else 0


def _image_sources(paths: list[str]) -> list[tuple[str, Callable[[], np.ndarray]]]:
    """(label, loader) pairs; loaders return an ``HxWx3`` uint8 RGB array."""
    if paths:
        return [
            (path, lambda path=path: np.asarray(images.load_image(path)))
            for path in paths
        ]
    return [
        (f"skimage:{name}", lambda array=array: array)
        for name, array in images.bundled_images().items()
    ]


def _unique_stem(label: str, taken: set[str]) -> str:
    base = Path(label.removeprefix("skimage:")).stem or "image"
    stem, suffix = base, 2
    while stem in taken:
        stem, suffix = f"{base}-{suffix}", suffix + 1
    taken.add(stem)
    return stem


def _save_maps(
    folder: Path,
    stem: str,
    method: str,
    layer_map: torch.Tensor,
    size: tuple[int, ...],
) -> tuple[list[str], np.ndarray]:
    """Save one method's raw maps; return the file names and the overlay map."""
    full_map = maps.upsample(layer_map, size)
    names = []
    for kind, array in (("layer", layer_map), ("upsampled", full_map)):
        path = folder / f"{stem}_{method}_{kind}.npy"
        _atomic.atomic_save_npy(path, array[0, 0].numpy())
        names.append(path.name)
    return names, maps.normalize(full_map.clamp(min=0))[0, 0].numpy()


def _explain_image(
    args: argparse.Namespace,
    bundle: models.ModelBundle,
    explainers: dict[str, MapFunction],
    target: int | None,
    label: str,
    stem: str,
    photo: np.ndarray,
) -> dict[str, Any]:
    inputs = bundle.preprocess(photo).unsqueeze(0)
    with torch.no_grad():
        probabilities = bundle.model(inputs).softmax(dim=1)[0].cpu()
    predicted = int(probabilities.argmax())
    explained = predicted if target is None else target
    baseline = _options.baseline_input(bundle, photo, args.baseline)
    figure_path = args.out / f"{stem}.png"
    files, panels = [figure_path.name], []
    caption = f"{bundle.categories[explained]} {float(probabilities[explained]):.2f}"
    for name, explain_maps in explainers.items():
        layer_map = explain_maps(inputs, explained, baseline).detach().float().cpu()
        names, heat = _save_maps(args.out, stem, name, layer_map, photo.shape[:2])
        files.extend(names)
        panels.append((f"{METHODS[name].title}\n{caption}", heat))
    figure = maps.explanation_figure(
        photo,
        panels,
        image_title=f"{stem}\npredicted: {bundle.categories[predicted]} "
        f"{float(probabilities[predicted]):.2f}",
    )
    _atomic.atomic_save_figure(figure, figure_path, dpi=FIGURE_DPI)
    return {
        "image": label,
        "name": stem,
        "predicted_index": predicted,
        "predicted_label": bundle.categories[predicted],
        "probability": round(float(probabilities[predicted]), 6),
        "target_index": explained,
        "target_label": bundle.categories[explained],
        "target_probability": round(float(probabilities[explained]), 6),
        "files": files,
    }
