"""Options shared by the subcommands, and their conversion to library objects.

:func:`add_settings_options` registers the model and attribution options of
``explain``, ``explain-dataset`` and ``benchmark`` (same names, defaults and
checks in all three); :func:`settings_from_args` turns them into the one
:class:`~captum_igcam.app.settings.MethodSettings` the method registry reads.

Nothing here imports torch or Captum at import time, so ``--help`` is fast and
argument errors come before any model is loaded. An error of the application
names the setting it is about (its ``parameter``, see
:mod:`captum_igcam.app.errors`); :func:`option_of` gives the option that sets
it, so that the message names the option.
"""

from __future__ import annotations

import argparse
import difflib
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from captum_igcam.app.errors import SettingValueError, UnknownModelError, UsageError
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


#: Parameters of :class:`~captum_igcam.app.task_settings.TaskTarget` -> option.
_TASK_OPTIONS = {
    "box": "--box",
    "detection_output": "--detection-output",
    "min_iou": "--min-iou",
}
#: The option that sets each parameter of the application's errors.
_OPTION_OF_PARAMETER = {
    **{
        field: "--" + option.replace("_", "-")
        for field, option in _SETTINGS_OPTIONS.items()
    },
    **_TASK_OPTIONS,
    "out": "--out",
}


def option_of(error: BaseException) -> str | None:
    """The command-line option of the setting an error is about, if any.

    Args:
        error (BaseException): Any error; only a
            :class:`~captum_igcam.app.errors.UsageError` names a setting
            (its ``parameter``).

    Returns:
        str or None: E.g. ``"--device"`` for ``parameter == "device"``.

    Example::

        >>> option_of(UsageError("'cuda' was asked for ...", "device"))
        '--device'
    """
    if not isinstance(error, UsageError) or error.parameter is None:
        return None
    return _OPTION_OF_PARAMETER.get(error.parameter)


def option_message(error: BaseException) -> str:
    """The error's message for the command line, naming the option it is about.

    ``UsageError("'cuda' was asked for ...", "device")`` reads ``--device:
    'cuda' was asked for ...``; an unknown model's message says how to list
    the known ones from the command line.
    """
    option = option_of(error)
    if isinstance(error, UnknownModelError):
        return f"{option}: {error.describe('--list-models lists them')}"
    if option is not None:
        return f"{option}: {error.reason}"
    return str(error) or type(error).__name__


def print_error(error: BaseException) -> None:
    """Print ``captum-igcam: error: <message>`` on stderr.

    An unknown model's message is wrapped to 79 columns, its closest names
    on the first line.
    """
    import sys

    line = f"captum-igcam: error: {option_message(error)}"
    if isinstance(error, UnknownModelError):
        line = textwrap.fill(line, width=79, subsequent_indent="  ")
    print(line, file=sys.stderr)


class CommandParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose help may name what only a heavy import knows.

    ``help_fillers`` run when the help is formatted (``-h``), so that, for
    example, the method registry (which imports Captum) is read for the
    help of ``--methods`` and not for every command line.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.help_fillers: list[Callable[[], None]] = []

    def format_help(self) -> str:
        """The help, after every filler has run."""
        for fill in self.help_fillers:
            fill()
        return super().format_help()


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


