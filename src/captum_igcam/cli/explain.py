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
import dataclasses
import difflib
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from captum_igcam import _atomic, images, maps, models
from captum_igcam.cli import CLIError

APPROXIMATION_METHODS = (
    "gausslegendre",
    "riemann_left",
    "riemann_right",
    "riemann_middle",
    "riemann_trapezoid",
)
BASELINES = ("black", "blur", "mean")
DEFAULT_METHODS = "gradcam,igcam"
FIGURE_DPI = 90


@dataclasses.dataclass(frozen=True)
class Request:
    """What one explanation needs besides the method itself."""

    bundle: models.ModelBundle
    layer: torch.nn.Module
    inputs: torch.Tensor  # (1, 3, S, S), normalised
    baseline: torch.Tensor  # same shape as inputs
    target: int
    n_steps: int
    method: str
    internal_batch_size: int | None


def _grad_cam(request: Request) -> torch.Tensor:
    from captum.attr import LayerGradCam

    explainer = LayerGradCam(request.bundle.model, request.layer)
    return explainer.attribute(
        request.inputs, target=request.target, relu_attributions=True
    )


def _integrated_grad_cam(request: Request, **variant: Any) -> torch.Tensor:
    from captum_igcam import IntegratedLayerGradCam

    explainer = IntegratedLayerGradCam(request.bundle.model, request.layer)
    options = {"method": request.method, **variant}
    return explainer.attribute(
        request.inputs,
        target=request.target,
        baselines=request.baseline,
        n_steps=request.n_steps,
        internal_batch_size=request.internal_batch_size,
        **options,
    )


def _integrated_grad_cam_notebook(request: Request) -> torch.Tensor:
    # The authors' notebook: a = m/M for m = 0..M-1, no baseline activations
    # subtracted, and the per-step maps summed rather than averaged.
    summed = _integrated_grad_cam(
        request, method="riemann_left", subtract_baseline_activations=False
    )
    return summed * request.n_steps


def _layer_integrated_gradients(request: Request) -> torch.Tensor:
    from captum.attr import LayerIntegratedGradients

    explainer = LayerIntegratedGradients(request.bundle.model, request.layer)
    attributions = explainer.attribute(
        request.inputs,
        baselines=request.baseline,
        target=request.target,
        n_steps=request.n_steps,
        method=request.method,
        internal_batch_size=request.internal_batch_size,
    )
    return attributions.sum(dim=1, keepdim=True)


#: ``--methods`` name -> (figure title, function computing ``(1, 1, h, w)``).
METHODS: dict[str, tuple[str, Callable[[Request], torch.Tensor]]] = {
    "gradcam": ("Grad-CAM", _grad_cam),
    "igcam": ("Integrated Grad-CAM", _integrated_grad_cam),
    "igcam-notebook": ("IG-CAM (notebook)", _integrated_grad_cam_notebook),
    "layer-ig": ("Layer IG", _layer_integrated_gradients),
}


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
    parser.add_argument(
        "--model",
        metavar="NAME",
        help="efficientnet-lite0 (default), a torchvision classifier name, "
        "'module:callable', or a torch.save file of a whole module",
    )
    parser.add_argument(
        "--random-weights",
        action="store_true",
        help="use a torchvision model with random weights (no download needed)",
    )
    parser.add_argument(
        "--layer", metavar="DOTTED.NAME", help="layer to explain (default: model's)"
    )
    parser.add_argument(
        "--target",
        default="top1",
        help="class to explain: top1 (default), a class index or a class label",
    )
    parser.add_argument(
        "--steps",
        type=_positive_int("--steps"),
        default=50,
        metavar="N",
        help="path points for the integrated methods (default: 50)",
    )
    parser.add_argument(
        "--method",
        choices=APPROXIMATION_METHODS,
        default="gausslegendre",
        help="Captum approximation method (default: gausslegendre)",
    )
    parser.add_argument(
        "--baseline",
        choices=BASELINES,
        default="black",
        help="baseline image: black (default), blur (blurred photo) or mean "
        "(the normalisation's mean colour, i.e. an all-zero input)",
    )
    parser.add_argument(
        "--batch-size",
        type=_positive_int("--batch-size"),
        metavar="B",
        help="internal batch size: path points evaluated per forward pass",
    )
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("igcam-out"),
        metavar="DIR",
        help="output folder (default: ./igcam-out)",
    )
    parser.add_argument(
        "--methods",
        type=_method_list,
        default=_method_list(DEFAULT_METHODS),
        metavar="LIST",
        help=f"comma-separated, from {', '.join(METHODS)} (default: {DEFAULT_METHODS})",
    )
    parser.set_defaults(func=run)


