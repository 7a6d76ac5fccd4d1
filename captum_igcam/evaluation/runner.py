"""Compare attribution methods on a data set: the loop and the statistics.

:func:`evaluate` runs methods of :data:`captum_igcam.app.methods.METHODS` on
every sample of a :class:`~captum_igcam.evaluation.datasets.Dataset` and records
per-image metric values (:mod:`captum_igcam.evaluation.metrics`); :func:`summarize`
turns them into means with bootstrap 95% confidence intervals, and
:func:`compare` gives the paired difference between two methods on the same
images."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from captum.metrics import infidelity, sensitivity_max

from captum_igcam.app.methods import METHODS, MapFunction, MethodSettings
from captum_igcam.app.models import ModelBundle, resolve_layer
from captum_igcam.evaluation import metrics
from captum_igcam.evaluation.datasets import Dataset, Sample

LOCALISATION_METRICS = ("pointing_game", "ebpg")
FAITHFULNESS_METRICS = (
    "avg_drop",
    "increase_in_confidence",
    "deletion_auc",
    "insertion_auc",
)
CAPTUM_METRICS = ("infidelity", "sensitivity")
#: Whether a larger value of the metric is better.
HIGHER_IS_BETTER = {
    "pointing_game": True,
    "ebpg": True,
    "avg_drop": False,
    "increase_in_confidence": True,
    "deletion_auc": False,
    "insertion_auc": True,
    "infidelity": False,
    "sensitivity": False,
    "seconds_per_image": False,
}
#: Noise of the ``infidelity`` perturbation, in normalised-input units.
INFIDELITY_NOISE_STD = 0.1
#: Perturbations per image for ``infidelity`` and ``sensitivity_max``.
CAPTUM_PERTURBATIONS = 4


DEFAULT_METHODS = (
    "gradcam",
    "igcam",
    "igcam-notebook",
    "igcam-layer",
    "layer-ig",
    "ig",
)


@dataclass
class MethodRecord:
    """Per-image results of one method, in sample order.

    Args:
        values (dict[str, list[float]]): Metric name -> one value per image
            (per annotated class for the localisation metrics).
        labels (list[str]): Class label of each localisation value.
        seconds (list[float]): Seconds spent computing each image's map.
    """

    values: dict[str, list[float]] = field(default_factory=dict)
    labels: list[str] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)

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
    """

    dataset: str
    model: str
    layer: str
    n_images: int
    settings: dict[str, object]
    notes: list[str]
    records: dict[str, MethodRecord]


@dataclass(frozen=True)
class Estimate:
    """A mean with a bootstrap 95% confidence interval.

    Args:
        mean (float): The statistic on all images.
        low (float): 2.5th percentile of the bootstrap distribution.
        high (float): 97.5th percentile.
    """

    mean: float
    low: float
    high: float


def evaluate(
    bundle: ModelBundle,
    dataset: Dataset,
    methods: Sequence[str] = DEFAULT_METHODS,
    layer_name: str | None = None,
    n_steps: int = 50,
    curve_steps: int = 50,
    captum_metrics: bool = False,
    progress: bool = True,
) -> EvaluationResult:
    """Run methods on every sample and record per-image metric values.

    For each image the target of the faithfulness metrics is the model's
    prediction. For each annotated class, the localisation target is the
    class's highest-scoring model output; its map is the prediction's map
    when they agree and is computed anew otherwise. Boxes are scaled to the
    model input the same way :meth:`ModelBundle.preprocess` resizes images.

    Args:
        bundle (ModelBundle): The model.
        dataset (Dataset): The samples.
        methods (sequence of str, optional): Names in :data:`METHODS`.
            Default: :data:`DEFAULT_METHODS`
        layer_name (str, optional): Layer to explain.
            Default: None (the bundle's default layer)
        n_steps (int, optional): Integration steps of the path methods.
            Default: 50
        curve_steps (int, optional): Steps of the deletion/insertion curves.
            Default: 50
        captum_metrics (bool, optional): Also compute Captum's
            ``infidelity`` (normalised, Gaussian noise) and ``sensitivity_max``
            (:data:`CAPTUM_PERTURBATIONS` perturbations each).
            Default: False
        progress (bool, optional): Show a tqdm progress bar over images.
            Default: True

    Returns:
        EvaluationResult: Per-image values for :func:`summarize`.

    Raises:
        ValueError: For an unknown method or non-positive step counts.

    Example::

        >>> bundle = load_model()
        >>> result = evaluate(bundle, load_dataset("composites", bundle, n=4))
        >>> summarize(result)["igcam"]["pointing_game"].mean
    """
    unknown = [name for name in methods if name not in METHODS]
    if unknown or not methods:
        raise ValueError(
            f"methods: expected names from {', '.join(METHODS)}, got "
            f"{', '.join(unknown) if unknown else 'none'}"
        )
    for name, value in (("n_steps", n_steps), ("curve_steps", curve_steps)):
        if not (isinstance(value, int) and value > 0):
            raise ValueError(f"{name}: expected a positive integer, got {value!r}")
    layer_name = layer_name or bundle.layer_name
    layer = resolve_layer(bundle.model, layer_name)
    settings = MethodSettings(
        n_steps=n_steps, reshape_transform=bundle.reshape_transform
    )
    functions = {
        name: METHODS[name].build(bundle.model, layer, settings) for name in methods
    }
    records = {name: MethodRecord() for name in methods}
    samples: Iterable[Sample] = dataset
    if progress:
        from tqdm.auto import tqdm

        samples = tqdm(dataset, total=len(dataset), unit="image", desc="benchmark")
    for sample in samples:
        for name, function in functions.items():
            _evaluate_sample(
                bundle, sample, function, records[name], curve_steps, captum_metrics
            )
    return EvaluationResult(
        dataset=dataset.name,
        model=bundle.name,
        layer=layer_name,
        n_images=len(dataset),
        settings={
            "n_steps": n_steps,
            "curve_steps": curve_steps,
            "captum_metrics": captum_metrics,
        },
        notes=list(dataset.notes),
        records=records,
    )


