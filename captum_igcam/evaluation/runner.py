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

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from captum.metrics import infidelity, sensitivity_max
from torch import Tensor

from captum_igcam.app.baselines import baseline_input
from captum_igcam.app.memory import ChunkSizes, chunk_sizes
from captum_igcam.app.methods import METHODS, MapFunction
from captum_igcam.app.models import ModelBundle, resolve_layer
from captum_igcam.app.settings import MethodSettings, check_positive_int
from captum_igcam.evaluation import metrics
from captum_igcam.evaluation.cost import measured_call
from captum_igcam.evaluation.datasets import Annotation, Dataset, Sample
from captum_igcam.evaluation.defaults import DEFAULT_METHODS
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


#: The metrics every benchmark reports, in table order.
METRICS = (
    Metric("pointing_game", "pointing game", True, per_object=True),
    Metric("ebpg", "EBPG", True, per_object=True),
    Metric("auroc", "pixel AUROC", True, per_object=True),
    Metric("avg_drop", "Avg Drop %", False),
    Metric("increase_in_confidence", "Increase %", True),
    Metric("deletion_auc", "deletion AUC", False),
    Metric("insertion_auc", "insertion AUC", True),
    Metric("seconds_per_image", "s / image", False),
)
METRIC_NAMES = tuple(metric.name for metric in METRICS)
#: Noise of the ``infidelity`` perturbation, in normalised-input units.
INFIDELITY_NOISE_STD = 0.1
#: Perturbations per image for ``infidelity`` and ``sensitivity_max``.
CAPTUM_PERTURBATIONS = 4
#: Most cells a side of the maps kept for pictures (``MethodRecord.small_maps``).
SMALL_MAP_CELLS = 16
#: Longest side, in pixels, of the image thumbnails kept for pictures.
THUMBNAIL_SIDE = 64


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
        peak_memory_mb (float, optional): Largest peak memory of one of its
            attribution calls, in MiB
            (:func:`~captum_igcam.evaluation.cost.measured_call`); None where
            not measurable.
        small_maps (list[np.ndarray]): Each image's map of the predicted
            class, averaged down to at most :data:`SMALL_MAP_CELLS` cells a
            side (float32), for pictures of the result.
    """

    values: dict[str, list[float]] = field(default_factory=dict)
    labels: list[str] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    curves: dict[str, list[list[float]]] = field(default_factory=dict)
    peak_memory_mb: float | None = None
    small_maps: list[np.ndarray] = field(default_factory=list)

    def add(self, metric: str, value: float) -> None:
        self.values.setdefault(metric, []).append(float(value))

    def extend(self, metric: str, values: Tensor) -> None:
        """Append one value per image of a batch."""
        self.values.setdefault(metric, []).extend(values.tolist())


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
        skipped (list[str]): Annotated objects the data set left out for an
            unusable box (file, object, reason).
        image_names (list[str]): Name of each image, in sample order.
        objects (list[dict]): Per annotated object, in the order of the
            localisation values: ``image`` (index into ``image_names``),
            ``label`` and ``box_fraction`` (share of the image its boxes cover).
        image_sha256 (list[str or None]): Per image, the SHA-256 of the file
            it was read from (None for generated images).
        thumbnails (list[str]): Per image, a PNG thumbnail of at most
            :data:`THUMBNAIL_SIDE` pixels a side, base64-encoded.
    """

    dataset: str
    model: str
    layer: str
    n_images: int
    settings: dict[str, object]
    notes: list[str]
    records: dict[str, MethodRecord]
    top1_correct: list[bool] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    image_names: list[str] = field(default_factory=list)
    objects: list[dict[str, object]] = field(default_factory=list)
    image_sha256: list[str | None] = field(default_factory=list)
    thumbnails: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class BatchContext:
    """What a metric family sees of one batch, after the built-in metrics ran.

    Args:
        bundle (ModelBundle): The model.
        batch (list[Sample]): The batch's samples.
        inputs (Tensor): ``(N, C, H, W)`` model inputs.
        baselines (Tensor): The path methods' baselines for ``inputs``.
        logits (Tensor): ``(N, classes)`` model outputs on ``inputs``.
        maps (dict[str, Tensor]): Method -> ``(N, 1, h, w)`` maps of the
            predicted class.
        functions (dict[str, MapFunction]): Method -> its map function
            ``maps(inputs, target, baselines=None)``.
        records (dict[str, MethodRecord]): Where to add per-image values
            (``record.extend(metric, values)``).
    """

    bundle: ModelBundle
    batch: list[Sample]
    inputs: Tensor
    baselines: Tensor
    logits: Tensor
    maps: dict[str, Tensor]
    functions: dict[str, MapFunction]
    records: dict[str, MethodRecord]

    @property
    def predicted(self) -> Tensor:
        """``(N,)`` the model's predicted classes, the faithfulness target."""
        return self.logits.argmax(dim=1)


