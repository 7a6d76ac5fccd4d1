"""``captum-igcam explain``: heat maps for a few images, side by side per method.

For every image it writes, into ``--out``:

- ``<name>.png``: the photo, then one overlay per method;
- ``<name>_<method>_layer.npy``: the raw map at the layer's resolution;
- ``<name>_<method>_upsampled.npy``: the raw map upsampled bilinearly to the
  photo's size (left out with ``--no-upsampled-maps``);

and one ``summary.json`` for the whole run. Every file is written atomically.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from captum_igcam.app import images
from captum_igcam.app.errors import UsageError
from captum_igcam.app.settings import MethodSettings
from captum_igcam.cli import _options

if TYPE_CHECKING:
    import torch

    from captum_igcam.app.methods import MapFunction
    from captum_igcam.app.models import ModelBundle

DEFAULT_METHODS = "gradcam,igcam"
FIGURE_DPI = 90


NAME = "explain"
HELP = "explain a model's predictions on a few images"
DESCRIPTION = (
    "Explain an image classifier's predictions with Grad-CAM and "
    "Integrated Grad-CAM. Without images, explains photos bundled with "
    "scikit-image; without --model, uses the embedded ImageNet-pretrained "
    "EfficientNet-Lite0."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the arguments of ``explain``."""
    parser.add_argument(
        "images",
        nargs="*",
        metavar="IMAGE",
        help="image files (for a folder, use explain-dataset)",
    )
    _options.add_settings_options(parser)
    _options.add_methods_option(parser, DEFAULT_METHODS)
    _options.add_target_option(parser)
    output = parser.add_argument_group("output")
    output.add_argument(
        "--out",
        type=Path,
        default=Path("igcam-out"),
        metavar="DIR",
        help="output folder (default: ./igcam-out)",
    )
    output.add_argument(
        "--no-upsampled-maps",
        action="store_true",
        help="save only the maps at the layer's resolution, not the upsampled "
        "copies at the photo's size (4 bytes per photo pixel each)",
    )


def run(args: argparse.Namespace) -> int:
    """Run ``captum-igcam explain``; return 1 if any image failed, else 0."""
    started = time.perf_counter()
    settings = _options.settings_from_args(args)
    settings.check_device()
    _options.prepare_output_folder(args.out)
    sources, errors = _image_sources(args.images)
    for error in errors:
        print(f"captum-igcam: error: {error['error']}", file=sys.stderr)
    if not sources:
        raise UsageError("no image to explain")

    from tqdm import tqdm

    from captum_igcam.app import _atomic
    from captum_igcam.app.methods import METHODS

    bundle = settings.load_model()
    target = _options.parse_target(args.target, bundle.categories)
    layer = bundle.layer()
    explainers = {
        name: METHODS[name].build(bundle.model, layer, settings)
        for name in args.methods
    }
    records = []
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
            _explain_image(
                args, settings, bundle, explainers, target, label, stem, photo
            )
        )

    summary = {
        "model": bundle.name,
        "random_weights": settings.random_weights,
        "weights": settings.weights,
        "layer": bundle.layer_name,
        "methods": args.methods,
        "steps": settings.n_steps,
        "approximation_method": settings.method,
        "baseline": settings.baseline,
        "batch_size": settings.internal_batch_size,
        "device": settings.device,
        "images": records,
        "errors": errors,
        "seconds": round(time.perf_counter() - started, 3),
    }
    _atomic.atomic_write_json(args.out / "summary.json", summary)
    print(
        f"explained {len(records)} of {len(records) + len(errors)} image(s) with "
        f"{len(args.methods)} method(s) in {summary['seconds']:.1f} s; "
        f"results in {args.out}"
    )
    return 1 if errors else 0


def _image_sources(
    paths: list[str],
) -> tuple[list[tuple[str, Callable[[], np.ndarray]]], list[dict[str, str]]]:
    """(label, loader) pairs and the errors of paths that are not files.

    Loaders return an ``HxWx3`` uint8 RGB array. Missing files and folders
    are found here, before the model loads.
    """
    if not paths:
        return [
            (f"skimage:{name}", lambda array=array: array)
            for name, array in images.bundled_images().items()
        ], []
    sources, errors = [], []
    for path in paths:
        if Path(path).is_dir():
            message = (
                f"image {path!r} is a directory; explain takes image files "
                f"(for a folder use: captum-igcam explain-dataset {path} --out DIR)"
            )
        elif not Path(path).is_file():
            message = f"image {path!r} does not exist"
        else:
            sources.append(
                (path, lambda path=path: np.asarray(images.load_image(path)))
            )
            continue
        errors.append({"image": path, "error": message})
    return sources, errors


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
    upsampled: bool,
) -> tuple[list[str], np.ndarray]:
    """Save one method's raw maps; return the file names and the overlay map."""
    from captum_igcam import maps
    from captum_igcam.app import _atomic

    full_map = maps.upsample(layer_map, size)
    saved = [("layer", layer_map)] + ([("upsampled", full_map)] if upsampled else [])
    names = []
    for kind, array in saved:
        path = folder / f"{stem}_{method}_{kind}.npy"
        _atomic.atomic_save_npy(path, array[0, 0].numpy())
        names.append(path.name)
    return names, maps.normalize(full_map.clamp(min=0))[0, 0].numpy()


def _explain_image(
    args: argparse.Namespace,
    settings: MethodSettings,
    bundle: ModelBundle,
    explainers: dict[str, MapFunction],
    target: int | None,
    label: str,
    stem: str,
    photo: np.ndarray,
) -> dict[str, Any]:
    import torch

    from captum_igcam import maps
    from captum_igcam.app import _atomic
    from captum_igcam.app.baselines import baseline_input
    from captum_igcam.app.methods import METHODS

    inputs = bundle.preprocess(photo).unsqueeze(0)
    with torch.no_grad():
        probabilities = bundle.model(inputs).softmax(dim=1)[0].cpu()
    predicted = int(probabilities.argmax())
    explained = predicted if target is None else target
    baseline = baseline_input(bundle, photo, settings.baseline)
    figure_path = args.out / f"{stem}.png"
    files, panels = [figure_path.name], []
    caption = f"{bundle.categories[explained]} {float(probabilities[explained]):.2f}"
    for name, explain_maps in explainers.items():
        layer_map = explain_maps(inputs, explained, baseline).detach().float().cpu()
        names, heat = _save_maps(
            args.out,
            stem,
            name,
            layer_map,
            photo.shape[:2],
            upsampled=not args.no_upsampled_maps,
        )
        files.extend(names)
        panels.append((f"{METHODS[name].title}\n{caption}", heat))
    weights_note = "\n(random weights)" if settings.random_weights else ""
    figure = maps.explanation_figure(
        photo,
        panels,
        image_title=f"{stem}\npredicted: {bundle.categories[predicted]} "
        f"{float(probabilities[predicted]):.2f}{weights_note}",
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
