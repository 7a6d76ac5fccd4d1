"""Integrated Grad-CAM maps for a whole image folder, in resumable shards.

:func:`explain_dataset` streams an :class:`ImageFileDataset` through a
``torch.utils.data.DataLoader``, explains each batch with an
:class:`~captum_igcam.IntegratedLayerGradCam`, and writes the maps in shards
of ``shard_size`` images (the format, its writer and its reader are
:mod:`captum_igcam.dataset_job.maps_io`).

Speed: images are read, decoded and preprocessed in ``DataLoader`` workers
(with their file stamps), batches are copied to a GPU from pinned memory
without waiting, targets and probabilities stay tensors on the device, and
the maps are handed to the shard writer's background thread, which waits
for their copy to the CPU and writes the shards: the loop that feeds the
accelerator does no per-image Python work and never waits for the disk.

Resuming: after every shard, the rank's index is rewritten atomically, so an
interrupted run loses at most the shard in progress, and a new run skips the
images any index already lists, unless the image file changed since (its
size or modification time differ from those recorded): then it is
explained again. Settings that change the maps and the resolved source
folder are stored in the index; a run with other settings or another
source folder refuses to add to the folder unless asked to overwrite it.

Concurrency: a run holds the folder's lock (:func:`maps_io.lock_output`,
taken by rank 0 for all ranks of a distributed run) from before it reads
the folder until after the merge, so a second run on the same folder stops
at once with an error instead of writing beside it (the merge deletes the
shards no index lists, which would include a concurrent run's newest).

Distribution: when ``torch.distributed`` is initialised (e.g. under
``torchrun``), rank ``r`` of ``K`` explains images ``r, r + K, r + 2K, ...``
of those no index lists yet, writes its own shards and index, and rank 0
merges the indexes (and deletes shards no index lists) once all ranks are
done. The output folder must then be shared by all ranks (a network file
system when there are several nodes; ``flock`` works across NFS clients
on Linux since 2.6.12).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch.utils.data import DataLoader, Dataset, Subset

from captum_igcam import IntegratedLayerGradCam, LayerSpaceIntegratedGradCam
from captum_igcam.app.images import ImageLoadError, load_image
from captum_igcam.app.settings import check_positive_int
from captum_igcam.dataset_job import distributed, maps_io
from captum_igcam.dataset_job.maps_io import FileStamp, OutputMismatchError
from captum_igcam.reshapes import ReshapeTransform

__all__ = [
    "PREDICTED",
    "ImageFileDataset",
    "ImageItem",
    "OutputMismatchError",
    "RunSummary",
    "explain_dataset",
    "find_images",
    "model_digest",
]

#: ``ImageItem.target`` meaning "explain the model's top-1 class".
PREDICTED = -1


@dataclass(frozen=True)
class ImageItem:
    """One image to explain.

    Args:
        key (str): Path relative to the source folder, ``/``-separated.
        target (int): Class to explain, or :data:`PREDICTED` for the top-1.
    """

    key: str
    target: int = PREDICTED


def find_images(source: str | os.PathLike[str]) -> list[str]:
    """List the images of a folder, as sorted keys relative to it.

    A VOC-format directory (with ``JPEGImages/`` and ``Annotations/``) gives
    the files of ``JPEGImages/``; any other folder gives every file with an
    image extension, recursively (so a torchvision ``ImageFolder`` layout,
    ``SOURCE/<class>/<image>``, gives ``<class>/<image>`` keys).

    Args:
        source (str or os.PathLike): The folder.

    Returns:
        list[str]: Keys such as ``"cats/chelsea.png"`` or
        ``"JPEGImages/2007_000027.jpg"``, sorted.

    Raises:
        ValueError: If ``source`` is not a directory or holds no image.

    Example::

        >>> find_images("pets")
        ['cats/chelsea.png', 'dogs/rex.jpg']
    """
    from torchvision.datasets.folder import IMG_EXTENSIONS

    root = Path(source)
    if not root.is_dir():
        raise ValueError(f"source: expected a directory, got {os.fspath(source)!r}")
    is_voc = (root / "JPEGImages").is_dir() and (root / "Annotations").is_dir()
    searched = root / "JPEGImages" if is_voc else root
    keys = sorted(
        path.relative_to(root).as_posix()
        for path in searched.rglob("*")
        if path.suffix.lower() in IMG_EXTENSIONS and path.is_file()
    )
    if not keys:
        raise ValueError(
            f"source: no images ({', '.join(IMG_EXTENSIONS)}) in "
            f"{os.fspath(searched)!r}"
        )
    return keys


class _Example(NamedTuple):
    key: str
    stamp: FileStamp | None
    inputs: torch.Tensor | None
    baseline: torch.Tensor | None
    target: int
    error: str | None


class _Batch(NamedTuple):
    keys: list[str]
    stamps: list[FileStamp]
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
        """Item ``position`` as ``(key, stamp, inputs, baseline, target, error)``.

        ``stamp`` is the file's size and modification time, read before the
        file. When the image cannot be read, ``inputs`` and ``baseline`` are
        None and ``error`` says why.
        """
        item = self.items[position]
        path = self.root / item.key
        stamp = maps_io.file_stamp(path)
        try:
            image = load_image(path)
        except ImageLoadError as error:
            return _Example(item.key, stamp, None, None, item.target, str(error))
        inputs, baseline = self.transform(image)
        return _Example(item.key, stamp, inputs, baseline, item.target, None)


def _collate(examples: list[_Example]) -> _Batch:
    """Stack a batch in the loader's worker (so the main loop does not)."""
    loaded = [example for example in examples if example.error is None]
    return _Batch(
        keys=[example.key for example in loaded],
        stamps=[example.stamp for example in loaded],
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
    """

    explained: int
    skipped: int
    failed: list[tuple[str, str]]
    seconds: float
    rank: int
    world_size: int

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


def explain_dataset(
    explainer: IntegratedLayerGradCam | LayerSpaceIntegratedGradCam,
    dataset: ImageFileDataset,
    out: str | os.PathLike[str],
    settings: Mapping[str, Any],
    *,
    n_steps: int = 50,
    method: str = "gausslegendre",
    internal_batch_size: int | None = None,
    reshape_transform: ReshapeTransform | None = None,
    batch_size: int = 8,
    num_workers: int = 0,
    shard_size: int = 256,
    overwrite: bool = False,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> RunSummary:
    r"""Explain every image of a dataset and store the maps in shards.

    For each batch, one forward pass gives the softmax probabilities (the
    model must return logits), then ``explainer.attribute`` computes the
    maps of each image's target class. Call it on every rank when
    ``torch.distributed`` is initialised; see the module's description.

    Args:
        explainer (IntegratedLayerGradCam or LayerSpaceIntegratedGradCam):
                    Wraps the model (on ``device``, in eval mode) and the
                    layer to explain; its class is stored in the settings.
        dataset (ImageFileDataset): The images; keys must be unique.
        out (str or os.PathLike): Output folder (created if missing).
        settings (Mapping[str, Any]): JSON-serialisable description of what
                    else the maps depend on (model name, layer, baseline,
                    target rule, ...). ``n_steps``, ``method`` and a digest of
                    the weights of the model behind ``explainer`` are added
                    to it. A folder made with
                    other settings is refused unless ``overwrite``.
        n_steps (int, optional): Path points per map.
                    Default: 50
        method (str, optional): Captum approximation method.
                    Default: "gausslegendre"
        internal_batch_size (int, optional): Most examples x path points per
                    forward pass, to bound memory; the maps do not depend on
                    it. None evaluates a whole batch's path at once.
                    Default: None
        reshape_transform (ReshapeTransform, optional): How the layer's
                    tensor maps to ``(N, channels, h, w)`` (a ViT's or Swin's
                    layer; see :mod:`captum_igcam.reshapes`); None for CNNs.
                    Only ``IntegratedLayerGradCam`` takes one.
                    Default: None
        batch_size (int, optional): Images per ``DataLoader`` batch.
                    Default: 8
        num_workers (int, optional): ``DataLoader`` worker processes that
                    read and preprocess images.
                    Default: 0
        shard_size (int, optional): Images per shard file.
                    Default: 256
        overwrite (bool, optional): Delete the maps and indexes already in
                    ``out`` (only files this function writes) and start
                    afresh. Without it, images whose file changed since its
                    map was written are explained again.
                    Default: False
        device (str or torch.device, optional): Where batches are sent;
                    memory is pinned when it is a CUDA device.
                    Default: "cpu"
        progress (bool, optional): Show a progress bar (rank 0 only) with
                    images/s and the estimated time left.
                    Default: True

    Returns:
        RunSummary: What this rank did.

    Raises:
        OutputMismatchError: If ``out`` holds maps made with other settings
                    or from another source folder, and ``overwrite`` is False.
        OutputLockedError: If another run is writing to ``out``.

    Example::

        >>> bundle = load_model()
        >>> explainer = IntegratedLayerGradCam(bundle.model, bundle.layer())
        >>> def zero_baseline(image):
        ...     inputs = bundle.preprocess(image)
        ...     return inputs, torch.zeros_like(inputs)
        >>> items = [ImageItem(key) for key in find_images("pets")]
        >>> dataset = ImageFileDataset("pets", items, zero_baseline)
        >>> settings = {"model": bundle.name, "baseline": "zero"}
        >>> explain_dataset(explainer, dataset, "maps", settings, n_steps=16).explained
        2
        >>> open_maps("maps")["cats/chelsea.png"].shape
        torch.Size([1, 7, 7])
    """
    check_positive_int("n_steps", n_steps)
    check_positive_int("batch_size", batch_size)
    check_positive_int("shard_size", shard_size)
    if num_workers < 0:
        raise ValueError(f"num_workers: expected 0 or more, got {num_workers}")
    rank, world_size = distributed.rank_and_world_size()
    reshape_options = (
        {} if reshape_transform is None else {"reshape_transform": reshape_transform}
    )
    folder = Path(out)
    model = getattr(explainer.forward_func, "__self__", explainer.forward_func)
    model = model if isinstance(model, torch.nn.Module) else None
    full_settings = json.loads(
        json.dumps(
            {
                **settings,
                "n_steps": n_steps,
                "method": method,
                "explainer": type(explainer).__name__,
                "model_sha256": None if model is None else model_digest(model),
            }
        )
    )
    with contextlib.ExitStack() as lock:
        problem = None
        if rank == 0:  # one lock for the whole run: its ranks never block each other
            try:
                _open_output(lock, folder, full_settings, dataset.root, overwrite)
            except Exception as error:  # noqa: BLE001 - raised on every rank below
                problem = error
        problem = distributed.from_rank_zero(problem)
        if problem is not None:
            raise problem
        done = set()
        for index_path in maps_io.rank_index_paths(folder):
            done.update(maps_io.read_index(index_path)["images"])
        distributed.barrier()  # every rank has read the indexes before any writes
        remaining = [p for p, item in enumerate(dataset.items) if item.key not in done]
        pending = remaining[rank::world_size]
        failed, seconds = _explain_into_shards(
            explainer,
            Subset(dataset, pending),
            maps_io.ShardWriter(folder, rank, full_settings, dataset.root, shard_size),
            torch.device(device),
            batch_size=batch_size,
            num_workers=num_workers,
            progress=f"rank 0 of {world_size}" if world_size > 1 else "explaining",
            show_progress=progress and rank == 0,
            n_steps=n_steps,
            method=method,
            internal_batch_size=internal_batch_size,
            **reshape_options,
        )
        distributed.barrier()  # every rank's index is complete
        if rank == 0:
            maps_io.merge_indexes(folder, full_settings, dataset.root)
    return RunSummary(
        explained=len(pending) - len(failed),
        skipped=len(dataset) - len(remaining),
        failed=failed,
        seconds=seconds,
        rank=rank,
        world_size=world_size,
    )


def _open_output(
    lock: contextlib.ExitStack,
    folder: Path,
    settings: Mapping[str, Any],
    source: Path,
    overwrite: bool,
) -> None:
    """Lock the folder (until ``lock`` closes) and make it ready to resume."""
    folder.mkdir(parents=True, exist_ok=True)
    lock.enter_context(maps_io.lock_output(folder))
    if overwrite:
        maps_io.remove_outputs(folder)
    else:
        maps_io.check_compatible(folder, settings, source)
        maps_io.forget_changed_images(folder, source)
    (folder / maps_io.SHARD_FOLDER).mkdir(exist_ok=True)


def _explain_into_shards(
    explainer: IntegratedLayerGradCam | LayerSpaceIntegratedGradCam,
    dataset: Dataset,
    writer: maps_io.ShardWriter,
    device: torch.device,
    *,
    batch_size: int,
    num_workers: int,
    progress: str,
    show_progress: bool,
    **attribute_kwargs: Any,
) -> tuple[list[tuple[str, str]], float]:
    """The loop: returns the unreadable images and its wall time."""
    from tqdm import tqdm

    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        num_workers=num_workers,
        collate_fn=_collate,
        pin_memory=device.type == "cuda",
    )
    failed: list[tuple[str, str]] = []
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
                writer.add(
                    batch.keys,
                    batch.stamps,
                    *_explain_batch(explainer, batch, device, **attribute_kwargs),
                )
            bar.update(len(batch.keys) + len(batch.failed))
    return failed, time.perf_counter() - started


def _explain_batch(
    explainer: IntegratedLayerGradCam | LayerSpaceIntegratedGradCam,
    batch: _Batch,
    device: torch.device,
    **attribute_kwargs: Any,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.cuda.Event | None]:
    """Maps, (predicted, target) and their probabilities, copied to the CPU
    without waiting; the event (on CUDA) marks the end of the copies."""
    inputs = batch.inputs.to(device, non_blocking=True)
    baselines = batch.baselines.to(device, non_blocking=True)
    requested = batch.targets.to(device, non_blocking=True)
    with torch.no_grad():
        probabilities = explainer.forward_func(inputs).float().softmax(dim=1)
    top_probability, predicted = probabilities.max(dim=1)
    targets = torch.where(requested == PREDICTED, predicted, requested)
    maps = explainer.attribute(
        inputs, target=targets, baselines=baselines, **attribute_kwargs
    )
    if not isinstance(maps, torch.Tensor):
        raise ValueError(
            "layer: expected a layer with one output tensor, got a layer "
            "returning a tuple; explain one of its tensors' modules instead"
        )
    target_probability = probabilities.gather(1, targets[:, None])[:, 0]
    copies = [
        tensor.detach().to("cpu", non_blocking=True)
        for tensor in (
            maps.float(),
            torch.stack([predicted, targets], dim=1),
            torch.stack([top_probability, target_probability], dim=1),
        )
    ]
    ready = None
    if device.type == "cuda":
        ready = torch.cuda.Event()
        ready.record()
    return (*copies, ready)