@dataclass(frozen=True)
class MetricFamily:
    """Metrics computed together on every batch, beside the built-in ones.

    The place for a further family of metrics (Captum's
    ``infidelity``/``sensitivity_max``, ROAD, sanity checks): give its
    :class:`Metric` entries (table order, titles, directions) and a function
    that adds one value per image and method to the context's records, and
    register it with :func:`register_metric_family`; ``evaluate(...,
    families=[name])`` runs it and :func:`summarize` reports it.

    Args:
        name (str): Key for ``evaluate``'s ``families`` and the CLI.
        metrics (tuple[Metric, ...]): The metrics it records.
        compute (Callable[[BatchContext], None]): Adds the values of a batch.
    """

    name: str
    metrics: tuple[Metric, ...]
    compute: Callable[[BatchContext], None]


#: Registered metric families by name (:func:`register_metric_family`).
METRIC_FAMILIES: dict[str, MetricFamily] = {}


def register_metric_family(family: MetricFamily) -> MetricFamily:
    """Add a metric family to :data:`METRIC_FAMILIES`.

    Args:
        family (MetricFamily): The family; its name must be new.

    Returns:
        MetricFamily: ``family``.

    Raises:
        ValueError: If the name or one of its metric names is taken.

    Example::

        >>> register_metric_family(MetricFamily(
        ...     "road", (Metric("road_auc", "ROAD AUC", False),), road_values))
    """
    taken = {metric.name for metric in all_metrics()}
    clash = [metric.name for metric in family.metrics if metric.name in taken]
    if family.name in METRIC_FAMILIES or clash:
        raise ValueError(
            f"family: {family.name!r} or its metrics {clash} are already registered"
        )
    METRIC_FAMILIES[family.name] = family
    return family


def all_metrics() -> tuple[Metric, ...]:
    """:data:`METRICS` and those of the registered families, in table order."""
    extra = tuple(m for family in METRIC_FAMILIES.values() for m in family.metrics)
    return METRICS[:-1] + extra + METRICS[-1:]


