"""Integrated Grad-CAM maps for a whole image folder, in resumable shards.

:func:`explain_dataset` streams the images of a folder through a
``torch.utils.data.DataLoader`` and explains each batch with a method of
the registry (:data:`captum_igcam.app.methods.METHODS`, built from a
:class:`~captum_igcam.app.settings.MethodSettings` exactly as ``explain``
and ``benchmark`` build it), writing the maps in shards of ``shard_size``
images. The folder's format is :mod:`captum_igcam.dataset_job.index`, its
writer :mod:`~captum_igcam.dataset_job.shard_writer`, its reader
:mod:`~captum_igcam.dataset_job.maps_io`; the images are read by
:mod:`~captum_igcam.dataset_job.source_images` and explained by the
per-example pipeline of :mod:`~captum_igcam.dataset_job.pipeline`.

Speed: images are read, decoded and preprocessed in ``DataLoader`` workers
(with the SHA-256 of the bytes decoded), batches are copied to a GPU from pinned memory
without waiting, targets and probabilities stay tensors on the device, and
the maps are handed to the shard writer's background thread, which waits
for their copy to the CPU and writes the shards: the loop that feeds the
accelerator does no per-image Python work and never waits for the disk.

Integrity (see ``docs/explain-dataset.md``): every shard name is unique to
its run and never written twice; an index lists a shard only once the
shard is on the disk, with its size and SHA-256; a resumed run verifies
every shard it skips and explains again what is damaged, and every image
whose file's bytes no longer have the digest its record holds; the job deletes
only files an index proves it wrote; the output folder is never scanned
for images; and one run at a time holds the folder's lock
(:func:`~captum_igcam.dataset_job.output_folder.lock_output`, a per-process
lock that a dead run's ``DataLoader`` workers do not keep).

Distribution: when ``torch.distributed`` is initialised (e.g. under
``torchrun``), rank ``r`` of ``K`` explains images ``r, r + K, r + 2K, ...``
of those no index lists yet, writes its own shards and index, and rank 0
merges the indexes once all ranks are done. The output folder must then be
shared by all ranks (a network file system when there are several nodes).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch.utils.data import Subset

from captum_igcam.app.baselines import InputAndBaseline
from captum_igcam.app.methods import METHODS
from captum_igcam.app.settings import MethodSettings, check_positive_int
from captum_igcam.dataset_job import distributed, output_folder
from captum_igcam.dataset_job.index import SHARD_FOLDER
from captum_igcam.dataset_job.output_folder import (
    OutputLockedError,
    OutputMismatchError,
)
from captum_igcam.dataset_job.pipeline import (
    Pipeline,
    classification_preparer,
    explain_into_shards,
    task_preparer,
)
from captum_igcam.dataset_job.shard_writer import ShardWriter
from captum_igcam.dataset_job.source_images import (
    PREDICTED,
    ImageFileDataset,
    ImageItem,
    find_images,
    folder_identity,
)

if TYPE_CHECKING:
    from captum_igcam.app.models import ModelBundle
    from captum_igcam.app.task_settings import TaskTarget

__all__ = [
    "PREDICTED",
    "ImageFileDataset",
    "ImageItem",
    "JobOptions",
    "OutputLockedError",
    "OutputMismatchError",
    "RunSummary",
    "explain_dataset",
    "find_images",
    "model_digest",
]


@dataclass
class RunSummary:
    """What one rank did in :func:`explain_dataset`.

    Args:
        explained (int): Images explained by this rank in this run.
        skipped (int): Images of the whole dataset already in the output
            folder when the run started.
        failed (list[tuple[str, str]]): ``(key, error)`` of unreadable images.
        seconds (float): Wall time of the explaining loop on this rank.
        rank (int): This process's rank.
        world_size (int): Number of processes.
        unexplained (list[tuple[str, str]], optional): ``(key, reason)`` of
            the images this rank found nothing to explain on (segmentation
            and detection), recorded in the index.
            Default: []
    """

    explained: int
    skipped: int
    failed: list[tuple[str, str]]
    seconds: float
    rank: int
    world_size: int
    unexplained: list[tuple[str, str]] = field(default_factory=list)

    @property
    def images_per_second(self) -> float:
        """This rank's throughput (0 when it explained nothing)."""
        return self.explained / self.seconds if self.seconds > 0 else 0.0


def model_digest(model: torch.nn.Module) -> str:
    """SHA-256 of a model's parameters and buffers, names included.

    Args:
        model (torch.nn.Module): The model.

    Returns:
        str: Hex digest; equal for models with equal state dicts.
    """
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


