"""Integrated Grad-CAM maps for a whole image folder, in resumable shards.

:func:`explain_dataset` streams an :class:`ImageFileDataset` through a
``torch.utils.data.DataLoader``, explains each batch with an
:class:`~captum_igcam.IntegratedLayerGradCam`, and writes the maps in shards
of ``shard_size`` images (the format is described in
:mod:`captum_igcam.dataset_job.maps_io`).

Resuming: after every shard, the rank's index is rewritten atomically, so an
interrupted run loses at most the shard in progress, and a new run skips the
images any index already lists. Settings that change the maps are stored in
the index; a run with other settings refuses to add to the folder unless
asked to overwrite it.

Distribution: when ``torch.distributed`` is initialised (e.g. under
``torchrun``), rank ``r`` of ``K`` explains images ``r, r + K, r + 2K, ...``
of those no index lists yet, writes its own shards and index, and rank 0
merges the indexes (and deletes shards no index lists) once all ranks are
done. The output folder must then be shared by
all ranks (a network file system when there are several nodes).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, Subset

from captum_igcam import (
    IntegratedLayerGradCam,
    LayerSpaceIntegratedGradCam,
    _validation,
)
from captum_igcam.app import _atomic
from captum_igcam.app.images import ImageLoadError, load_image
from captum_igcam.dataset_job.maps_io import (
    INDEX_FORMAT,
    MERGED_INDEX_NAME,
    SHARD_FOLDER,
    rank_index_name,
    read_index,
)
from captum_igcam.reshapes import ReshapeTransform

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
    position: int
    inputs: torch.Tensor | None
    baseline: torch.Tensor | None
    target: int
    error: str | None


class _Batch(NamedTuple):
    positions: list[int]
    inputs: torch.Tensor | None  # (B, C, S, S), None when every image failed
    baselines: torch.Tensor | None
    targets: torch.Tensor
    failed: list[tuple[int, str]]


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
        """Item ``position`` as ``(position, inputs, baseline, target, error)``.

        When the image cannot be read, ``inputs`` and ``baseline`` are None
        and ``error`` says why.
        """
        item = self.items[position]
        try:
            image = load_image(self.root / item.key)
        except ImageLoadError as error:
            return _Example(position, None, None, item.target, str(error))
        inputs, baseline = self.transform(image)
        return _Example(position, inputs, baseline, item.target, None)


def _collate(examples: list[_Example]) -> _Batch:
    loaded = [example for example in examples if example.error is None]
    return _Batch(
        positions=[example.position for example in loaded],
        inputs=torch.stack([e.inputs for e in loaded]) if loaded else None,
        baselines=torch.stack([e.baseline for e in loaded]) if loaded else None,
        targets=torch.tensor([example.target for example in loaded]),
        failed=[(e.position, e.error) for e in examples if e.error is not None],
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


class OutputMismatchError(ValueError):
    """The output folder holds maps made with other settings."""


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
                    afresh.
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
                    and ``overwrite`` is False.

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
    _check_positive("n_steps", n_steps)
    _check_positive("batch_size", batch_size)
    _check_positive("shard_size", shard_size)
    if num_workers < 0:
        raise ValueError(f"num_workers: expected 0 or more, got {num_workers}")
    rank, world_size = _rank_and_world_size()
    reshape_options = (
        {} if reshape_transform is None else {"reshape_transform": reshape_transform}
    )
    folder = Path(out)
    model = _validation.owning_model(explainer.forward_func)
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
    if overwrite:
        if rank == 0:
            _remove_outputs(folder)
    else:
        _check_settings(folder, full_settings)
    _barrier(world_size)  # nobody reads the folder while rank 0 clears it

    (folder / SHARD_FOLDER).mkdir(parents=True, exist_ok=True)
    done = set().union(*(index["images"] for index in _rank_indexes(folder)))
    _barrier(world_size)  # every rank has read the same indexes
    remaining = [p for p, item in enumerate(dataset.items) if item.key not in done]
    pending = remaining[rank::world_size]
    writer = _ShardWriter(folder, rank, full_settings, dataset.root)
    device = torch.device(device)
    loader = DataLoader(
        Subset(dataset, pending),
        batch_size=batch_size,
        num_workers=num_workers,
        collate_fn=_collate,
        pin_memory=device.type == "cuda",
    )
    from tqdm import tqdm

    failed: list[tuple[str, str]] = []
    started = time.perf_counter()
    with tqdm(
        total=len(pending),
        unit="image",
        desc=f"rank 0 of {world_size}" if world_size > 1 else "explaining",
        disable=not progress or rank != 0,
    ) as bar:
        for batch in loader:
            for position, error in batch.failed:
                failed.append((dataset.items[position].key, error))
                bar.write(f"captum-igcam: error: {error}")
            if batch.inputs is not None:
                maps, records = _explain_batch(
                    explainer,
                    batch,
                    device,
                    n_steps=n_steps,
                    method=method,
                    internal_batch_size=internal_batch_size,
                    **reshape_options,
                )
                keys = [dataset.items[position].key for position in batch.positions]
                writer.add(keys, maps, records, shard_size)
            bar.update(len(batch.positions) + len(batch.failed))
        writer.flush()
    seconds = time.perf_counter() - started

    _barrier(world_size)  # every rank's index is complete
    if rank == 0:
        _merge_indexes(folder, full_settings, dataset.root)
    return RunSummary(
        explained=len(pending) - len(failed),
        skipped=len(dataset) - len(remaining),
        failed=failed,
        seconds=seconds,
        rank=rank,
        world_size=world_size,
    )


def _explain_batch(
    explainer: IntegratedLayerGradCam | LayerSpaceIntegratedGradCam,
    batch: _Batch,
    device: torch.device,
    **attribute_kwargs: Any,
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    inputs = batch.inputs.to(device, non_blocking=True)
    baselines = batch.baselines.to(device, non_blocking=True)
    with torch.no_grad():
        probabilities = explainer.forward_func(inputs).softmax(dim=1).cpu()
    predicted = probabilities.argmax(dim=1)
    targets = torch.where(batch.targets == PREDICTED, predicted, batch.targets)
    maps = explainer.attribute(
        inputs, target=targets.tolist(), baselines=baselines, **attribute_kwargs
    )
    if not isinstance(maps, torch.Tensor):
        raise ValueError(
            "layer: expected a layer with one output tensor, got a layer "
            "returning a tuple; explain one of its tensors' modules instead"
        )
    rows = torch.arange(len(targets))
    records = [
        {
            "predicted": int(top),
            "probability": float(top_probability),
            "target": int(target),
            "target_probability": float(target_probability),
        }
        for top, top_probability, target, target_probability in zip(
            predicted,
            probabilities[rows, predicted],
            targets,
            probabilities[rows, targets],
        )
    ]
    return maps.detach().float().cpu().numpy(), records


class _ShardWriter:
    """Buffers one rank's maps and writes them shard by shard."""

    def __init__(
        self, folder: Path, rank: int, settings: Mapping[str, Any], source: Path
    ) -> None:
        self.folder = folder
        self.rank = rank
        self.index_path = folder / rank_index_name(rank)
        self.index = (
            read_index(self.index_path)
            if self.index_path.is_file()
            else _new_index(settings, source)
        )
        self.shards_written = len({r["shard"] for r in self.index["images"].values()})
        self.keys: list[str] = []
        self.maps: list[np.ndarray] = []
        self.records: list[dict[str, Any]] = []

    def add(
        self,
        keys: list[str],
        maps: np.ndarray,
        records: list[dict[str, Any]],
        shard_size: int,
    ) -> None:
        self.keys.extend(keys)
        self.maps.extend(maps)
        self.records.extend(records)
        while len(self.keys) >= shard_size:
            self._write(shard_size)

    def flush(self) -> None:
        if self.keys:
            self._write(len(self.keys))

    def _write(self, count: int) -> None:
        name = f"{SHARD_FOLDER}/rank{self.rank}-{self.shards_written:05d}.npz"
        keys, self.keys = self.keys[:count], self.keys[count:]
        maps, self.maps = self.maps[:count], self.maps[count:]
        records, self.records = self.records[:count], self.records[count:]
        with _atomic.atomic_open(self.folder / name) as handle:
            np.savez(handle, maps=np.stack(maps), keys=np.array(keys))
        for row, (key, record) in enumerate(zip(keys, records)):
            self.index["images"][key] = {"shard": name, "row": row, **record}
        _atomic.atomic_write_json(self.index_path, self.index)
        self.shards_written += 1