def evaluate(
    bundle: ModelBundle,
    dataset: Dataset,
    methods: Sequence[str] = DEFAULT_METHODS,
    settings: MethodSettings | None = None,
    curve_steps: int = 50,
    captum_metrics: bool = False,
    batch_size: int = 1,
    progress: bool = True,
    families: Sequence[str] = (),
) -> EvaluationResult:
    """Run methods on every sample and record per-image metric values.

    Images are processed ``batch_size`` at a time: each method explains the
    whole batch in one call, and the masked-confidence scores and the
    deletion/insertion curves of all methods and images share their model
    passes (:func:`~captum_igcam.evaluation.metrics.perturbation_curves`). The
    values do not depend on ``batch_size`` (up to float rounding of
    differently sized passes).

    Memory is bounded by ``settings.memory_budget_mb``: unless ``settings`` sets an
    ``internal_batch_size``, the path methods run as many path points per
    pass as :func:`~captum_igcam.app.memory.chunk_sizes` finds fit in
    the budget, and the curves as many perturbed images.

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
            (:data:`CAPTUM_PERTURBATIONS` perturbations each): the
            :data:`CAPTUM_FAMILY` metric family.
            Default: False
        batch_size (int, optional): Images per model pass; the progress bar
            moves once per batch.
            Default: 1
        progress (bool, optional): Show a tqdm progress bar over images.
            Default: True
        families (sequence of str, optional): Names of further metric
            families (:data:`METRIC_FAMILIES`), run on every batch after the
            built-in metrics.
            Default: ()

    Returns:
        EvaluationResult: Per-image values for :func:`summarize`.

    Raises:
        ValueError: For an unknown method, non-positive step counts, batch
            size or budget, or an annotated class index the model does not
            have (naming the class map and key).

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
    names = dict.fromkeys([*(["captum"] if captum_metrics else []), *families])
    missing = [name for name in names if name not in METRIC_FAMILIES]
    if missing:
        raise ValueError(
            f"families: expected names from {', '.join(METRIC_FAMILIES)}, got "
            f"{', '.join(missing)}"
        )
    chosen = [METRIC_FAMILIES[name] for name in names]
    result = EvaluationResult(
        dataset=dataset.name,
        model=bundle.name,
        layer=layer_name,
        n_images=len(dataset),
        settings={},
        notes=list(dataset.notes),
        records={name: MethodRecord() for name in methods},
        skipped=list(dataset.skipped),
    )
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(dataset), unit="image", desc="benchmark")
    sizes = None
    try:
        for batch in _batches(dataset, batch_size):
            if sizes is None:
                sizes = _chunk_sizes(bundle, batch[0], settings.memory_budget_mb)
                functions = {
                    name: METHODS[name].build(bundle.model, layer, settings)
                    for name in methods
                }
                result.settings = {
                    **settings.describe(),
                    # Rows per pass of the input-space path methods (each
                    # method sizes its own passes from the same budget).
                    "path_batch_size": settings.internal_batch_size
                    or max(sizes.path_rows, batch_size),
                    "curve_steps": curve_steps,
                    "curve_batch_size": sizes.curve_rows,
                    "batch_images": batch_size,
                    "metric_families": list(names),
                }
            context = _evaluate_batch(
                bundle, batch, functions, result, curve_steps, settings, sizes
            )
            for family in chosen:
                family.compute(context)
            if bar is not None:
                bar.update(len(batch))
    finally:
        if bar is not None:
            bar.close()
    return result


def _chunk_sizes(bundle: ModelBundle, sample: Sample, budget_mb: int) -> ChunkSizes:
    example = bundle.preprocess(sample.image).unsqueeze(0)
    return chunk_sizes(bundle.model, example, budget_mb)


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
    settings: MethodSettings,
    sizes: ChunkSizes,
) -> BatchContext:
    model = bundle.model
    inputs = torch.stack([bundle.preprocess(sample.image) for sample in batch])
    baselines = torch.cat(
        [baseline_input(bundle, sample.image, settings.baseline) for sample in batch]
    )
    with torch.no_grad():
        logits = model(inputs)
    predicted = logits.argmax(dim=1)
    objects = [
        (index, annotation, _class_target(logits[index], annotation, sample))
        for index, sample in enumerate(batch)
        for annotation in sample.annotations
    ]
    first = len(result.image_names)
    result.image_names.extend(sample.name for sample in batch)
    result.image_sha256.extend(sample.sha256 for sample in batch)
    result.thumbnails.extend(_thumbnail(sample.image) for sample in batch)
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
        output, elapsed, peak_mb = measured_call(
            lambda function=function: function(inputs, predicted, baselines),
            inputs.device,
        )
        maps[name] = output.detach()
        record.seconds.extend([elapsed / len(batch)] * len(batch))
        if peak_mb is not None:
            record.peak_memory_mb = max(peak_mb, record.peak_memory_mb or 0.0)
        record.small_maps.extend(_small_maps(maps[name]))
        _localise(
            batch, objects, predicted, inputs, function, maps[name], record, baselines
        )
    context = BatchContext(
        bundle, batch, inputs, baselines, logits, maps, functions, result.records
    )
    _faithfulness(context, curve_steps, sizes.curve_rows)
    return context


def _small_maps(maps: Tensor) -> list[np.ndarray]:
    """``(N, 1, h, w)`` maps averaged down to at most :data:`SMALL_MAP_CELLS` a side."""
    size = [min(side, SMALL_MAP_CELLS) for side in maps.shape[-2:]]
    small = torch.nn.functional.adaptive_avg_pool2d(maps.float().cpu(), size)
    return list(small[:, 0].numpy())


def _thumbnail(image: np.ndarray) -> str:
    """A base64 PNG of the image, at most :data:`THUMBNAIL_SIDE` pixels a side."""
    import base64
    import io

    from PIL import Image

    picture = Image.fromarray(image).convert("RGB")
    picture.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", optimize=True)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _class_target(logits: Tensor, annotation: Annotation, sample: Sample) -> int:
    candidates = sorted(annotation.classes)
    if candidates[-1] >= len(logits):
        source = f" ({annotation.source})" if annotation.source else ""
        raise ValueError(
            f"dataset: {sample.name}, class {annotation.label!r}{source}: output "
            f"{candidates[-1]} is out of range for a model with {len(logits)} outputs"
        )
    return candidates[int(logits[candidates].argmax())]


def _localise(
    batch: list[Sample],
    objects: list[tuple[int, Annotation, int]],
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


def _faithfulness(context: BatchContext, curve_steps: int, curve_rows: int) -> None:
    """Average Drop, Increase and deletion/insertion AUC of all methods at once.

    The original scores are the batch's logits; the masked inputs of all
    methods and the curves' perturbed images run in passes of ``curve_rows``.
    """
    model, inputs, maps = context.bundle.model, context.inputs, context.maps
    names = list(maps)
    predicted = context.predicted
    original = metrics.pick(context.logits.softmax(dim=1), predicted)
    masked = metrics.class_scores(
        model,
        torch.cat([metrics.masked_inputs(inputs, maps[name]) for name in names]),
        predicted.repeat(len(names)),
        batch_size=curve_rows,
    ).split(len(inputs))
    curves = metrics.perturbation_curves(
        model,
        inputs,
        [maps[name] for name in names],
        target=predicted,
        n_steps=curve_steps,
        batch_size=curve_rows,
    )
    for name, on_masked, deletion, insertion in zip(
        names, masked, curves["deletion"], curves["insertion"], strict=True
    ):
        record = context.records[name]
        values = {
            "avg_drop": metrics.average_drop(original, on_masked),
            "increase_in_confidence": metrics.increase_in_confidence(
                original, on_masked
            ),
            "deletion_auc": metrics.curve_auc(deletion),
            "insertion_auc": metrics.curve_auc(insertion),
        }
        for metric, column in values.items():
            record.extend(metric, column)
        record.curves.setdefault("deletion", []).extend(deletion.tolist())
        record.curves.setdefault("insertion", []).extend(insertion.tolist())


def _captum_metrics(context: BatchContext) -> None:
    """Captum's ``infidelity`` and ``sensitivity_max`` of every method's maps."""
    model, inputs, predicted = context.bundle.model, context.inputs, context.predicted
    for name, function in context.functions.items():
        record = context.records[name]
        value = infidelity(
            model,
            metrics.noisy_perturbation(INFIDELITY_NOISE_STD),
            inputs,
            metrics.input_space_attributions(context.maps[name], inputs),
            target=predicted,
            n_perturb_samples=CAPTUM_PERTURBATIONS,
            normalize=True,
        )
        record.extend("infidelity", value)
        explanation = metrics.input_space_explanation(
            lambda x, target, function=function: function(x, target)
        )
        value = sensitivity_max(
            explanation,
            inputs,
            target=predicted,
            n_perturb_samples=CAPTUM_PERTURBATIONS,
        )
        record.extend("sensitivity", value)


def _road(context: BatchContext) -> None:
    """ROAD's MoRF and LeRF scores of every method's maps, in shared passes."""
    names = list(context.maps)
    inputs = context.inputs
    size = (int(inputs.shape[2]), int(inputs.shape[3]))
    stacked = torch.cat([metrics.to_input_size(context.maps[n], size) for n in names])
    scores = road_scores(
        context.bundle.model,
        inputs.repeat(len(names), 1, 1, 1),
        stacked,
        context.predicted.repeat(len(names)),
    )
    for metric, column in scores.items():
        for name, part in zip(names, column.split(len(inputs)), strict=True):
            context.records[name].extend(metric, part)


#: The built-in families: Captum's metrics (``captum_metrics=True``,
#: ``--captum-metrics``) and ROAD (noisy linear imputation, MoRF and LeRF;
#: ``--road``).
CAPTUM_FAMILY, ROAD_FAMILY = (
    register_metric_family(MetricFamily(name, family_metrics, compute))
    for name, family_metrics, compute in (
        (
            "captum",
            (
                Metric("infidelity", "infidelity", False),
                Metric("sensitivity", "sensitivity", False),
            ),
            _captum_metrics,
        ),
        (
            "road",
            (
                Metric("road_morf", "ROAD MoRF", False),
                Metric("road_lerf", "ROAD LeRF", True),
            ),
            _road,
        ),
    )
)


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
            for metric in _metric_order(record)
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


def _metric_order(record: MethodRecord) -> list[str]:
    """The record's metrics in table order, unregistered ones before the time."""
    known = [m.name for m in all_metrics()]
    extra = [name for name in record.values if name not in known]
    ordered = [name for name in known if name in record.values]
    return [*ordered, *extra, "seconds_per_image"]


def _column(record: MethodRecord, metric: str) -> tuple[np.ndarray, list[str] | None]:
    """A metric's values and, for the pointing game, the class labels."""
    if metric == "seconds_per_image":
        return np.asarray(record.seconds, dtype=np.float64), None
    if metric not in record.values:
        raise ValueError(f"metric: {metric!r} was not measured")
    labels = record.labels if metric == "pointing_game" else None
    return np.asarray(record.values[metric], dtype=np.float64), labels