@dataclass(frozen=True)
class JobOptions:
    """How :func:`explain_dataset` runs; none of these changes the maps.

    Args:
        images_per_batch (int, optional): Images per ``DataLoader`` batch.
                    Default: 8
        workers (int, optional): ``DataLoader`` worker processes that read
                    and preprocess images.
                    Default: 0
        shard_size (int, optional): Images per shard file.
                    Default: 256
        overwrite (bool, optional): Delete the job's files in the output
                    folder (those an index proves it wrote) and start afresh.
                    Default: False
        progress (bool, optional): Show a progress bar (rank 0 only) with
                    images/s and the estimated time left.
                    Default: True
    """

    images_per_batch: int = 8
    workers: int = 0
    shard_size: int = 256
    overwrite: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        check_positive_int("images_per_batch", self.images_per_batch)
        check_positive_int("shard_size", self.shard_size)
        if isinstance(self.workers, bool) or not isinstance(self.workers, int):
            raise ValueError(f"workers: expected an integer, got {self.workers!r}")
        if self.workers < 0:
            raise ValueError(f"workers: expected 0 or more, got {self.workers}")


def explain_dataset(
    bundle: ModelBundle,
    source: str | os.PathLike[str],
    out: str | os.PathLike[str],
    settings: MethodSettings | None = None,
    *,
    items: Sequence[ImageItem] | None = None,
    method: str = "igcam",
    options: JobOptions | None = None,
    task_target: TaskTarget | None = None,
    targets_from: str | None = None,
) -> RunSummary:
    r"""Explain every image of a folder and store the maps in shards.

    Every image goes through one per-example pipeline
    (:mod:`~captum_igcam.dataset_job.pipeline`): its target is prepared,
    the registry's ``method``, built with ``settings`` for the target's
    forward function and the bundle's layer, computes its map, and the
    index records it with the SHA-256 of the image's bytes. A classifier's
    target is the model itself and the image's class (one forward pass per
    batch gives the softmax probabilities; the model must return logits; a
    batch is explained in one call). A segmentation model's or a detector's
    (``bundle.task``) is prepared as ``captum-igcam explain --task``
    prepares it: :func:`captum_igcam.app.tasks.prepare` binds the image's
    region or box to the model. An image with nothing to explain (no pixel
    of the class, no such detection, a box covering none of its pixels) is
    reported, listed under ``unexplained`` and not tried again while its
    file's bytes are unchanged. Call it on every rank when
    ``torch.distributed`` is initialised; see the module's description.

    Args:
        bundle (ModelBundle): The model (in eval mode, on the device the
                    batches go to), its layer, preprocessing and
                    ``reshape_transform``, e.g. from
                    :meth:`MethodSettings.load_model`.
        source (str or os.PathLike): The image folder.
        out (str or os.PathLike): Output folder (created if missing); it
                    may lie inside ``source`` (it is not scanned for
                    images) but not be ``source`` itself.
        settings (MethodSettings, optional): Steps, approximation method,
                    baseline and internal batch size. The model's name,
                    layer, these settings (not ``internal_batch_size`` and
                    ``device``), ``method`` and a digest of the weights are
                    stored; a folder made with others is refused unless
                    ``options.overwrite``.
                    Default: None (``MethodSettings()``)
        items (Sequence[ImageItem], optional): The images (keys relative to
                    ``source``) and their classes; None explains the top-1
                    class of every image :func:`find_images` lists.
                    Default: None
        method (str, optional): Name in
                    :data:`~captum_igcam.app.methods.METHODS`: ``"igcam"``
                    (the paper's input-space path) or ``"igcam-layer"``
                    (the layer-space path), or any other map method.
                    Default: "igcam"
        options (JobOptions, optional): Batching, workers, shard size,
                    overwrite and progress.
                    Default: None (``JobOptions()``)
        task_target (TaskTarget, optional): For a segmentation model or a
                    detector, the region or box to explain (stored with the
                    settings); refused for a classifier.
                    Default: None (``TaskTarget()`` for those models)
        targets_from (str, optional): Where the items' classes come from,
                    recorded in the index as ``settings["target"]`` (the
                    command line's ``--target``: ``"folder"`` when they are
                    the ground truth of class folders, ``"top1"``, a class).
                    Default: None (not said)

    Returns:
        RunSummary: What this rank did.

    Raises:
        OutputMismatchError: If ``out`` holds maps made with other settings,
                    from another source folder or for other classes, and
                    ``options.overwrite`` is False.
        OutputLockedError: If another run is writing to ``out``.
        ValueError: A ``task_target`` for a classifier, or one that does not
                    fit the model's task (the message names the option).
        IndexFormatError: If an index in ``out`` is damaged, edited by hand
                    or of an older format (the message names the file).

    Example::

        >>> settings = MethodSettings(n_steps=16)
        >>> summary = explain_dataset(settings.load_model(), "pets", "maps", settings)
        >>> summary.explained
        2
        >>> open_maps("maps")["cats/chelsea.png"].shape
        torch.Size([1, 7, 7])
    """
    settings = (settings or MethodSettings()).for_model(bundle)
    options = options or JobOptions()
    if method not in METHODS:
        raise ValueError(
            f"method: expected one of {', '.join(METHODS)}, got {method!r}"
        )
    source, folder = Path(source), Path(out)
    identity = folder_identity(folder)
    if identity is not None and identity == folder_identity(source):
        raise ValueError(
            f"out: {os.fspath(out)!r} is the source folder; choose another folder "
            "(a new subfolder of it works: it is not scanned for images)"
        )
    task_target = _checked_task_target(bundle, task_target)
    if items is None:
        items = [ImageItem(key) for key in find_images(source, exclude=folder)]
    targets = _checked_targets(items, source, folder)
    rank, world_size = distributed.rank_and_world_size()
    stored = _stored_settings(bundle, settings, method, task_target, targets_from)
    with contextlib.ExitStack() as lock:
        run_id = _open_on_rank_zero(lock, folder, stored, source, targets, options)
        done = output_folder.done_keys(folder)
        distributed.barrier()  # every rank has read the indexes before any writes
        remaining = [p for p, item in enumerate(items) if item.key not in done]
        pending = remaining[rank::world_size]
        dataset = ImageFileDataset(
            source, items, InputAndBaseline.for_model(bundle, settings.baseline)
        )
        prepare = (
            classification_preparer(bundle.model)
            if task_target is None
            else task_preparer(bundle, task_target)
        )
        failed, unexplained, seconds = explain_into_shards(
            Pipeline(bundle, METHODS[method], settings, prepare),
            Subset(dataset, pending),
            ShardWriter(folder, rank, run_id, stored, source, options.shard_size),
            images_per_batch=options.images_per_batch,
            workers=options.workers,
            pin_memory=bundle.device.type == "cuda",
            progress=f"rank 0 of {world_size}" if world_size > 1 else "explaining",
            show_progress=options.progress and rank == 0,
        )
        distributed.barrier()  # every rank's index is complete
        if rank == 0:
            output_folder.merge_indexes(folder, stored, source)
    return RunSummary(
        explained=len(pending) - len(failed) - len(unexplained),
        skipped=len(items) - len(remaining),
        failed=failed,
        seconds=seconds,
        rank=rank,
        world_size=world_size,
        unexplained=unexplained,
    )


