"""``captum-igcam explain-dataset``: Integrated Grad-CAM maps for a whole folder.

Explains every image of SOURCE (an image folder, searched recursively, or a
VOC-format directory) and writes the maps in shards under ``--out``, with an
index that :func:`captum_igcam.dataset_job.maps_io.open_maps` reads. Re-running the
command resumes an interrupted run. Under ``torchrun`` each process explains its own
part of the images (gloo on CPU, NCCL with one GPU per process).

The model, layer, target, baseline, step and method options are those of
``captum-igcam explain`` and ``benchmark`` (:mod:`captum_igcam.cli._options`);
the loop itself is :func:`captum_igcam.dataset_job.explainer.explain_dataset`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from captum_igcam.app.errors import UsageError
from captum_igcam.cli import _clock, _options

if TYPE_CHECKING:
    from captum_igcam.dataset_job import explainer as dataset_job

#: ``--path`` choices: the registry method of each integration path.
METHOD_BY_PATH = {"input": "igcam", "layer": "igcam-layer"}

#: ``--target`` value that takes each image's class from its class folder.
FOLDER_TARGET = "folder"


NAME = "explain-dataset"
HELP = "explain every image of a folder, writing the maps in shards"
DESCRIPTION = (
    "Explain every image of SOURCE with Integrated Grad-CAM and write the "
    "maps in shards with an index, resumably. SOURCE is an image folder "
    "(searched recursively) or a VOC directory (JPEGImages/ is used). "
    f"Besides explain's values, --target accepts {FOLDER_TARGET!r}: the "
    "class named by each image's top folder (torchvision ImageFolder "
    "layout SOURCE/<class>/...), a class label or index of the model. "
    "For a segmentation model or a detector, --task, --target, --box, "
    "--detection-output and --min-iou are those of explain. "
    "Run it under torchrun to split the images between processes."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the arguments of ``explain-dataset``."""
    parser.add_argument("source", type=Path, metavar="SOURCE", help="image folder")
    parser.add_argument(
        "--out", type=Path, required=True, metavar="DIR", help="output folder"
    )
    _options.add_settings_options(parser)
    _options.add_target_option(
        parser, extra=f", or {FOLDER_TARGET!r} (each image's class folder)"
    )
    _options.add_task_options(parser)
    parser.add_argument(
        "--path",
        choices=tuple(METHOD_BY_PATH),
        default="input",
        help="input: the paper's path (default); layer: the fast layer-space "
        "variant, which is not the paper's method",
    )
    parser.add_argument(
        "--images-per-batch",
        type=_options.positive_int,
        default=8,
        metavar="N",
        help="images per DataLoader batch (default: 8)",
    )
    parser.add_argument(
        "--workers",
        type=_worker_count,
        default=2,
        metavar="N",
        help="DataLoader worker processes per rank (default: 2)",
    )
    parser.add_argument(
        "--shard-size",
        type=_options.positive_int,
        default=256,
        metavar="N",
        help="images per shard file; an interrupted run loses at most one "
        "shard per process (default: 256)",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace maps in --out made with other settings",
    )
    parser.add_argument(
        "--no-progress", action="store_true", help="do not show a progress bar"
    )


def _worker_count(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(
            f"expected 0 or a positive integer, got {text!r}"
        )
    return int(text)


def run(args: argparse.Namespace) -> int:
    """Run ``captum-igcam explain-dataset``; return 1 if any image failed, else 0."""
    settings = _options.settings_from_args(args)
    task_target = _options.task_target_from_args(args)
    settings.check_device()
    _options.prepare_output_folder(args.out)
    _clock.announce_start_up(settings.model)

    from captum_igcam.dataset_job import distributed
    from captum_igcam.dataset_job import explainer as dataset_job

    try:
        keys = dataset_job.find_images(args.source, exclude=args.out)
    except ValueError as error:
        raise UsageError(str(error)) from error
    with distributed.process_group(settings.device):
        bundle = settings.load_model()  # "cuda" is this rank's GPU here
        task_target.check_task(bundle.task)  # a user's model: known only now
        if bundle.task == "classification":
            task_target = None
        elif args.path == "layer":
            raise UsageError(
                "--path layer is for classifiers: the layer-space method does not "
                f"run a {bundle.task} model's region or box target; use --path input"
            )
        options = dataset_job.JobOptions(
            images_per_batch=args.images_per_batch,
            workers=args.workers,
            shard_size=args.shard_size,
            overwrite=args.overwrite,
            progress=not args.no_progress,
        )
        try:
            summary = dataset_job.explain_dataset(
                bundle,
                args.source,
                args.out,
                settings,
                items=_items(keys, args.target, bundle.categories),
                method=METHOD_BY_PATH[args.path],
                options=options,
                task_target=task_target,
                targets_from=args.target,
            )
        except dataset_job.OutputMismatchError as error:
            raise UsageError(f"{error} (--overwrite)") from error
    # Each unreadable image was reported once, by name, while the job ran.
    who = (
        f"rank {summary.rank} of {summary.world_size}: "
        if summary.world_size > 1
        else ""
    )
    print(
        f"{who}explained {summary.explained} image(s) in {summary.seconds:.1f} s "
        f"({summary.images_per_second:.2f} images/s; "
        f"{_clock.seconds_since_start():.1f} s in all, start-up included), "
        f"skipped {summary.skipped} "
        f"already in {args.out}, {len(summary.failed)} failed"
        + (
            f", {len(summary.unexplained)} with nothing to explain (listed in "
            "the index)"
            if summary.unexplained
            else ""
        )
    )
    return 1 if summary.failed else 0


def _items(
    keys: list[str], target: str, categories: list[str]
) -> list[dataset_job.ImageItem]:
    """One item per key, with the class ``--target`` gives it."""
    from captum_igcam.dataset_job import explainer as dataset_job

    if target != FOLDER_TARGET:
        index = _options.parse_target(target, categories)
        fixed = dataset_job.PREDICTED if index is None else index
        return [dataset_job.ImageItem(key, fixed) for key in keys]
    classes: dict[str, int] = {}
    items = []
    for key in keys:
        folder, separator, _ = key.partition("/")
        if not separator:
            raise UsageError(
                f"--target {FOLDER_TARGET}: expected every image in a class "
                f"folder (SOURCE/<class>/...), got {key!r} directly in SOURCE"
            )
        if folder not in classes:
            try:
                classes[folder] = _options.parse_target(folder, categories)
            except UsageError as error:
                raise UsageError(
                    f"--target {FOLDER_TARGET}: class folder {folder!r} names no "
                    f"class of the model ({error})"
                ) from error
        items.append(dataset_job.ImageItem(key, classes[folder]))
    return items
