"""Integrated Grad-CAM maps for a whole image folder, in resumable shards.

:func:`explain_dataset` streams the images of a folder through a
``torch.utils.data.DataLoader`` and explains each batch with a method of
the registry (:data:`captum_igcam.app.methods.METHODS`, built from a
:class:`~captum_igcam.app.settings.MethodSettings` exactly as ``explain``
and ``benchmark`` build it), writing the maps in shards of ``shard_size``
images. The folder's format is :mod:`captum_igcam.dataset_job.index`, its
writer :mod:`~captum_igcam.dataset_job.shard_writer`, its reader
:mod:`~captum_igcam.dataset_job.maps_io`.

Speed: images are read, decoded and preprocessed in ``DataLoader`` workers
(with their file stamps), batches are copied to a GPU from pinned memory
without waiting, targets and probabilities stay tensors on the device, and
the maps are handed to the shard writer's background thread, which waits
for their copy to the CPU and writes the shards: the loop that feeds the
accelerator does no per-image Python work and never waits for the disk.

Integrity (see ``docs/explain-dataset.md``): every shard name is unique to
its run and never written twice; an index lists a shard only once the
shard is on the disk, with its size and SHA-256; a resumed run verifies
every shard it skips and explains again what is damaged; the job deletes
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
import functools
import hashlib
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import torch
from torch.utils.data import DataLoader, Dataset, Subset

from captum_igcam.app.baselines import InputAndBaseline
from captum_igcam.app.images import ImageLoadError, load_image
from captum_igcam.app.methods import METHODS
from captum_igcam.app.settings import MethodSettings, check_positive_int
from captum_igcam.dataset_job import distributed, output_folder
from captum_igcam.dataset_job.index import SHARD_FOLDER, FileStamp, file_stamp
from captum_igcam.dataset_job.output_folder import (
    PREDICTED,
    OutputLockedError,
    OutputMismatchError,
)
from captum_igcam.dataset_job.shard_writer import ShardWriter

if TYPE_CHECKING:
    from captum_igcam.app.methods import MapFunction, Method
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


@dataclass(frozen=True)
class ImageItem:
    """One image to explain.

    Args:
        key (str): Path relative to the source folder, ``/``-separated.
        target (int): Class to explain, or :data:`PREDICTED` for the top-1
            (a segmentation model's class on most pixels; a detector's
            detection of any label).
    """

    key: str
    target: int = PREDICTED


def find_images(
    source: str | os.PathLike[str], exclude: str | os.PathLike[str] | None = None
) -> list[str]:
    """List the images of a folder, as sorted keys relative to it.

    A VOC-format directory (with ``JPEGImages/`` and ``Annotations/``) gives
    the files of ``JPEGImages/``; any other folder gives every file with an
    image extension, recursively (so a torchvision ``ImageFolder`` layout,
    ``SOURCE/<class>/<image>``, gives ``<class>/<image>`` keys). Links to
    folders are not followed, and the folder ``exclude`` (the output folder,
    found by identity, so also under another name) is never entered.

    Args:
        source (str or os.PathLike): The folder.
        exclude (str or os.PathLike, optional): A folder whose files are not
            listed, wherever it lies inside ``source``.
            Default: None

    Returns:
        list[str]: Keys such as ``"cats/chelsea.png"`` or
        ``"JPEGImages/2007_000027.jpg"``, sorted.

    Raises:
        ValueError: If ``source`` is not a directory or holds no image.

    Example::

        >>> find_images("pets", exclude="pets/maps")
        ['cats/chelsea.png', 'dogs/rex.jpg']
    """
    from torchvision.datasets.folder import IMG_EXTENSIONS

    root = Path(source)
    if not root.is_dir():
        raise ValueError(f"source: expected a directory, got {os.fspath(source)!r}")
    is_voc = (root / "JPEGImages").is_dir() and (root / "Annotations").is_dir()
    searched = root / "JPEGImages" if is_voc else root
    skipped = _identity(exclude) if exclude is not None else None
    keys = []
    for folder, subfolders, files in os.walk(searched):
        subfolders[:] = [
            name for name in subfolders if _identity(Path(folder, name)) != skipped
        ]
        keys.extend(
            Path(folder, name).relative_to(root).as_posix()
            for name in files
            if Path(name).suffix.lower() in IMG_EXTENSIONS
            and Path(folder, name).is_file()
        )
    if not keys:
        raise ValueError(
            f"source: no images ({', '.join(IMG_EXTENSIONS)}) in "
            f"{os.fspath(searched)!r}"
        )
    return sorted(keys)


def _identity(path: str | os.PathLike[str]) -> tuple[int, int] | None:
    """A folder's (device, inode), or None if it does not exist."""
    try:
        status = os.stat(path)
    except OSError:
        return None
    return status.st_dev, status.st_ino