def _new_index(settings: Mapping[str, Any], source: Path) -> dict[str, Any]:
    return {
        "format": INDEX_FORMAT,
        "settings": dict(settings),
        "source": str(source.resolve()),
        "images": {},
    }


def _rank_indexes(folder: Path) -> list[dict[str, Any]]:
    return [read_index(path) for path in sorted(folder.glob(rank_index_name("*")))]


def _check_settings(folder: Path, settings: Mapping[str, Any]) -> None:
    for index in _rank_indexes(folder):
        old = index["settings"]
        changed = sorted(
            name
            for name in set(old) | set(settings)
            if old.get(name) != settings.get(name)
        )
        if changed:
            differences = "; ".join(
                f"{name}: {old.get(name)!r} there, {settings.get(name)!r} now"
                for name in changed
            )
            raise OutputMismatchError(
                f"out: {str(folder)!r} holds maps made with other settings "
                f"({differences}); choose another folder or overwrite it"
            )


def _remove_outputs(folder: Path) -> None:
    shutil.rmtree(folder / SHARD_FOLDER, ignore_errors=True)
    for path in [folder / MERGED_INDEX_NAME, *folder.glob(rank_index_name("*"))]:
        path.unlink(missing_ok=True)


def _merge_indexes(folder: Path, settings: Mapping[str, Any], source: Path) -> None:
    merged = _new_index(settings, source)
    for index in _rank_indexes(folder):
        merged["images"].update(index["images"])
    merged["images"] = dict(sorted(merged["images"].items()))
    _atomic.atomic_write_json(folder / MERGED_INDEX_NAME, merged)
    # Shards (and temporary files) of interrupted runs that no index lists.
    listed = {record["shard"] for record in merged["images"].values()}
    for path in (folder / SHARD_FOLDER).iterdir():
        if path.relative_to(folder).as_posix() not in listed:
            path.unlink()


def _rank_and_world_size() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _barrier(world_size: int) -> None:
    if world_size > 1:
        dist.barrier()


def _check_positive(name: str, value: int) -> None:
    if not (isinstance(value, int) and value >= 1):
        raise ValueError(f"{name}: expected a positive integer, got {value!r}")
