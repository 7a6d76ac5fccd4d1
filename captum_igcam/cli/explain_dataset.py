"""``captum-igcam explain-dataset``: Integrated Grad-CAM maps for a whole folder.

Explains every image of SOURCE (an image folder, searched recursively, or a
VOC-format directory) and writes the maps in shards under ``--out``, with an
index that :func:`captum_igcam.dataset_job.maps_io.open_maps` reads. Re-running the
command resumes an interrupted run. Under ``torchrun`` each process explains its own
part of the images (gloo on CPU, NCCL with one GPU per process).

The model, layer, target, baseline, step and method options are those of
``captum-igcam explain`` (:mod:`captum_igcam.cli._options`); the loop itself is
:func:`captum_igcam.dataset_job.explainer.explain_dataset`.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from captum_igcam.app import models
from captum_igcam.app.methods import EXPLAINER_BY_PATH
from captum_igcam.cli import CLIError, _options
from captum_igcam.dataset_job import explainer as dataset_job

#: ``--target`` value that takes each image's class from its class folder.
FOLDER_TARGET = "folder"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the ``explain-dataset`` subcommand."""
    parser = subparsers.add_parser(
        "explain-dataset",
        help="explain every image of a folder, writing the maps in shards",
        description=(
            "Explain every image of SOURCE with Integrated Grad-CAM and write the "
            "maps in shards with an index, resumably. SOURCE is an image folder "
            "(searched recursively) or a VOC directory (JPEGImages/ is used). "
            f"Besides explain's values, --target accepts {FOLDER_TARGET!r}: the "
            "class named by each image's top folder (torchvision ImageFolder "
            "layout SOURCE/<class>/...), a class label or index of the model. "
            "Run it under torchrun to split the images between processes."
        ),
    )
    parser.add_argument("source", type=Path, metavar="SOURCE", help="image folder")
    parser.add_argument(
        "--out", type=Path, required=True, metavar="DIR", help="output folder"
    )
    _options.add_model_options(parser)
    _options.add_attribution_options(parser)
    parser.add_argument(
        "--path",
        choices=sorted(EXPLAINER_BY_PATH),
        default="input",
        help="input: the paper's path (default); layer: the fast layer-space "
        "variant, which is not the paper's method",
    )
    parser.add_argument(
        "--images-per-batch",
        type=_options.positive_int("--images-per-batch"),
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
        type=_options.positive_int("--shard-size"),
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
    parser.set_defaults(func=run)


def _worker_count(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(
            f"--workers: expected 0 or a positive integer, got {text!r}"
        )
    return int(text)


@dataclasses.dataclass(frozen=True)
class Preprocess:
    """Image -> (input, baseline) on the CPU, picklable for loader workers.

    Args:
        bundle (ModelBundle): Gives the resizing and normalisation; its model
            is not used (a parameterless stand-in keeps tensors on the CPU).
        baseline (str): One of ``explain``'s ``--baseline`` choices.
    """

    bundle: models.ModelBundle
    baseline: str

    @classmethod
    def for_model(cls, bundle: models.ModelBundle, baseline: str) -> Preprocess:
        """Build it from a loaded bundle without keeping a reference to its model."""
        return cls(dataclasses.replace(bundle, model=torch.nn.Identity()), baseline)

    def __call__(self, image: Any) -> tuple[torch.Tensor, torch.Tensor]:
        photo = np.asarray(image)
        inputs = self.bundle.preprocess(photo)
        baseline = _options.baseline_input(self.bundle, photo, self.baseline)
        return inputs, baseline[0]


def run(args: argparse.Namespace) -> int:
    """Run ``captum-igcam explain-dataset``; return 1 if any image failed, else 0."""
    _options.check_device(args.device)
    _options.prepare_output_folder(args.out)
    try:
        keys = dataset_job.find_images(args.source)
    except ValueError as error:
        raise CLIError(str(error)) from error
    with _process_group(args.device) as device:
        bundle = _options.load_bundle(args, str(device))

        explainer = EXPLAINER_BY_PATH[args.path](bundle.model, bundle.layer())
        dataset = dataset_job.ImageFileDataset(
            args.source,
            _items(keys, args.target, bundle.categories),
            Preprocess.for_model(bundle, args.baseline),
        )
        settings = {
            "model": bundle.name,
            "pretrained": not args.random_weights,
            "layer": bundle.layer_name,
            "baseline": args.baseline,
            "target": args.target,
        }
        try:
            summary = dataset_job.explain_dataset(
                explainer,
                dataset,
                args.out,
                settings,
                n_steps=args.steps,
                method=args.method,
                internal_batch_size=args.batch_size,
                reshape_transform=bundle.reshape_transform,
                batch_size=args.images_per_batch,
                num_workers=args.workers,
                shard_size=args.shard_size,
                overwrite=args.overwrite,
                device=device,
                progress=not args.no_progress,
            )
        except dataset_job.OutputMismatchError as error:
            raise CLIError(f"{error} (--overwrite)") from error
    for key, message in summary.failed:
        print(f"captum-igcam: error: {key}: {message}", file=sys.stderr)
    who = (
        f"rank {summary.rank} of {summary.world_size}: "
        if summary.world_size > 1
        else ""
    )
    print(
        f"{who}explained {summary.explained} image(s) in {summary.seconds:.1f} s "
        f"({summary.images_per_second:.2f} images/s), skipped {summary.skipped} "
        f"already in {args.out}, {len(summary.failed)} failed"
    )
    return 1 if summary.failed else 0


def _items(
    keys: list[str], target: str, categories: list[str]
) -> list[dataset_job.ImageItem]:
    """One item per key, with the class ``--target`` gives it."""
    if target != FOLDER_TARGET:
        index = _options.parse_target(target, categories)
        fixed = dataset_job.PREDICTED if index is None else index
        return [dataset_job.ImageItem(key, fixed) for key in keys]
    classes: dict[str, int] = {}
    items = []
    for key in keys:
        folder, separator, _ = key.partition("/")
        if not separator:
            raise CLIError(
                f"--target {FOLDER_TARGET}: expected every image in a class "
                f"folder (SOURCE/<class>/...), got {key!r} directly in SOURCE"
            )
        if folder not in classes:
            try:
                classes[folder] = _options.parse_target(folder, categories)
            except CLIError as error:
                raise CLIError(
                    f"--target {FOLDER_TARGET}: class folder {folder!r} names no "
                    f"class of the model ({error})"
                ) from error
        items.append(dataset_job.ImageItem(key, classes[folder]))
    return items


@contextlib.contextmanager
def _process_group(device: str) -> Iterator[torch.device]:
    """Join torchrun's process group if there is one; yield this rank's device.

    Outside torchrun (no ``WORLD_SIZE`` above 1 in the environment) this is
    a single process on ``device``. Under torchrun it initialises
    ``torch.distributed`` from torchrun's environment variables, with NCCL
    and GPU ``LOCAL_RANK`` for ``cuda`` and gloo for ``cpu``.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        yield torch.device(device)
        return
    import torch.distributed as dist

    if device == "cuda":
        local_rank = int(os.environ["LOCAL_RANK"])
        if local_rank >= torch.cuda.device_count():
            raise CLIError(
                f"--device: process with LOCAL_RANK {local_rank} has no GPU of its "
                f"own ({torch.cuda.device_count()} visible); start at most that "
                "many processes per node"
            )
        torch.cuda.set_device(local_rank)
        dist.init_process_group("nccl")
        rank_device = torch.device("cuda", local_rank)
    else:
        dist.init_process_group("gloo")
        rank_device = torch.device("cpu")
    try:
        yield rank_device
    finally:
        dist.destroy_process_group()