class _Example(NamedTuple):
    key: str
    stamp: FileStamp | None
    size: tuple[int, int] | None  # the photo's (H, W)
    inputs: torch.Tensor | None
    baseline: torch.Tensor | None
    target: int
    error: str | None


class _Batch(NamedTuple):
    keys: list[str]
    stamps: list[FileStamp]
    sizes: list[tuple[int, int]]  # the photos' (H, W)
    inputs: torch.Tensor | None  # (B, C, S, S), None when every image failed
    baselines: torch.Tensor | None
    targets: torch.Tensor
    failed: list[tuple[str, str]]  # (key, error)


class ImageFileDataset(Dataset):
    """Images of a folder, preprocessed into model inputs and baselines.

    Args:
        root (str or os.PathLike): The source folder.
        items (Sequence[ImageItem]): Images to serve, by key.
        transform (Callable): Turns a PIL RGB image into ``(inputs,
            baseline)``, two CPU tensors of the model's input shape without
            the batch dimension (it runs in the loader's workers).

    Example::

        >>> bundle = load_model()
        >>> def black_baseline(image):
        ...     inputs = bundle.preprocess(image)
        ...     return inputs, bundle.preprocess(Image.new("RGB", image.size))
        >>> dataset = ImageFileDataset(
        ...     "pets", [ImageItem(k) for k in find_images("pets")], black_baseline)
        >>> dataset[0].inputs.shape
        torch.Size([3, 224, 224])
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        items: Sequence[ImageItem],
        transform: Callable[[Any], tuple[torch.Tensor, torch.Tensor]],
    ) -> None:
        self.root = Path(root)
        self.items = list(items)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, position: int) -> _Example:
        """Item ``position`` as ``(key, stamp, size, inputs, baseline, target,
        error)``.

        ``stamp`` is the file's size and modification time, read before the
        file; ``size`` the photo's ``(H, W)``. When the image cannot be read,
        ``size``, ``inputs`` and ``baseline`` are None and ``error`` says why.
        """
        item = self.items[position]
        path = self.root / item.key
        stamp = file_stamp(path)
        try:
            image = load_image(path)
        except ImageLoadError as error:
            return _Example(item.key, stamp, None, None, None, item.target, str(error))
        inputs, baseline = self.transform(image)
        size = (image.height, image.width)
        return _Example(item.key, stamp, size, inputs, baseline, item.target, None)


def _collate(examples: list[_Example]) -> _Batch:
    """Stack a batch in the loader's worker (so the main loop does not)."""
    loaded = [example for example in examples if example.error is None]
    return _Batch(
        keys=[example.key for example in loaded],
        stamps=[example.stamp for example in loaded],
        sizes=[example.size for example in loaded],
        inputs=torch.stack([e.inputs for e in loaded]) if loaded else None,
        baselines=torch.stack([e.baseline for e in loaded]) if loaded else None,
        targets=torch.tensor([example.target for example in loaded]),
        failed=[(e.key, e.error) for e in examples if e.error is not None],
    )


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

    For a classifier, one forward pass per batch gives the softmax
    probabilities (the model must return logits), then the registry's
    ``method``, built with ``settings`` for the bundle's model and layer,
    computes the maps of each image's target class. For a segmentation
    model or a detector (``bundle.task``), each image is explained as
    ``captum-igcam explain --task`` explains it:
    :func:`captum_igcam.app.tasks.prepare` binds its region or box to the
    model, the method is built for that
    bound model, and the index records what was explained; an image with
    nothing to explain (no pixel of the class, no such detection) is
    reported, listed under ``unexplained`` and not tried again while its
    file is unchanged. Call it on every rank when ``torch.distributed`` is
    initialised; see the module's description.

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
    if _identity(folder) is not None and _identity(folder) == _identity(source):
        raise ValueError(
            f"out: {os.fspath(out)!r} is the source folder; choose another folder "
            "(a new subfolder of it works: it is not scanned for images)"
        )
    task_target = _checked_task_target(bundle, task_target)
    if items is None:
        items = [ImageItem(key) for key in find_images(source, exclude=folder)]
    targets = _checked_targets(items, source, folder)
    rank, world_size = distributed.rank_and_world_size()
    stored = {
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
    with contextlib.ExitStack() as lock:
        opened: tuple[Exception | None, str, list[str]] = (None, "", [])
        if rank == 0:  # one lock for the whole run: its ranks never block each other
            try:
                opened = _open_output(
                    lock, folder, stored, source, targets, options.overwrite
                )
            except Exception as error:  # noqa: BLE001 - raised on every rank below
                opened = (error, "", [])
        problem, run_id, notes = distributed.from_rank_zero(opened)
        if problem is not None:
            raise problem
        for note in notes if rank == 0 else ():
            print(f"captum-igcam: note: {note}", file=sys.stderr)
        done = output_folder.done_keys(folder)
        distributed.barrier()  # every rank has read the indexes before any writes
        remaining = [p for p, item in enumerate(items) if item.key not in done]
        pending = remaining[rank::world_size]
        dataset = ImageFileDataset(
            source, items, InputAndBaseline.for_model(bundle, settings.baseline)
        )
        if task_target is None:
            explain_batch = functools.partial(
                _explain_batch,
                bundle.model,
                METHODS[method].build(bundle.model, bundle.layer(), settings),
                bundle.device,
            )
        else:
            explain_batch = functools.partial(
                _explain_task_batch, bundle, METHODS[method], settings, task_target
            )
        failed, unexplained, seconds = _explain_into_shards(
            explain_batch,
            Subset(dataset, pending),
            ShardWriter(folder, rank, run_id, stored, source, options.shard_size),
            options=options,
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


def _open_output(
    lock: contextlib.ExitStack,
    folder: Path,
    stored: dict[str, Any],
    source: Path,
    targets: dict[str, int],
    overwrite: bool,
) -> tuple[None, str, list[str]]:
    """Lock the folder (until ``lock`` closes), make it ready; a new run id."""
    folder.mkdir(parents=True, exist_ok=True)
    lock.enter_context(output_folder.lock_output(folder))
    notes = output_folder.prepare_output(folder, stored, source, targets, overwrite)
    (folder / SHARD_FOLDER).mkdir(exist_ok=True)
    return None, output_folder.new_run_id(), notes


#: ``explain(batch, writer)``: explains a batch, hands it to the writer and
#: returns the ``(key, reason)`` of the images with nothing to explain.
BatchExplainer = Callable[[_Batch, ShardWriter], list[tuple[str, str]]]


def _explain_into_shards(
    explain_batch: BatchExplainer,
    dataset: Dataset,
    writer: ShardWriter,
    *,
    options: JobOptions,
    pin_memory: bool,
    progress: str,
    show_progress: bool,
) -> tuple[list[tuple[str, str]], list[tuple[str, str]], float]:
    """The loop: returns the unreadable images, those with nothing to
    explain, and its wall time."""
    from tqdm import tqdm

    loader = DataLoader(
        dataset,
        batch_size=options.images_per_batch,
        num_workers=options.workers,
        collate_fn=_collate,
        pin_memory=pin_memory,
    )
    failed: list[tuple[str, str]] = []
    unexplained: list[tuple[str, str]] = []
    started = time.perf_counter()
    with (
        writer,
        tqdm(
            total=len(dataset), unit="image", desc=progress, disable=not show_progress
        ) as bar,
    ):
        for batch in loader:
            for key, error in batch.failed:
                failed.append((key, error))
                bar.write(f"captum-igcam: error: {error}", file=sys.stderr)
            if batch.inputs is not None:
                for key, reason in explain_batch(batch, writer):
                    unexplained.append((key, reason))
                    bar.write(
                        f"captum-igcam: note: {key}: nothing to explain: {reason}",
                        file=sys.stderr,
                    )
            bar.update(len(batch.keys) + len(batch.failed))
    return failed, unexplained, time.perf_counter() - started


def _explain_batch(
    model: torch.nn.Module,
    maps: MapFunction,
    device: torch.device,
    batch: _Batch,
    writer: ShardWriter,
) -> list[tuple[str, str]]:
    """A classifier's batch: maps, (predicted, target) and their
    probabilities, handed to the writer while their copy to the CPU runs
    (the event, on CUDA, marks its end); every image has a map."""
    inputs = batch.inputs.to(device, non_blocking=True)
    baselines = batch.baselines.to(device, non_blocking=True)
    requested = batch.targets.to(device, non_blocking=True)
    with torch.no_grad():
        probabilities = model(inputs).float().softmax(dim=1)
    top_probability, predicted = probabilities.max(dim=1)
    targets = torch.where(requested == PREDICTED, predicted, requested)
    layer_maps = maps(inputs, targets, baselines)
    if not isinstance(layer_maps, torch.Tensor):
        raise ValueError(
            "layer: expected a layer with one output tensor, got a layer "
            "returning a tuple; explain one of its tensors' modules instead"
        )
    target_probability = probabilities.gather(1, targets[:, None])[:, 0]
    copies = [
        tensor.detach().to("cpu", non_blocking=True)
        for tensor in (
            layer_maps.float(),
            torch.stack([predicted, targets], dim=1),
            torch.stack([top_probability, target_probability], dim=1),
        )
    ]
    ready = None
    if device.type == "cuda":
        ready = torch.cuda.Event()
        ready.record()
    writer.add(batch.keys, batch.stamps, *copies, ready)
    return []


def _explain_task_batch(
    bundle: ModelBundle,
    method: Method,
    settings: MethodSettings,
    choice: TaskTarget,
    batch: _Batch,
    writer: ShardWriter,
) -> list[tuple[str, str]]:
    """A segmentation or detection batch, image by image as ``explain``
    explains a photo: the region or box bound to the model, the method built
    for that bound model, the record of what was explained."""
    from captum_igcam.app import tasks

    device = bundle.device
    inputs = batch.inputs.to(device, non_blocking=True)
    baselines = batch.baselines.to(device, non_blocking=True)
    layer = bundle.layer()
    kept, layer_maps, records, unexplained = [], [], [], []
    for row, key in enumerate(batch.keys):
        requested = int(batch.targets[row])
        one = slice(row, row + 1)
        try:
            prepared = tasks.prepare(
                bundle,
                inputs[one],
                batch.sizes[row],
                None if requested == PREDICTED else requested,
                choice,
            )
        except tasks.NothingToExplainError as error:
            writer.add_unexplained(key, batch.stamps[row], str(error), requested)
            unexplained.append((key, str(error)))
            continue
        explain_maps = method.build(prepared.forward, layer, settings)
        layer_map = explain_maps(inputs[one], prepared.target, baselines[one])
        layer_maps.append(layer_map.detach().float().cpu())
        kept.append(row)
        records.append(
            {
                "target": prepared.record["target_index"],
                "requested": requested,
                "explained": prepared.record,
            }
        )
    if kept:
        writer.add_explained(
            [batch.keys[row] for row in kept],
            [batch.stamps[row] for row in kept],
            torch.cat(layer_maps),
            records,
        )
    return unexplained