def _evaluate_sample(
    bundle: ModelBundle,
    sample: Sample,
    function: MapFunction,
    record: MethodRecord,
    curve_steps: int,
    captum_metrics: bool,
) -> None:
    model = bundle.model
    inputs = bundle.preprocess(sample.image).unsqueeze(0)
    size = (int(inputs.shape[2]), int(inputs.shape[3]))
    with torch.no_grad():
        logits = model(inputs)[0]
    predicted = logits.argmax().view(1)
    started = time.perf_counter()
    maps = function(inputs, predicted).detach()
    record.seconds.append(time.perf_counter() - started)

    for annotation in sample.annotations:
        candidates = sorted(annotation.classes)
        target = candidates[int(logits[candidates].argmax())]
        class_maps = (
            maps
            if target == predicted.item()
            else function(inputs, torch.tensor([target])).detach()
        )
        boxes = [_scale_boxes(annotation.boxes, sample.image.shape[:2], size)]
        hit = metrics.pointing_game_hits(class_maps, boxes, size)
        record.add("pointing_game", hit.item())
        record.add("ebpg", metrics.energy_pointing_game(class_maps, boxes, size).item())
        record.labels.append(annotation.label)

    original, masked = metrics.masked_confidence(model, inputs, maps, predicted)
    record.add("avg_drop", metrics.average_drop(original, masked).item())
    increase = metrics.increase_in_confidence(original, masked)
    record.add("increase_in_confidence", increase.item())
    curve_kwargs = {"target": predicted, "n_steps": curve_steps}
    deletion = metrics.deletion_auc(model, inputs, maps, **curve_kwargs)
    record.add("deletion_auc", deletion.item())
    insertion = metrics.insertion_auc(model, inputs, maps, **curve_kwargs)
    record.add("insertion_auc", insertion.item())
    if captum_metrics:
        perturb = metrics.noisy_perturbation(INFIDELITY_NOISE_STD)
        attributions = metrics.input_space_attributions(maps, inputs)
        value = infidelity(
            model,
            perturb,
            inputs,
            attributions,
            target=predicted,
            n_perturb_samples=CAPTUM_PERTURBATIONS,
            normalize=True,
        )
        record.add("infidelity", value.item())
        explanation = metrics.input_space_explanation(
            lambda x, target: function(x, target)
        )
        value = sensitivity_max(
            explanation,
            inputs,
            target=predicted,
            n_perturb_samples=CAPTUM_PERTURBATIONS,
        )
        record.add("sensitivity", value.item())


def _scale_boxes(
    boxes: np.ndarray, image_size: tuple[int, int], input_size: tuple[int, int]
) -> np.ndarray:
    """Boxes in image pixels -> model-input pixels (images are resized, not cropped)."""
    scale_y = input_size[0] / image_size[0]
    scale_x = input_size[1] / image_size[1]
    return np.asarray(boxes, dtype=np.float64) * [scale_x, scale_y, scale_x, scale_y]


def summarize(
    result: EvaluationResult, n_resamples: int = 2000, seed: int = 0
) -> dict[str, dict[str, Estimate]]:
    """Means with percentile-bootstrap 95% confidence intervals.

    Images (annotated objects, for the localisation metrics) are resampled
    with replacement ``n_resamples`` times; on each resample the pointing
    game is recomputed as the mean over classes of the hit rate
    (:func:`~captum_igcam.evaluation.metrics.pointing_game_accuracy`), the other metrics
    as plain means.

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
            metric: _estimate(_bootstrap(record, metric, n_resamples, seed))
            for metric in (*record.values, "seconds_per_image")
        }
        for name, record in result.records.items()
    }


def compare(
    result: EvaluationResult,
    method: str,
    reference: str,
    metric: str,
    n_resamples: int = 2000,
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
    first = _bootstrap(result.records[method], metric, n_resamples, seed)
    second = _bootstrap(result.records[reference], metric, n_resamples, seed)
    return _estimate(first - second)


def _bootstrap(
    record: MethodRecord, metric: str, n_resamples: int, seed: int
) -> np.ndarray:
    """The statistic on all samples, then on ``n_resamples`` resamples."""
    if metric == "seconds_per_image":
        values = np.asarray(record.seconds)
    elif metric in record.values:
        values = np.asarray(record.values[metric])
    else:
        raise ValueError(f"metric: {metric!r} was not measured")
    rng = np.random.default_rng(seed)
    indices = np.vstack(
        [
            np.arange(len(values)),
            rng.integers(len(values), size=(n_resamples, len(values))),
        ]
    )
    if metric != "pointing_game":
        return values[indices].mean(axis=1)
    labels = np.asarray(record.labels)
    per_class = []
    for label in np.unique(labels):
        in_class = (labels == label)[indices]
        with np.errstate(invalid="ignore", divide="ignore"):
            per_class.append((values[indices] * in_class).sum(1) / in_class.sum(1))
    return np.nanmean(np.vstack(per_class), axis=0)


def _estimate(statistics: np.ndarray) -> Estimate:
    low, high = np.percentile(statistics[1:], [2.5, 97.5])
    return Estimate(float(statistics[0]), float(low), float(high))
