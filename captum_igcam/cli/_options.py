"""Options and argument helpers shared by the subcommands."""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from captum.attr._utils.approximation_methods import SUPPORTED_METHODS

from captum_igcam.app import models
from captum_igcam.app.methods import METHODS, MethodSettings
from captum_igcam.cli import CLIError

BASELINES = ("black", "blur", "mean")


def positive_int(option: str) -> Callable[[str], int]:
    """An argparse ``type`` accepting integers >= 1, named ``option`` in errors."""

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


def method_list(text: str) -> list[str]:
    """An argparse ``type``: comma-separated names from the method registry."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in METHODS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"--methods: expected a comma-separated list from {', '.join(METHODS)}, "
            f"got {text!r}"
        )
    return list(dict.fromkeys(names))


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """``--model``, ``--random-weights``, ``--layer`` and ``--device``."""
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
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")


def add_attribution_options(parser: argparse.ArgumentParser) -> None:
    """``--target``, ``--steps``, ``--method``, ``--baseline``, ``--batch-size``."""
    parser.add_argument(
        "--target",
        default="top1",
        help="class to explain: top1 (default), a class index or a class label",
    )
    parser.add_argument(
        "--steps",
        type=positive_int("--steps"),
        default=50,
        metavar="N",
        help="path points for the integrated methods (default: 50)",
    )
    parser.add_argument(
        "--method",
        choices=SUPPORTED_METHODS,
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
        type=positive_int("--batch-size"),
        metavar="B",
        help="internal batch size: path points evaluated per forward pass",
    )


def method_settings(
    args: argparse.Namespace, bundle: models.ModelBundle
) -> MethodSettings:
    """Settings from :func:`add_attribution_options`, with the model's reshape."""
    return MethodSettings(
        n_steps=args.steps,
        method=args.method,
        internal_batch_size=args.batch_size,
        reshape_transform=bundle.reshape_transform,
    )


def check_device(device: str) -> str:
    if device == "cuda" and not torch.cuda.is_available():
        raise CLIError("--device: 'cuda' was asked for but CUDA is not available")
    return device


def prepare_output_folder(folder: Path) -> None:
    """Create ``folder`` and check that files can be written into it."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise CLIError(
            f"--out: cannot write to output folder '{folder}' "
            f"({error.strerror or error})"
        ) from error


def load_bundle(args: argparse.Namespace, device: str) -> models.ModelBundle:
    """The model of :func:`add_model_options`, with ``--layer`` applied."""
    bundle = models.load_model(args.model, device, pretrained=not args.random_weights)
    if args.layer is not None:
        bundle = dataclasses.replace(bundle, layer_name=args.layer)
    return bundle


def parse_target(text: str, categories: list[str]) -> int | None:
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


def baseline_input(
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
