"""Options shared by the subcommands, and their conversion to library objects.

:func:`add_settings_options` registers the model and attribution options of
``explain``, ``explain-dataset`` and ``benchmark`` (same names, defaults and
checks in all three); :func:`settings_from_args` turns them into the one
:class:`~captum_igcam.app.settings.MethodSettings` the method registry reads.

Nothing here imports torch or Captum at import time, so ``--help`` is fast and
argument errors come before any model is loaded.
"""

from __future__ import annotations

import argparse
import difflib
from collections.abc import Sequence
from typing import Any

from captum_igcam.app.errors import UsageError
from captum_igcam.app.settings import (
    APPROXIMATION_METHODS,
    BASELINES,
    DEVICES,
    TASKS,
    MethodSettings,
    check_positive_int,
)

#: ``MethodSettings`` field -> attribute of the parsed arguments.
_SETTINGS_OPTIONS = {
    "model": "model",
    "weights": "weights",
    "random_weights": "random_weights",
    "layer": "layer",
    "device": "device",
    "n_steps": "steps",
    "method": "method",
    "baseline": "baseline",
    "internal_batch_size": "batch_size",
    "memory_budget_mb": "memory_budget",
    "task": "task",  # only where add_task_options registered it
}


def option_message(error: Exception) -> str:
    """The error's message, a leading settings field named as its option.

    ``device: ...`` from :class:`MethodSettings` reads ``--device: ...``.
    """
    message = str(error) or type(error).__name__
    field, colon, rest = message.partition(": ")
    if colon and isinstance(error, UsageError) and field in _SETTINGS_OPTIONS:
        option = _SETTINGS_OPTIONS[field].replace("_", "-")
        return f"--{option}: {rest}"
    return message


def positive_int(text: str) -> int:
    """An argparse ``type`` accepting integers >= 1.

    argparse puts the option's name in front of the message itself.
    """
    try:
        return check_positive_int("value", int(text))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a positive integer, got {text!r}"
        ) from None


def method_list(text: str) -> list[str]:
    """An argparse ``type``: comma-separated names from the method registry."""
    from captum_igcam.app.methods import METHODS

    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in METHODS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"expected a comma-separated list from {', '.join(METHODS)}, got {text!r}"
        )
    return list(dict.fromkeys(names))


def add_settings_options(parser: argparse.ArgumentParser) -> None:
    """Register the options of :class:`MethodSettings`, with its defaults.

    ``--model``, ``--weights``, ``--random-weights``, ``--layer``,
    ``--device``, ``--steps``, ``--method``, ``--baseline``, ``--batch-size``
    and ``--memory-budget``. Options left out parse as ``None`` so that
    :func:`settings_from_args` can tell them from given values.
    """
    model = parser.add_argument_group(
        "model",
        "A registered model name always means that model. 'module:callable' "
        "imports and runs Python code, and a model file (a path with a suffix "
        "or a separator) is unpickled with torch.load(weights_only=False), "
        "which can run code too: use both only with code and files you trust. "
        "For your own weights of a torchvision architecture, use "
        "--model ARCH --weights FILE (a state dict, read with weights_only=True).",
    )
    model.add_argument(
        "--model",
        metavar="NAME",
        help="efficientnet-lite0 (default), a torchvision classifier name, "
        "'module:callable' (runs code), or a torch.save file of a whole module "
        "(runs code)",
    )
    weights = model.add_mutually_exclusive_group()
    weights.add_argument(
        "--weights",
        metavar="FILE",
        help="state dict (torch.save(model.state_dict(), FILE)) for the "
        "torchvision architecture named by --model; read with weights_only=True",
    )
    weights.add_argument(
        "--random-weights",
        action="store_true",
        default=None,
        help="use a torchvision model with random weights (no download needed)",
    )
    model.add_argument(
        "--layer", metavar="DOTTED.NAME", help="layer to explain (default: model's)"
    )
    model.add_argument(
        "--device",
        choices=DEVICES,
        help=f"where to run (default: {MethodSettings.device})",
    )
    attribution = parser.add_argument_group("attribution")
    attribution.add_argument(
        "--steps",
        type=positive_int,
        metavar="N",
        help=f"path points of the integrated methods (default: "
        f"{MethodSettings.n_steps})",
    )
    attribution.add_argument(
        "--method",
        choices=APPROXIMATION_METHODS,
        help=f"Captum approximation method (default: {MethodSettings.method})",
    )
    attribution.add_argument(
        "--baseline",
        choices=BASELINES,
        help="baseline image: black (default), blur (blurred photo) or mean "
        "(the normalisation's mean colour, i.e. an all-zero input)",
    )
    attribution.add_argument(
        "--batch-size",
        type=positive_int,
        metavar="B",
        help="internal batch size: examples x path points per forward pass "
        "(default: as many as --memory-budget allows)",
    )
    attribution.add_argument(
        "--memory-budget",
        type=positive_int,
        metavar="MB",
        help="memory one model pass may use, in MiB: sets the path methods' "
        "--batch-size unless given, and the benchmark's curve passes (default "
        f"{MethodSettings.memory_budget_mb})",
    )