class _ListModels(argparse.Action):
    """``--list-models``: print the registered model names and exit."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any):
        super().__init__(
            option_strings,
            dest=argparse.SUPPRESS,
            default=argparse.SUPPRESS,
            nargs=0,
            help="print the names --model knows and exit",
        )

    def __call__(self, parser: argparse.ArgumentParser, *args: Any) -> None:
        from captum_igcam.app.models import known_models

        print(textwrap.fill(", ".join(known_models()), width=79))
        parser.exit()


def add_settings_options(parser: argparse.ArgumentParser) -> None:
    """Register the options of :class:`MethodSettings`, with its defaults.

    ``--model``, ``--weights``, ``--random-weights``, ``--layer``,
    ``--device``, ``--steps``, ``--method``, ``--baseline``, ``--batch-size``
    and ``--memory-budget``, and ``--list-models``. Options left out parse as
    ``None`` so that :func:`settings_from_args` can tell them from given
    values.
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
        help="efficientnet-lite0 (default), a torchvision classifier, "
        "segmentation or detection model name, "
        "'module:callable' (runs code), or a torch.save file of a whole module "
        "(runs code); --list-models lists the names",
    )
    model.add_argument("--list-models", action=_ListModels)
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
    given, or, with a :class:`CommandParser`, when its help is shown (which
    then lists the registry's names), so a run with the default names checks
    its files first.

    Args:
        parser (argparse.ArgumentParser): Where to add it.
        default (Sequence[str], optional): Names used when the option is left
            out; ``None`` leaves the choice to the subcommand.
        shown_default (str, optional): What ``--help`` calls the default
            (the names of ``default`` when empty).
            Default: ""
    """
    default_text = shown_default or ",".join(default or ())
    help_text = f"comma-separated method names (default: {default_text})"
    action = parser.add_argument(
        "--methods",
        type=method_list,
        default=None if default is None else list(default),
        metavar="LIST",
        help=help_text,
    )

    def list_names() -> None:
        from captum_igcam.app.methods import METHODS

        action.help = f"{help_text}; one or more of: {', '.join(METHODS)}"

    if isinstance(parser, CommandParser):
        parser.help_fillers.append(list_names)


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


def _box(text: str) -> str:
    """An argparse ``type``: a value :func:`~captum_igcam.app.task_settings.parse_box`
    accepts, kept as given."""
    from captum_igcam.app.task_settings import parse_box

    try:
        parse_box(text)
    except SettingValueError as error:
        raise argparse.ArgumentTypeError(error.reason) from None
    return text


def add_task_options(parser: argparse.ArgumentParser) -> None:
    """``--task``, ``--box``, ``--detection-output`` and ``--min-iou``.

    See :class:`captum_igcam.app.task_settings.TaskTarget` and ``docs/tasks.md``.
    """
    task = parser.add_argument_group(
        "segmentation and detection",
        "--target names the class: for segmentation the class whose region "
        "score is explained (top1: the class on most pixels, background "
        "last); for detection a label the explained detection must have. "
        "A classifier takes none of these options.",
    )
    task.add_argument(
        "--task",
        choices=TASKS,
        help="what the model does (default: a torchvision name's own task; "
        "classification for a user's model)",
    )
    task.add_argument(
        "--box",
        type=_box,
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
    """The :class:`~captum_igcam.app.task_settings.TaskTarget` of
    :func:`add_task_options`.

    Options that do not fit the model's task are refused here, before the
    model loads, where the task is known without loading it (``--task``, or
    a registered model's own task); a user's model is checked once loaded.

    Raises:
        SettingValueError: E.g. ``--box`` for a classifier; the command line
            reports it as an invalid option value (exit status 2).
    """
    from captum_igcam.app.task_settings import TaskTarget

    target = TaskTarget(
        box=args.box, detection_output=args.detection_output, min_iou=args.min_iou
    )
    if target != TaskTarget():
        from captum_igcam.app.models import registered_task

        task = getattr(args, "task", None) or registered_task(args.model)
        if task is not None:
            target.check_task(task)
    return target


#: Folders :func:`prepare_output_folder` created for the running command.
_created_folders: list[Path] = []


def prepare_output_folder(folder: Any) -> None:
    """Create ``--out`` and check that files can be written into it.

    The folders it creates are removed again by
    :func:`release_created_folders` if the command fails and leaves them
    empty.
    """
    from captum_igcam.app.safe_files import ensure_writable_folder

    try:
        _created_folders.extend(ensure_writable_folder(folder))
    except OSError as error:
        raise UsageError(
            f"cannot write to output folder '{folder}' ({error.strerror or error})",
            "out",
        ) from error


def release_created_folders(failed: bool) -> None:
    """End a command: after a failure, remove the output folders it created
    and left empty (a folder that holds anything is kept).

    Args:
        failed (bool): Whether the command failed.
    """
    from captum_igcam.app.safe_files import remove_empty_folders

    if failed:
        remove_empty_folders(_created_folders)
    _created_folders.clear()
