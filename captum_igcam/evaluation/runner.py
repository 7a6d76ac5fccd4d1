"""Compare attribution methods on a data set: the benchmark loop.

:func:`evaluate` runs methods of :data:`captum_igcam.app.methods.METHODS` on
the samples of a :class:`~captum_igcam.evaluation.datasets.Dataset`, several
images per model pass, and records per-image metric values
(:mod:`captum_igcam.evaluation.metrics`); :func:`summarize` turns them into
means with bootstrap 95% confidence intervals, and :func:`compare` gives the
paired difference between two methods on the same images
(:mod:`captum_igcam.evaluation.statistics`).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from captum.metrics import infidelity, sensitivity_max
from torch import Tensor

from captum_igcam.app.baselines import baseline_input
from captum_igcam.app.methods import METHODS, MapFunction
from captum_igcam.app.models import ModelBundle, resolve_layer
from captum_igcam.app.settings import MethodSettings, check_positive_int
from captum_igcam.evaluation import metrics
from captum_igcam.evaluation.datasets import Dataset, Sample
from captum_igcam.evaluation.road import road_scores
from captum_igcam.evaluation.statistics import (
    N_RESAMPLES,
    Estimate,
    estimate,
    paired_difference,
)


@dataclass(frozen=True)
class Metric:
    """A metric the benchmark reports.

    Args:
        name (str): Key in records, JSON and tables.
        title (str): Column header.
        higher_is_better (bool): Direction of improvement.
        per_object (bool): One value per annotated object (localisation)
            rather than per image.
    """

    name: str
    title: str
    higher_is_better: bool
    per_object: bool = False


#: Every metric the benchmark can report, in table order: the one list.
METRICS = (
    Metric("pointing_game", "pointing game", True, per_object=True),
    Metric("ebpg", "EBPG", True, per_object=True),
    Metric("auroc", "pixel AUROC", True, per_object=True),
    Metric("avg_drop", "Avg Drop %", False),
    Metric("increase_in_confidence", "Increase %", True),
    Metric("deletion_auc", "deletion AUC", False),
    Metric("insertion_auc", "insertion AUC", True),
    Metric("road_morf", "ROAD MoRF", False),
    Metric("road_lerf", "ROAD LeRF", True),
    Metric("infidelity", "infidelity", False),
    Metric("sensitivity", "sensitivity", False),
    Metric("seconds_per_image", "s / image", False),
)
METRIC_NAMES = tuple(metric.name for metric in METRICS)
#: Noise of the ``infidelity`` perturbation, in normalised-input units.
INFIDELITY_NOISE_STD = 0.1
#: Perturbations per image for ``infidelity`` and ``sensitivity_max``.
CAPTUM_PERTURBATIONS = 4
#: Perturbed images per forward pass of the deletion/insertion curves.
CURVE_BATCH_SIZE = 64


DEFAULT_METHODS = (
    "gradcam",
    "igcam",
    "igcam-paper",
    "igcam-layer",
    "layer-ig",
    "ig",
)


@dataclass
class MethodRecord:
    """Per-image results of one method, in sample order.

    Args:
        values (dict[str, list[float]]): Metric name -> one value per image
            (per annotated object for the localisation metrics; NaN where a
            metric is not defined).
        labels (list[str]): Class label of each localisation value.
        seconds (list[float]): Seconds spent computing each image's map
            (a batch's time divided among its images).
        curves (dict[str, list[list[float]]]): ``"deletion"`` and
            ``"insertion"`` -> each image's perturbation curve.
    """

    values: dict[str, list[float]] = field(default_factory=dict)
    labels: list[str] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    curves: dict[str, list[list[float]]] = field(default_factory=dict)

    def add(self, metric: str, value: float) -> None:
        self.values.setdefault(metric, []).append(float(value))


@dataclass
class EvaluationResult:
    """What :func:`evaluate` measured.

    Args:
        dataset (str): Dataset spec.
        model (str): Model name.
        layer (str): Explained layer.
        n_images (int): Images evaluated.
        settings (dict): Steps and other parameters used.
        notes (list[str]): The dataset's notes.
        records (dict[str, MethodRecord]): Method name -> per-image results.
        top1_correct (list[bool]): Per annotated image, whether the model's
            top-1 class is one of the annotated classes.
        image_names (list[str]): Name of each image, in sample order.
        objects (list[dict]): Per annotated object, in the order of the
            localisation values: ``image`` (index into ``image_names``),
            ``label`` and ``box_fraction`` (share of the image its boxes cover).
    """

    dataset: str
    model: str
    layer: str
    n_images: int
    settings: dict[str, object]
    notes: list[str]
    records: dict[str, MethodRecord]
    top1_correct: list[bool] = field(default_factory=list)
    image_names: list[str] = field(default_factory=list)
    objects: list[dict[str, object]] = field(default_factory=list)


def evaluate(
    bundle: ModelBundle,
    dataset: Dataset,
    methods: Sequence[str] = DEFAULT_METHODS,
    settings: MethodSettings | None = None,
    curve_steps: int = 50,
    captum_metrics: bool = False,
    batch_size: int = 8,
    progress: bool = True,
    road: bool = False,
) -> EvaluationResult:
    """Run methods on every sample and record per-image metric values.

    Images are processed ``batch_size`` at a time: each method explains the
    whole batch in one call, and the masked-confidence scores and the
    deletion/insertion curves of all methods and images share their model
    passes. The values do not depend on ``batch_size`` (up to float
    rounding of differently sized passes).

    For each image the target of the faithfulness metrics is the model's
    prediction. For each annotated class, the localisation target is the
    class's highest-scoring model output (the ground-truth protocol of
    ImageNet localisation); its map is the prediction's map when they agree
    and is computed anew otherwise. Localisation is scored as TorchRay does,
    on the map resized to the original image, with the boxes in the original
    image's pixels.

    Args:
        bundle (ModelBundle): The model.
        dataset (Dataset): The samples.
        methods (sequence of str, optional): Names in :data:`METHODS`.
            Default: :data:`DEFAULT_METHODS`
        settings (MethodSettings, optional): The methods' settings, as for
            ``captum-igcam explain``: ``layer`` (``None``: the bundle's
            layer), ``n_steps``, ``method``, ``internal_batch_size`` and the
            ``baseline`` image of the path methods, made for each photo by
            :func:`~captum_igcam.app.baselines.baseline_input`.
            Default: None (``MethodSettings()``: 50 steps, black baseline)
        curve_steps (int, optional): Steps of the deletion/insertion curves.
            Default: 50
        captum_metrics (bool, optional): Also compute Captum's
            ``infidelity`` (normalised, Gaussian noise) and ``sensitivity_max``
            (:data:`CAPTUM_PERTURBATIONS` perturbations each).
            Default: False
        batch_size (int, optional): Images per model pass.
            Default: 8
        progress (bool, optional): Show a tqdm progress bar over images.
            Default: True
        road (bool, optional): Also score ROAD's MoRF and LeRF orders
            (:func:`captum_igcam.evaluation.road.road_scores`, default
            percentages) on the same maps and passes.
            Default: False

    Returns:
        EvaluationResult: Per-image values for :func:`summarize`.

    Raises:
        ValueError: For an unknown method or non-positive step counts or
            batch size.

    Example::

        >>> bundle = load_model()
        >>> result = evaluate(bundle, load_dataset("composites", n=4))
        >>> summarize(result)["igcam"]["pointing_game"].mean
    """
    unknown = [name for name in methods if name not in METHODS]
    if unknown or not methods:
        raise ValueError(
            f"methods: expected names from {', '.join(METHODS)}, got "
            f"{', '.join(unknown) if unknown else 'none'}"
        )
    check_positive_int("curve_steps", curve_steps)
    check_positive_int("batch_size", batch_size)
    settings = (settings or MethodSettings()).for_model(bundle)
    layer_name = settings.layer or bundle.layer_name
    layer = resolve_layer(bundle.model, layer_name)
    functions = {
        name: METHODS[name].build(bundle.model, layer, settings) for name in methods
    }
    result = EvaluationResult(
        dataset=dataset.name,
        model=bundle.name,
        layer=layer_name,
        n_images=len(dataset),
        settings={
            **settings.describe(),
            "curve_steps": curve_steps,
            "captum_metrics": captum_metrics,
            "road": road,
        },
        notes=list(dataset.notes),
        records={name: MethodRecord() for name in methods},
    )
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(dataset), unit="image", desc="benchmark")
    for batch in _batches(dataset, batch_size):
        _evaluate_batch(
            bundle, batch, functions, result, curve_steps, settings.baseline, road
        )
        if captum_metrics:
            _captum_metrics(bundle, batch, functions, result)
        if bar is not None:
            bar.update(len(batch))
    if bar is not None:
        bar.close()
    return result


def _batches(dataset: Dataset, size: int) -> Iterator[list[Sample]]:
    batch: list[Sample] = []
    for sample in dataset:
        batch.append(sample)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _evaluate_batch(
    bundle: ModelBundle,
    batch: list[Sample],
    functions: dict[str, MapFunction],
    result: EvaluationResult,
    curve_steps: int,
    baseline: str,
    road: bool = False,
) -> None:
    model = bundle.model
    inputs = torch.stack([bundle.preprocess(sample.image) for sample in batch])
    baselines = torch.cat(
        [baseline_input(bundle, sample.image, baseline) for sample in batch]
    )
    with torch.no_grad():
        logits = model(inputs)
    predicted = logits.argmax(dim=1)
    objects = [
        (index, annotation, _class_target(logits[index], annotation.classes))
        for index, sample in enumerate(batch)
        for annotation in sample.annotations
    ]
    first = len(result.image_names)
    result.image_names.extend(sample.name for sample in batch)
    for index, annotation, _ in objects:
        size = batch[index].image.shape[:2]
        result.objects.append(
            {
                "image": first + index,
                "label": annotation.label,
                "box_fraction": metrics.box_area_fraction(annotation.boxes, size),
            }
        )
    for index, sample in enumerate(batch):
        if sample.annotations:
            classes = frozenset().union(*(a.classes for a in sample.annotations))
            result.top1_correct.append(int(predicted[index]) in classes)
    maps = {}
    for name, function in functions.items():
        record = result.records[name]
        started = time.perf_counter()
        maps[name] = function(inputs, predicted, baselines).detach()
        elapsed = time.perf_counter() - started
        record.seconds.extend([elapsed / len(batch)] * len(batch))
        _localise(
            batch, objects, predicted, inputs, function, maps[name], record, baselines
        )
    _faithfulness(model, inputs, predicted, maps, result.records, curve_steps, road)


def _class_target(logits: Tensor, classes: frozenset[int]) -> int:
    candidates = sorted(classes)
    return candidates[int(logits[candidates].argmax())]


def _localise(
    batch: list[Sample],
    objects: list[tuple[int, object, int]],
    predicted: Tensor,
    inputs: Tensor,
    function: MapFunction,
    maps: Tensor,
    record: MethodRecord,
    baselines: Tensor,
) -> None:
    """Pointing game, EBPG and pixel AUROC per annotated object."""
    others = [k for k, (i, _, t) in enumerate(objects) if t != int(predicted[i])]
    extra = {}
    if others:
        rows = torch.tensor([objects[k][0] for k in others], device=inputs.device)
        targets = torch.tensor([objects[k][2] for k in others], device=inputs.device)
        chosen = inputs[rows]
        computed = function(chosen, targets, baselines[rows]).detach()
        extra = dict(zip(others, computed))
    for position, (index, annotation, _) in enumerate(objects):
        class_map = extra.get(position, maps[index])[None].cpu()
        size = batch[index].image.shape[:2]
        boxes = [annotation.boxes]
        record.add("pointing_game", metrics.pointing_game_hits(class_map, boxes, size))
        record.add("ebpg", metrics.energy_pointing_game(class_map, boxes, size))
        record.add("auroc", metrics.localisation_auroc(class_map, boxes, size))
        record.labels.append(annotation.label)


def _faithfulness(
    model: torch.nn.Module,
    inputs: Tensor,
    predicted: Tensor,
    maps: dict[str, Tensor],
    records: dict[str, MethodRecord],
    curve_steps: int,
    road: bool = False,
) -> None:
    """Average Drop, Increase, deletion/insertion AUC (and ROAD) of all methods."""
    names = list(maps)
    size = (int(inputs.shape[2]), int(inputs.shape[3]))
    # Methods differ in resolution (layer maps, input-space IG): bring all to
    # the input's, as the metrics would.
    stacked = torch.cat([metrics.to_input_size(maps[name], size) for name in names])
    repeated = inputs.repeat(len(names), 1, 1, 1)
    target = predicted.repeat(len(names))
    original, masked = metrics.masked_confidence(model, repeated, stacked, target)
    curve = {"target": target, "n_steps": curve_steps, "batch_size": CURVE_BATCH_SIZE}
    curves = {
        mode: metrics.perturbation_curve(model, repeated, stacked, mode, **curve)
        for mode in ("deletion", "insertion")
    }
    values = {
        "avg_drop": metrics.average_drop(original, masked),
        "increase_in_confidence": metrics.increase_in_confidence(original, masked),
        "deletion_auc": metrics.curve_auc(curves["deletion"]),
        "insertion_auc": metrics.curve_auc(curves["insertion"]),
    }
    if road:
        values.update(
            road_scores(model, repeated, stacked, target, batch_size=CURVE_BATCH_SIZE)
        )
    for metric, column in values.items():
        for name, part in zip(names, column.split(len(inputs))):
            records[name].values.setdefault(metric, []).extend(part.tolist())
    for mode, column in curves.items():
        for name, part in zip(names, column.split(len(inputs))):
            records[name].curves.setdefault(mode, []).extend(part.tolist())


def _captum_metrics(
    bundle: ModelBundle,
    batch: list[Sample],
    functions: dict[str, MapFunction],
    result: EvaluationResult,
) -> None:
    model = bundle.model
    inputs = torch.stack([bundle.preprocess(sample.image) for sample in batch])
    with torch.no_grad():
        predicted = model(inputs).argmax(dim=1)
    for name, function in functions.items():
        record = result.records[name]
        maps = function(inputs, predicted).detach()
        value = infidelity(
            model,
            metrics.noisy_perturbation(INFIDELITY_NOISE_STD),
            inputs,
            metrics.input_space_attributions(maps, inputs),
            target=predicted,
            n_perturb_samples=CAPTUM_PERTURBATIONS,
            normalize=True,
        )
        record.values.setdefault("infidelity", []).extend(value.tolist())
        explanation = metrics.input_space_explanation(
            lambda x, target, function=function: function(x, target)
        )
        value = sensitivity_max(
            explanation,
            inputs,
            target=predicted,
            n_perturb_samples=CAPTUM_PERTURBATIONS,
        )
        record.values.setdefault("sensitivity", []).extend(value.tolist())


def summarize(
    result: EvaluationResult, n_resamples: int = N_RESAMPLES, seed: int = 0
) -> dict[str, dict[str, Estimate]]:
    """Means with percentile-bootstrap 95% confidence intervals.

    Images (annotated objects, for the localisation metrics) are resampled
    with :func:`scipy.stats.bootstrap`; the pointing game is the mean over
    classes of the hit rate (TorchRay's accuracy), the other metrics plain
    means (NaN values left out).

    Args:
        result (EvaluationResult): From :func:`evaluate`.
        n_resamples (int, optional): Bootstrap resamples.
            Default: 2000
        seed (int, optional): Seed of the resampling.
            Default: 0

    Returns:
        dict: Method -> metric -> :class:`Estimate`, including
        ``seconds_per_image``. Metrics without values are left out.
    """
    return {
        name: {
            metric: estimate(*_column(record, metric), n_resamples, seed)
            for metric in METRIC_NAMES
            if metric in record.values or metric == "seconds_per_image"
        }
        for name, record in result.records.items()
    }


def top1_accuracy(
    result: EvaluationResult, n_resamples: int = N_RESAMPLES, seed: int = 0
) -> Estimate | None:
    """The model's top-1 accuracy on the annotated images, with its 95% CI.

    Returns:
        Estimate or None: None when no image is annotated.
    """
    if not result.top1_correct:
        return None
    return estimate(np.asarray(result.top1_correct, float), None, n_resamples, seed)


def compare(
    result: EvaluationResult,
    method: str,
    reference: str,
    metric: str,
    n_resamples: int = N_RESAMPLES,
    seed: int = 0,
) -> Estimate:
    """Paired difference ``method - reference`` of a metric on the same images.

    Both methods are evaluated on the same bootstrap resamples of images, so
    the interval accounts for the pairing (it is usually much narrower than
    the two methods' own intervals suggest).

    Args:
        result (EvaluationResult): From :func:`evaluate`.
        method (str): The method compared.
        reference (str): The method compared against.
        metric (str): Metric name, e.g. ``"pointing_game"``.
        n_resamples (int, optional): Bootstrap resamples.
            Default: 2000
        seed (int, optional): Seed of the resampling.
            Default: 0

    Returns:
        Estimate: The difference and its 95% interval.

    Raises:
        ValueError: If a method or the metric was not evaluated.
    """
    for name in (method, reference):
        if name not in result.records:
            raise ValueError(f"method: {name!r} was not evaluated")
    first, labels = _column(result.records[method], metric)
    second, _ = _column(result.records[reference], metric)
    return paired_difference(first, second, labels, n_resamples, seed)


def _column(record: MethodRecord, metric: str) -> tuple[np.ndarray, list[str] | None]:
    """A metric's values and, for the pointing game, the class labels."""
    if metric == "seconds_per_image":
        return np.asarray(record.seconds, dtype=np.float64), None
    if metric not in record.values:
        raise ValueError(f"metric: {metric!r} was not measured")
    labels = record.labels if metric == "pointing_game" else None
    return np.asarray(record.values[metric], dtype=np.float64), labels