def settings_from_args(args: argparse.Namespace, **defaults: Any) -> MethodSettings:
    """The :class:`MethodSettings` of the options of :func:`add_settings_options`.

    Args:
        args (argparse.Namespace): Parsed arguments.
        **defaults: Values for options the user did not give (e.g. the
            benchmark's ``--quick`` steps); otherwise ``MethodSettings``'s
            defaults apply.

    Returns:
        MethodSettings: The checked settings.
    """
    given = {
        field: getattr(args, option)
        for field, option in _SETTINGS_OPTIONS.items()
        if getattr(args, option, None) is not None
    }
    return MethodSettings(**{**defaults, **given})


def parse_target(text: str, categories: list[str]) -> int | None:
    """``None`` for top1, else the class index ``text`` names.

    A label is matched without regard to case, and must name one class: a
    label that several classes share (ImageNet's ``cardigan``: 264 the dog,
    474 the sweater) is refused with the candidates' indexes.
    """
    if text == "top1":
        return None
    if text.lstrip("-").isdigit():
        index = int(text)
        if not 0 <= index < len(categories):
            raise UsageError(
                f"--target: expected a class index in 0..{len(categories) - 1}, "
                f"got {index}"
            )
        return index
    matches = [i for i, name in enumerate(categories) if name.lower() == text.lower()]
    if len(matches) == 1:
        return matches[0]
    if matches:
        candidates = ", ".join(f"{i} ({categories[i]})" for i in matches)
        raise UsageError(
            f"--target: {text!r} is the label of several classes: {candidates}; "
            "give the class index"
        )
    close = difflib.get_close_matches(text, categories, n=3)
    hint = f"; closest labels: {', '.join(close)}" if close else ""
    raise UsageError(
        f"--target: expected top1, a class index or a class label, got {text!r}{hint}"
    )


def add_methods_option(
    parser: argparse.ArgumentParser,
    default: Sequence[str] | None,
    shown_default: str = "",
) -> None:
    """``--methods``: comma-separated names from the method registry.

    The registry (which imports Captum) is read only when the option is
    given, so a run with the default names checks its files first.

    Args:
        parser (argparse.ArgumentParser): Where to add it.
        default (Sequence[str], optional): Names used when the option is left
            out; ``None`` leaves the choice to the subcommand.
        shown_default (str, optional): What ``--help`` calls the default
            (the names of ``default`` when empty).
            Default: ""
    """
    parser.add_argument(
        "--methods",
        type=method_list,
        default=None if default is None else list(default),
        metavar="LIST",
        help="comma-separated method names (default: "
        f"{shown_default or ','.join(default or ())}); docs/cli.md lists them, "
        "and an unknown name is answered with the list",
    )


def add_target_option(parser: argparse.ArgumentParser, extra: str = "") -> None:
    """``--target``: top1 (default), a class index or a class label."""
    parser.add_argument(
        "--target",
        default="top1",
        help=f"class to explain: top1 (default), a class index or a class label{extra}",
    )


def _unit_interval(text: str) -> float:
    """An argparse ``type`` accepting numbers in [0, 1]."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}")
    return value


def add_task_options(parser: argparse.ArgumentParser) -> None:
    """``--task``, ``--box``, ``--detection-output`` and ``--min-iou``.

    See :class:`captum_igcam.app.tasks.TaskTarget` and ``docs/tasks.md``.
    """
    task = parser.add_argument_group(
        "segmentation and detection",
        "--target names the class: for segmentation the class whose region "
        "score is explained (top1: the class on most pixels, background "
        "last); for detection a label the explained detection must have.",
    )
    task.add_argument(
        "--task",
        choices=TASKS,
        help="what the model does (default: a torchvision name's own task; "
        "classification for a user's model)",
    )
    task.add_argument(
        "--box",
        metavar="INDEX|x1,y1,x2,y2",
        help="detection: the detection to explain, by rank at the input (0: "
        "highest score, the default) or by a box in the photo's pixels; "
        "segmentation: a box as the region (default: the pixels predicted as "
        "the class)",
    )
    task.add_argument(
        "--detection-output",
        choices=("score", "score+iou"),
        default="score",
        help="detection: explain the matched detection's score, or its score "
        "plus its box's IoU with the explained box (default: score)",
    )
    task.add_argument(
        "--min-iou",
        type=_unit_interval,
        default=0.5,
        metavar="IOU",
        help="detection: smallest IoU that matches the explained box at a path "
        "point; no match scores 0 there (default: 0.5)",
    )


def task_target_from_args(args: argparse.Namespace) -> Any:
    """The :class:`~captum_igcam.app.tasks.TaskTarget` of :func:`add_task_options`."""
    from captum_igcam.app.task_settings import TaskTarget

    try:
        return TaskTarget(
            box=args.box,
            detection_output=args.detection_output,
            min_iou=args.min_iou,
        )
    except ValueError as error:
        raise UsageError(f"--{error}") from None


def prepare_output_folder(folder: Any) -> None:
    """Create ``--out`` and check that files can be written into it."""
    from captum_igcam.app._atomic import ensure_writable_folder

    try:
        ensure_writable_folder(folder)
    except OSError as error:
        raise UsageError(
            f"--out: cannot write to output folder '{folder}' "
            f"({error.strerror or error})"
        ) from error
