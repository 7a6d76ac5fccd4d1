"""The per-example pipeline of the data-set job, for every task.

Each example of a batch goes through the same three steps:

1. **prepare** its target (:class:`Prepared`): the forward function to
   explain, the method's target and the record of what was explained. A
   classifier's forward function is the model itself and its target the
   predicted or requested class (one forward pass gives the whole batch's
   probabilities); a segmentation model's or a detector's is the model with
   the image's region or box bound, from
   :func:`captum_igcam.app.tasks.prepare`. An image with nothing to
   explain (no pixel of the class, no such detection, a ``--box`` that
   covers none of its pixels) is recorded as such and the run goes on;
2. **explain**: the registry's method, built for the forward function,
   computes the maps; examples that share a forward function (a
   classifier's batch) are explained together, in one call;
3. **record**: the maps, their source digests and records go to the shard
   writer, whose thread waits for their copy to the CPU.

:func:`explain_into_shards` feeds a ``DataLoader`` through the pipeline and
shows the progress per image.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from captum_igcam.dataset_job.shard_writer import ShardWriter
from captum_igcam.dataset_job.source_images import PREDICTED, Batch, collate

if TYPE_CHECKING:
    from captum_igcam.app.methods import MapFunction, Method
    from captum_igcam.app.models import ModelBundle
    from captum_igcam.app.settings import MethodSettings
    from captum_igcam.app.task_settings import TaskTarget


@dataclass(frozen=True)
class Prepared:
    """What to explain for some rows of a batch, sharing one forward function.

    Args:
        rows (slice): Rows of the batch (a view of its tensors, no copy).
        forward (nn.Module): The function to explain (the model, or the model
            with a region or box bound).
        target (torch.Tensor or int or None): The method's target for these
            rows (a class per row, one class, or None for a detection score).
        records (Callable): Each row's index record (JSON values), called by
            the shard writer once the maps' copies to the CPU are done.
    """

    rows: slice
    forward: nn.Module
    target: torch.Tensor | int | None
    records: Callable[[], Sequence[Mapping[str, Any]]]


@dataclass(frozen=True)
class Nothing:
    """A row of a batch with nothing to explain, and why.

    Args:
        row (int): Row of the batch.
        reason (str): Why (no pixel of the class, no such detection, ...).
    """

    row: int
    reason: str


#: Prepares a batch (on the device) into groups of rows and rows with nothing.
Preparer = Callable[[Batch, torch.Tensor], list["Prepared | Nothing"]]


def classification_preparer(model: nn.Module) -> Preparer:
    """A classifier's targets: the model, the predicted or requested class.

    One forward pass gives the batch's softmax probabilities (the model must
    return logits); the record holds the top-1 class, the target and their
    probabilities, read on the CPU by the writer's thread.
    """

    def prepare(batch: Batch, inputs: torch.Tensor) -> list[Prepared | Nothing]:
        requested = batch.targets.to(inputs.device, non_blocking=True)
        with torch.no_grad():
            probabilities = model(inputs).float().softmax(dim=1)
        top_probability, predicted = probabilities.max(dim=1)
        targets = torch.where(requested == PREDICTED, predicted, requested)
        target_probability = probabilities.gather(1, targets[:, None])[:, 0]
        classes = torch.stack([predicted, targets], dim=1).to("cpu", non_blocking=True)
        chances = torch.stack([top_probability, target_probability], dim=1).to(
            "cpu", non_blocking=True
        )

        def records() -> list[dict[str, Any]]:
            return [
                {
                    "predicted": top,
                    "probability": p_top,
                    "target": target,
                    "target_probability": p_target,
                }
                for (top, target), (p_top, p_target) in zip(
                    classes.tolist(), chances.tolist()
                )
            ]

        return [Prepared(slice(0, len(inputs)), model, targets, records)]

    return prepare


def task_preparer(bundle: ModelBundle, choice: TaskTarget) -> Preparer:
    """A segmentation model's or detector's targets, image by image, as
    ``captum-igcam explain --task`` prepares them."""
    from captum_igcam.app import tasks

    def prepare(batch: Batch, inputs: torch.Tensor) -> list[Prepared | Nothing]:
        prepared: list[Prepared | Nothing] = []
        for row in range(len(batch.keys)):
            requested = int(batch.targets[row])
            try:
                one = tasks.prepare(
                    bundle,
                    inputs[row : row + 1],
                    batch.sizes[row],
                    None if requested == PREDICTED else requested,
                    choice,
                )
            except tasks.NothingToExplainError as error:
                # No pixel of the class, no such detection, a box outside
                # this image or covering none of its pixels.
                prepared.append(Nothing(row, str(error)))
                continue
            record = {
                "target": one.record["target_index"],
                "requested": requested,
                "explained": one.record,
            }
            prepared.append(
                Prepared(
                    slice(row, row + 1), one.forward, one.target, lambda r=record: [r]
                )
            )
        return prepared

    return prepare


class Pipeline:
    """Explains batches example by example and hands the results to a writer.

    Args:
        bundle (ModelBundle): The model, its layer and device.
        method (Method): The registry's map method.
        settings (MethodSettings): Steps, approximation, baseline, batch size.
        prepare (Preparer): :func:`classification_preparer` or
            :func:`task_preparer`.

    Example::

        >>> pipeline = Pipeline(bundle, METHODS["igcam"], settings,
        ...                     classification_preparer(bundle.model))
        >>> unexplained = pipeline(batch, writer, progress=bar.update)
    """

    def __init__(
        self,
        bundle: ModelBundle,
        method: Method,
        settings: MethodSettings,
        prepare: Preparer,
    ) -> None:
        self.device = bundle.device
        self.layer = bundle.layer()
        self.method = method
        self.settings = settings
        self.prepare = prepare
        self._built: tuple[nn.Module, MapFunction] | None = None

    def __call__(
        self, batch: Batch, writer: ShardWriter, progress: Callable[[int], Any]
    ) -> list[tuple[str, str]]:
        """Explain a batch; return the ``(key, reason)`` of the images with
        nothing to explain. ``progress(n)`` is called as images are done."""
        inputs = batch.inputs.to(self.device, non_blocking=True)
        baselines = batch.baselines.to(self.device, non_blocking=True)
        unexplained = []
        for part in self.prepare(batch, inputs):
            if isinstance(part, Nothing):
                key = batch.keys[part.row]
                requested = int(batch.targets[part.row])
                writer.add_unexplained(
                    key, batch.digests[part.row], part.reason, requested
                )
                unexplained.append((key, part.reason))
                progress(1)
                continue
            rows = part.rows
            maps = self._maps(part.forward)(inputs[rows], part.target, baselines[rows])
            self._record(batch, part, maps, writer)
            progress(len(batch.keys[rows]))
        return unexplained

    def _maps(self, forward: nn.Module) -> MapFunction:
        """The method built for ``forward`` (kept while the forward is the same)."""
        if self._built is None or self._built[0] is not forward:
            built = self.method.build(forward, self.layer, self.settings)
            self._built = (forward, built)
        return self._built[1]

    def _record(
        self, batch: Batch, part: Prepared, maps: Any, writer: ShardWriter
    ) -> None:
        if not isinstance(maps, torch.Tensor):
            raise ValueError(
                "layer: expected a layer with one output tensor, got a layer "
                "returning a tuple; explain one of its tensors' modules instead"
            )
        copy = maps.detach().float().to("cpu", non_blocking=True)
        ready = None
        if self.device.type == "cuda":
            ready = torch.cuda.Event()
            ready.record()
        rows = part.rows
        writer.add(batch.keys[rows], batch.digests[rows], copy, part.records, ready)


def explain_into_shards(
    pipeline: Pipeline,
    dataset: Dataset,
    writer: ShardWriter,
    *,
    images_per_batch: int,
    workers: int,
    pin_memory: bool,
    progress: str,
    show_progress: bool,
) -> tuple[list[tuple[str, str]], list[tuple[str, str]], float]:
    """Feed the dataset through the pipeline into the writer.

    The progress bar's first line is shown before the first image is read;
    it advances as each image is explained (a classifier's batch, explained
    together, at once) or found unreadable or with nothing to explain.

    Returns:
        tuple: The ``(key, error)`` of unreadable images, the ``(key,
        reason)`` of those with nothing to explain, and the loop's wall time.
    """
    from tqdm import tqdm

    loader = DataLoader(
        dataset,
        batch_size=images_per_batch,
        num_workers=workers,
        collate_fn=collate,
        pin_memory=pin_memory,
    )
    failed: list[tuple[str, str]] = []
    unexplained: list[tuple[str, str]] = []
    started = time.perf_counter()
    with (
        writer,
        tqdm(
            total=len(dataset),
            unit="image",
            desc=progress,
            disable=not show_progress,
            mininterval=0,
            file=sys.stderr,
        ) as bar,
    ):
        bar.refresh()
        for batch in loader:
            for key, error in batch.failed:
                failed.append((key, error))
                bar.write(f"captum-igcam: error: {error}", file=sys.stderr)
                bar.update(1)
            if batch.inputs is None:
                continue
            for key, reason in pipeline(batch, writer, bar.update):
                unexplained.append((key, reason))
                bar.write(
                    f"captum-igcam: note: {key}: nothing to explain: {reason}",
                    file=sys.stderr,
                )
    return failed, unexplained, time.perf_counter() - started