def _positive_int(option: str) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = 0
        if value < 1:
            raise argparse.ArgumentTypeError(
                f"{option}: expected a positive integer, got {text!r}"
            )
        return value

    return parse


def _method_list(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in METHODS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"--methods: expected a comma-separated list from {', '.join(METHODS)}, "
            f"got {text!r}"
        )
    return list(dict.fromkeys(names))


def run(args: argparse.Namespace) -> int:
    """Run ``captum-igcam explain``; return 1 if any image failed, else 0."""
    started = time.perf_counter()
    device = _check_device(args.device)
    _prepare_output_folder(args.out)
    bundle = models.load_model(args.model, device, pretrained=not args.random_weights)
    if args.layer is not None:
        bundle = dataclasses.replace(bundle, layer_name=args.layer)
    layer = bundle.layer()
    target = _parse_target(args.target, bundle.categories)
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
        records.append(_explain_image(args, bundle, layer, target, label, stem, photo))

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


def _check_device(device: str) -> str:
    if device == "cuda" and not torch.cuda.is_available():
        raise CLIError("--device: 'cuda' was asked for but CUDA is not available")
    return device


def _prepare_output_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise CLIError(
            f"--out: cannot write to output folder '{folder}' "
            f"({error.strerror or error})"
        ) from error


def _parse_target(text: str, categories: list[str]) -> int | None:
    """``None`` for top1, else the class index ``text`` names."""
    if text == "top1":
        return None
    if text.lstrip("-").isdigit():
        index = int(text)
        if not 0 <= index < len(categories):
            raise CLIError(
                f"--target: expected a class index in 0..{len(categories) - 1}, "
                f"got {index}"
            )
        return index
    lowered = [name.lower() for name in categories]
    if text.lower() in lowered:
        return lowered.index(text.lower())
    close = difflib.get_close_matches(text, categories, n=3)
    hint = f"; closest labels: {', '.join(close)}" if close else ""
    raise CLIError(
        f"--target: expected top1, a class index or a class label, got {text!r}{hint}"
    )


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


def _baseline_input(
    bundle: models.ModelBundle, photo: np.ndarray, kind: str
) -> torch.Tensor:
    """The ``(1, 3, S, S)`` baseline named by ``--baseline`` for ``photo``."""
    from PIL import Image, ImageFilter

    if kind == "mean":
        size = bundle.input_size
        return torch.zeros(1, 3, size, size, device=bundle.device)
    image = Image.fromarray(photo)
    if kind == "black":
        image = Image.new("RGB", image.size)
    else:
        image = image.filter(ImageFilter.GaussianBlur(radius=max(image.size) / 16))
    return bundle.preprocess(image).unsqueeze(0)


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
    layer: torch.nn.Module,
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
    request = Request(
        bundle=bundle,
        layer=layer,
        inputs=inputs,
        baseline=_baseline_input(bundle, photo, args.baseline),
        target=explained,
        n_steps=args.steps,
        method=args.method,
        internal_batch_size=args.batch_size,
    )
    figure_path = args.out / f"{stem}.png"
    files, panels = [figure_path.name], []
    caption = f"{bundle.categories[explained]} {float(probabilities[explained]):.2f}"
    for name in args.methods:
        title, compute = METHODS[name]
        layer_map = compute(request).detach().float().cpu()
        names, heat = _save_maps(args.out, stem, name, layer_map, photo.shape[:2])
        files.extend(names)
        panels.append((f"{title}\n{caption}", heat))
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