def _stored_settings(
    bundle: ModelBundle,
    settings: MethodSettings,
    method: str,
    task_target: TaskTarget | None,
    targets_from: str | None,
) -> dict[str, Any]:
    """What the maps depend on, as the index stores it."""
    return {
        "model": bundle.name,
        "layer": bundle.layer_name,
        "attribution": method,
        "n_steps": settings.n_steps,
        "method": settings.method,
        "baseline": settings.baseline,
        "model_sha256": model_digest(bundle.model),
        "task": bundle.task,
        "task_target": task_target and task_target.describe(),
        "target": targets_from,
    }


def _checked_task_target(
    bundle: ModelBundle, task_target: TaskTarget | None
) -> TaskTarget | None:
    """The task options to use: None for a classifier, checked otherwise."""
    from captum_igcam.app.task_settings import TaskTarget

    if bundle.task == "classification":
        if task_target is not None:
            raise ValueError(
                f"task_target: {bundle.name!r} is a classifier; a region or box "
                "is for segmentation models and detectors"
            )
        return None
    task_target = task_target or TaskTarget()
    task_target.check_task(bundle.task)
    return task_target


def _checked_targets(
    items: Sequence[ImageItem], source: Path, folder: Path
) -> dict[str, int]:
    """Key -> target of each item; refuses keys that are not plain relative
    paths, repeated keys and keys inside ``out``."""
    targets: dict[str, int] = {}
    inside = None
    with contextlib.suppress(ValueError):
        inside = folder.resolve().relative_to(source.resolve()).as_posix()
    for item in items:
        if not item.key or item.key.startswith("/") or ".." in item.key.split("/"):
            raise ValueError(
                f"items: expected keys relative to the source folder, without "
                f"'..', got {item.key!r}"
            )
        if item.key in targets:
            raise ValueError(f"items: the key {item.key!r} appears twice")
        if inside is not None and (item.key + "/").startswith(inside + "/"):
            raise ValueError(
                f"items: {item.key!r} lies in the output folder "
                f"{str(folder)!r}; the job does not explain its own folder"
            )
        targets[item.key] = item.target
    return targets


def _open_on_rank_zero(
    lock: contextlib.ExitStack,
    folder: Path,
    stored: dict[str, Any],
    source: Path,
    targets: dict[str, int],
    options: JobOptions,
) -> str:
    """Rank 0 locks the folder (until ``lock`` closes) and makes it ready;
    every rank gets the run id, or rank 0's error; rank 0 prints its notes."""
    opened: tuple[Exception | None, str, list[str]] = (None, "", [])
    rank = distributed.rank_and_world_size()[0]
    if rank == 0:
        # one lock for the whole run: its ranks never block each other
        try:
            folder.mkdir(parents=True, exist_ok=True)
            lock.enter_context(output_folder.lock_output(folder))
            notes = output_folder.prepare_output(
                folder, stored, source, targets, options.overwrite
            )
            (folder / SHARD_FOLDER).mkdir(exist_ok=True)
            opened = (None, output_folder.new_run_id(), notes)
        except Exception as error:  # noqa: BLE001 - raised on every rank below
            opened = (error, "", [])
    problem, run_id, notes = distributed.from_rank_zero(opened)
    if problem is not None:
        raise problem
    for note in notes if rank == 0 else ():
        print(f"captum-igcam: note: {note}", file=sys.stderr)
    return run_id
