"""``captum-igcam explain``: heat maps for a few images, side by side per method.

The command checks its arguments and image paths, loads the model, and calls
:func:`captum_igcam.app.explain.explain_images`, which writes the figures,
raw maps and ``summary.json`` described there and in ``docs/cli.md``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from captum_igcam.app.errors import UsageError
from captum_igcam.app.explain import DEFAULT_METHODS
from captum_igcam.cli import _clock, _options

NAME = "explain"
HELP = "explain a model's predictions on a few images"
DESCRIPTION = (
    "Explain what an image model predicts, with Grad-CAM, Integrated "
    "Grad-CAM or any method of --methods: a classifier's class, a "
    "segmentation model's region or a detector's box (--task, --box). "
    "Writes a figure and the raw maps per image and a summary.json. Without "
    "images, explains photos bundled with scikit-image; without --model, "
    "uses the embedded ImageNet-pretrained EfficientNet-Lite0."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the arguments of ``explain``: the shared options, the images."""
    _options.add_settings_options(parser)
    parser.add_argument(
        "images",
        nargs="*",
        metavar="IMAGE",
        help="image files (for a folder, use explain-dataset)",
    )
    _options.add_methods_option(parser, DEFAULT_METHODS)
    _options.add_target_option(parser)
    _options.add_task_options(parser)
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
    from captum_igcam.app import explain

    settings = _options.settings_from_args(args)
    task_target = _options.task_target_from_args(args)
    _options.prepare_output_folder(args.out)
    sources, errors = explain.image_sources(args.images)
    for error in errors:
        print(f"captum-igcam: error: {error['error']}", file=sys.stderr)
    if not sources:
        raise UsageError("no image to explain")
    _clock.announce_start_up(settings.model)
    bundle = settings.load_model()  # checks --device first
    print(
        f"loaded {bundle.name} ({bundle.task}, layer {bundle.layer_name}) in "
        f"{_clock.seconds_since_start():.1f} s; explaining {len(sources)} "
        f"image(s) with {', '.join(args.methods)}",
        file=sys.stderr,
        flush=True,
    )
    summary = explain.explain_images(
        bundle,
        sources,
        args.out,
        settings,
        methods=args.methods,
        target=_options.parse_target(args.target, bundle.categories),
        upsampled_maps=not args.no_upsampled_maps,
        errors=errors,
        task_target=task_target,
    )
    images = len(summary["images"]) + len(summary["errors"])
    print(
        f"explained {len(summary['images'])} of {images} image(s) with "
        f"{len(args.methods)} method(s) in {summary['seconds']:.1f} s "
        f"({_clock.seconds_since_start():.1f} s in all, start-up included); "
        f"results in {args.out} (summary: {summary['summary']})"
    )
    return 1 if summary["errors"] else 0
