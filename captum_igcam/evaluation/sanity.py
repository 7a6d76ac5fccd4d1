"""Model-randomisation sanity checks (Adebayo et al., NeurIPS 2018).

A map that explains the model must change when the model's weights are
replaced by random ones. :func:`model_randomisation` re-initialises the
model's layers *in place*, from the logits down, and compares each
method's map on the randomised model with its map on the trained one, on the
same images and for the same (trained model's) predicted class:

- ``"cascading"``: stage ``k`` randomises stages ``0..k`` together (the
  logits first, then layer after layer towards the input);
- ``"independent"``: stage ``k`` randomises stage ``k`` alone.

A stage is a group of modules (by dotted name). Every module in it with a
``reset_parameters`` method is re-initialised by it (PyTorch's own
initialisation: Kaiming-uniform for convolutions and linear layers, unit
scale, zero shift and reset running statistics for batch norms); parameters of
modules without one are redrawn from a normal distribution with the trained
tensor's mean and standard deviation (a constant tensor: a standard normal).
Stage ``k`` draws from torch's generator seeded with ``seed + k``, so a stage
gets the same random weights in both modes. The model's parameters, buffers
and train/eval flags are restored bit for bit afterwards, also when an
exception is raised half way.

Similarities (:data:`SIMILARITIES`), per image, between the two maps resized
to the model input: Spearman rank correlation of the maps and of their
absolute values (:func:`scipy.stats.spearmanr`), SSIM
(:func:`skimage.metrics.structural_similarity`) of the maps min-max
normalised to [0, 1], and the Pearson correlation of their HOG descriptors
(:func:`skimage.feature.hog`). A method passes where the similarity falls to
near zero; summaries carry percentile-bootstrap 95% intervals over images
(:mod:`captum_igcam.evaluation.statistics`).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from captum_igcam.app.baselines import baseline_input
from captum_igcam.app.methods import METHODS
from captum_igcam.app.models import ModelBundle, resolve_layer
from captum_igcam.app.settings import MethodSettings, check_positive_int
from captum_igcam.evaluation.metrics import to_input_size
from captum_igcam.evaluation.statistics import (
    N_RESAMPLES,
    Estimate,
    estimate,
    paired_difference,
)

MODES = ("cascading", "independent")
#: Similarity measures, in table order, with their titles.
SIMILARITIES = {
    "spearman": "Spearman",
    "spearman_abs": "Spearman |map|",
    "ssim": "SSIM",
    "hog": "HOG Pearson",
}
#: HOG cell size in input pixels (9 orientations, 2x2-cell blocks).
HOG_CELL = 16

Stage = tuple[str, ...]


@contextlib.contextmanager
def restored(model: nn.Module) -> Iterator[nn.Module]:
    """Restore the model's parameters, buffers and train/eval flags on exit.

    The values are copied back in place (the parameter objects stay the
    same), bit for bit, whether the block ends normally or by an exception.

    Args:
        model (nn.Module): The model the block may change.

    Yields:
        nn.Module: The same model.

    Example::

        >>> with restored(model):
        ...     randomise_modules(model, ["fc"], seed=0)
        ...     maps = explain(model)  # on the randomised model
        >>> # model is the trained one again here
    """
    saved = {name: value.detach().clone() for name, value in _tensors(model)}
    modes = [(module, module.training) for module in model.modules()]
    try:
        yield model
    finally:
        with torch.no_grad():
            for name, value in _tensors(model):
                value.copy_(saved[name])
        for module, training in modes:
            module.training = training


def _tensors(model: nn.Module) -> Iterator[tuple[str, Tensor]]:
    yield from model.named_parameters(remove_duplicate=False)
    yield from model.named_buffers(remove_duplicate=False)


def randomise_modules(model: nn.Module, names: Sequence[str], seed: int) -> None:
    """Re-initialise the named modules of ``model`` in place.

    Every submodule with a ``reset_parameters`` method is reset by it, with
    torch's generators seeded with ``seed`` (the global generators are left
    as they were); parameters owned by modules without one are redrawn from a
    normal distribution with the trained tensor's mean and standard deviation.
    Use :func:`restored` to get the trained weights back.

    Args:
        model (nn.Module): The model.
        names (sequence of str): Dotted module names, e.g. ``["fc"]``.
        seed (int): Seed of the random weights.

    Raises:
        ValueError: If a name is not a module of ``model`` (with close names).
    """
    modules = [resolve_layer(model, name) for name in names]
    with torch.random.fork_rng(), torch.no_grad():
        torch.manual_seed(seed)
        generator = torch.Generator().manual_seed(seed)
        for module in modules:
            for part in module.modules():
                if hasattr(part, "reset_parameters"):
                    part.reset_parameters()
                    continue
                for parameter in part.parameters(recurse=False):
                    parameter.copy_(_redrawn(parameter, generator))


def _redrawn(parameter: Tensor, generator: torch.Generator) -> Tensor:
    noise = torch.randn(parameter.shape, generator=generator, dtype=torch.float64)
    std = float(parameter.double().std()) if parameter.numel() > 1 else 0.0
    mean = float(parameter.double().mean()) if std > 0 else 0.0
    return (noise * (std if std > 0 else 1.0) + mean).to(parameter)


def default_stages(model: nn.Module) -> list[Stage]:
    """The model's parameterised units from the output down, one per stage.

    The units are the model's children in registration order, with
    ``nn.Sequential`` and ``nn.ModuleList`` children expanded one level
    (e.g. ResNet's ``layer4.1``, EfficientNet's ``_blocks.15``); units
    without parameters are left out. Registration order is the order of the
    forward pass for most models; pass stages explicitly where it is not.

    Args:
        model (nn.Module): The model.

    Returns:
        list[tuple[str, ...]]: One single-module stage per unit, output first.
    """
    units = []
    for name, child in model.named_children():
        if isinstance(child, (nn.Sequential, nn.ModuleList)):
            units += [
                (f"{name}.{sub}", module) for sub, module in child.named_children()
            ]
        else:
            units.append((name, child))
    return [
        (name,)
        for name, unit in reversed(units)
        if next(unit.parameters(), None) is not None
    ]


def group_stages(stages: Sequence[Stage], n_stages: int) -> list[Stage]:
    """Merge consecutive stages into ``n_stages``, the first one left alone.

    The first stage (the logits, for :func:`default_stages`) stays on its
    own, as in the paper; the others are split into ``n_stages - 1``
    contiguous groups of nearly equal size.

    Args:
        stages (sequence of tuple[str, ...]): Stages, output first.
        n_stages (int): Number of stages wanted (at most ``len(stages)``).

    Returns:
        list[tuple[str, ...]]: The merged stages.

    Example::

        >>> group_stages([("fc",), ("c3",), ("c2",), ("c1",)], 3)
        [('fc',), ('c3', 'c2'), ('c1',)]
    """
    check_positive_int("n_stages", n_stages)
    if n_stages >= len(stages):
        return list(stages)
    if n_stages == 1:
        return [tuple(name for stage in stages for name in stage)]
    rest = np.array_split(np.arange(1, len(stages)), n_stages - 1)
    return [stages[0]] + [
        tuple(name for index in part for name in stages[index]) for part in rest
    ]


def stage_label(stage: Stage) -> str:
    """A short label: the module's name, or ``first..last`` for a group."""
    return stage[0] if len(stage) == 1 else f"{stage[0]}..{stage[-1]}"


def similarities(trained: np.ndarray, randomised: np.ndarray) -> dict[str, float]:
    """The :data:`SIMILARITIES` of two maps of the same shape.

    Args:
        trained (np.ndarray): ``(H, W)`` map of the trained model.
        randomised (np.ndarray): ``(H, W)`` map of the randomised model.

    Returns:
        dict[str, float]: Measure name -> value; a rank or Pearson
        correlation with a constant map is undefined (NaN).

    Example::

        >>> maps = np.random.default_rng(0).random((2, 64, 64))
        >>> similarities(maps[0], maps[0])["ssim"]
        1.0
    """
    from scipy.stats import ConstantInputWarning, spearmanr
    from skimage.feature import hog
    from skimage.metrics import structural_similarity

    if trained.shape != randomised.shape or trained.ndim != 2:
        raise ValueError(
            "randomised: expected an (H, W) map shaped like trained "
            f"{trained.shape}, got {randomised.shape}"
        )
    pair = [np.asarray(trained, np.float64), np.asarray(randomised, np.float64)]
    scaled = [_min_max(m) for m in pair]
    cell = min(HOG_CELL, *(s // 2 for s in trained.shape))
    descriptors = [
        hog(m, pixels_per_cell=(cell, cell), cells_per_block=(2, 2)) for m in scaled
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConstantInputWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        return {
            "spearman": float(spearmanr(pair[0].ravel(), pair[1].ravel())[0]),
            "spearman_abs": float(
                spearmanr(np.abs(pair[0]).ravel(), np.abs(pair[1]).ravel())[0]
            ),
            "ssim": float(structural_similarity(*scaled, data_range=1.0)),
            "hog": _pearson(*descriptors),
        }


def _min_max(values: np.ndarray) -> np.ndarray:
    span = values.max() - values.min()
    return (values - values.min()) / span if span > 0 else np.zeros_like(values)


def _pearson(first: np.ndarray, second: np.ndarray) -> float:
    if first.std() == 0 or second.std() == 0:
        return float("nan")
    return float(np.corrcoef(first, second)[0, 1])


@dataclass
class SanityResult:
    """What :func:`model_randomisation` measured.

    Args:
        model (str): Model name.
        layer (str): Explained layer.
        mode (str): ``"cascading"`` or ``"independent"``.
        stages (list[tuple[str, ...]]): The randomised stages, output first.
        n_images (int): Images compared.
        settings (dict): Steps, baseline and seed.
        values (dict): Method -> similarity -> ``(n_stages, n_images)`` array.
        examples (dict): Method -> ``(1 + n_stages, H, W)`` maps of the first
            image: the trained model's, then one per stage (for figures).
        image (np.ndarray): The first image, resized to the model input
            (``HxWx3`` uint8), under :attr:`examples`.
    """

    model: str
    layer: str
    mode: str
    stages: list[Stage]
    n_images: int
    settings: dict[str, Any]
    values: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    examples: dict[str, np.ndarray] = field(default_factory=dict)
    image: np.ndarray | None = None


def model_randomisation(
    bundle: ModelBundle,
    images: Sequence[np.ndarray],
    methods: Sequence[str],
    settings: MethodSettings | None = None,
    mode: str = "cascading",
    stages: Sequence[Stage] | None = None,
    seed: int | Sequence[int] = 0,
    batch_size: int = 8,
    progress: bool = True,
) -> SanityResult:
    """Compare each method's maps on the trained and the randomised model.

    The model is changed in place stage by stage and restored exactly at the
    end (see :func:`restored`), also on error. The explained class of every
    image is the trained model's prediction, kept for all stages.

    Args:
        bundle (ModelBundle): The trained model.
        images (sequence of np.ndarray): ``HxWx3`` uint8 RGB images.
        methods (sequence of str): Names in
            :data:`captum_igcam.app.methods.METHODS`.
        settings (MethodSettings, optional): Layer, steps, quadrature and
            baseline of the methods, as for ``captum-igcam explain``.
            Default: None (``MethodSettings()``)
        mode (str, optional): ``"cascading"`` or ``"independent"``.
            Default: "cascading"
        stages (sequence of tuple[str, ...], optional): Module groups to
            randomise, output first.
            Default: None (:func:`default_stages`)
        seed (int or sequence of int, optional): Stage ``k`` is randomised
            with seed ``seed + k``, or ``seed[k]`` for a sequence (e.g. the
            same seed for every stage, as Quantus's MPRT does).
            Default: 0
        batch_size (int, optional): Images per call of a method.
            Default: 8
        progress (bool, optional): Show a tqdm progress bar over stages.
            Default: True

    Returns:
        SanityResult: Per-image similarities for :func:`summarize_sanity`.

    Raises:
        ValueError: For an unknown method, mode or module name, no images
            or no stages.

    Example::

        >>> bundle = load_model()
        >>> photos = list(bundled_images().values())
        >>> result = model_randomisation(bundle, photos, ["gradcam", "igcam"])
        >>> summarize_sanity(result)["igcam"]["spearman_abs"][-1].mean
    """
    unknown = [name for name in methods if name not in METHODS]
    if unknown or not methods:
        raise ValueError(
            f"methods: expected names from {', '.join(METHODS)}, got "
            f"{', '.join(unknown) if unknown else 'none'}"
        )
    if mode not in MODES:
        raise ValueError(f"mode: expected one of {', '.join(MODES)}, got {mode!r}")
    if len(images) == 0:
        raise ValueError("images: expected at least one image")
    check_positive_int("batch_size", batch_size)
    model = bundle.model
    stages = [tuple(stage) for stage in (stages or default_stages(model))]
    if not stages:
        raise ValueError("stages: expected at least one stage of modules")
    for stage in stages:
        for name in stage:
            resolve_layer(model, name)
    seeds = (
        [seed + k for k in range(len(stages))] if isinstance(seed, int) else list(seed)
    )
    if len(seeds) != len(stages):
        raise ValueError(
            f"seed: expected one seed per stage ({len(stages)}), got {len(seeds)}"
        )
    settings = (settings or MethodSettings()).for_model(bundle)
    layer_name = settings.layer or bundle.layer_name
    layer = resolve_layer(model, layer_name)
    functions = {name: METHODS[name].build(model, layer, settings) for name in methods}
    inputs = torch.stack([bundle.preprocess(image) for image in images])
    baselines = torch.cat(
        [baseline_input(bundle, image, settings.baseline) for image in images]
    )
    with torch.no_grad():
        target = model(inputs).argmax(dim=1)
    result = SanityResult(
        model=bundle.name,
        layer=layer_name,
        mode=mode,
        stages=stages,
        n_images=len(images),
        settings={**settings.describe(), "seeds": seeds},
        image=_display_image(bundle, images[0]),
    )

    def explain_all() -> dict[str, Tensor]:
        size = (int(inputs.shape[2]), int(inputs.shape[3]))
        return {
            name: torch.cat(
                [
                    to_input_size(
                        function(
                            inputs[first : first + batch_size],
                            target[first : first + batch_size],
                            baselines[first : first + batch_size],
                        ).detach(),
                        size,
                    ).cpu()
                    for first in range(0, len(inputs), batch_size)
                ]
            )
            for name, function in functions.items()
        }

    bar = _progress_bar(len(stages) + 1, mode, progress)
    with restored(model):
        trained = explain_all()
        _advance(bar)
        per_stage = []
        for index, stage in enumerate(stages):
            if mode == "cascading":
                randomise_modules(model, stage, seeds[index])
                per_stage.append(_compare(trained, explain_all()))
            else:
                with restored(model):
                    randomise_modules(model, stage, seeds[index])
                    per_stage.append(_compare(trained, explain_all()))
            _advance(bar)
    if bar is not None:
        bar.close()
    for name in methods:
        result.values[name] = {
            measure: np.array([values[name][measure] for values, _ in per_stage])
            for measure in SIMILARITIES
        }
        first = [trained[name][0]] + [maps[name] for _, maps in per_stage]
        result.examples[name] = torch.stack(first).numpy()
    return result


def _compare(
    trained: dict[str, Tensor], randomised: dict[str, Tensor]
) -> tuple[dict[str, dict[str, list[float]]], dict[str, Tensor]]:
    """Per-image similarities of each method, and its first randomised map."""
    values = {}
    for name, maps in randomised.items():
        rows = [
            similarities(before.numpy(), after.numpy())
            for before, after in zip(trained[name], maps)
        ]
        values[name] = {m: [row[m] for row in rows] for m in SIMILARITIES}
    return values, {name: maps[0] for name, maps in randomised.items()}


def _display_image(bundle: ModelBundle, image: np.ndarray) -> np.ndarray:
    from PIL import Image

    size = (bundle.input_size, bundle.input_size)
    return np.asarray(Image.fromarray(image).convert("RGB").resize(size))


def _progress_bar(total: int, mode: str, show: bool) -> Any:
    if not show:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="stage", desc=f"sanity ({mode})")


def _advance(bar: Any) -> None:
    if bar is not None:
        bar.update(1)


def summarize_sanity(
    result: SanityResult, n_resamples: int = N_RESAMPLES, seed: int = 0
) -> dict[str, dict[str, list[Estimate]]]:
    """Mean similarity per stage with percentile-bootstrap 95% intervals.

    Args:
        result (SanityResult): From :func:`model_randomisation`.
        n_resamples (int, optional): Bootstrap resamples.
            Default: 2000
        seed (int, optional): Seed of the resampling.
            Default: 0

    Returns:
        dict: Method -> similarity -> one :class:`Estimate` per stage (NaN
        values, where a map is constant, left out).
    """
    return {
        name: {
            measure: [estimate(row, None, n_resamples, seed) for row in values]
            for measure, values in table.items()
        }
        for name, table in result.values.items()
    }


def compare_sanity(
    result: SanityResult,
    method: str,
    reference: str,
    measure: str,
    n_resamples: int = N_RESAMPLES,
    seed: int = 0,
) -> list[Estimate]:
    """Paired difference ``method - reference`` of a similarity, per stage.

    Negative means ``method``'s map changed more under randomisation (it
    depends more on the weights) on the same images.

    Args:
        result (SanityResult): From :func:`model_randomisation`.
        method (str): The method compared.
        reference (str): The method compared against.
        measure (str): A key of :data:`SIMILARITIES`.
        n_resamples (int, optional): Bootstrap resamples.
            Default: 2000
        seed (int, optional): Seed of the resampling.
            Default: 0

    Returns:
        list[Estimate]: One paired difference per stage.

    Raises:
        ValueError: If a method or the measure was not evaluated.
    """
    for name in (method, reference):
        if name not in result.values:
            raise ValueError(f"method: {name!r} was not evaluated")
    if measure not in SIMILARITIES:
        raise ValueError(
            f"measure: expected one of {', '.join(SIMILARITIES)}, got {measure!r}"
        )
    return [
        paired_difference(first, second, None, n_resamples, seed)
        for first, second in zip(
            result.values[method][measure], result.values[reference][measure]
        )
    ]


def sanity_table(result: SanityResult, summary: dict | None = None) -> str:
    """A Markdown table: one row per method and stage, mean [95% CI] per measure.

    Args:
        result (SanityResult): From :func:`model_randomisation`.
        summary (dict, optional): From :func:`summarize_sanity`.
            Default: None (computed here)

    Returns:
        str: The table, preceded by a line naming the model, layer and mode.
    """
    summary = summary or summarize_sanity(result)
    lines = [
        f"Model randomisation ({result.mode}): {result.model}, layer "
        f"{result.layer}, {result.n_images} images; similarity of each map "
        "to the trained model's, mean [95% CI] (lower: the map depends more "
        "on the weights); constant: images whose randomised map is constant "
        "(correlations undefined, left out)",
        "",
        "| method | randomised | "
        + " | ".join(SIMILARITIES.values())
        + " | constant |",
        "|---|---|" + "---|" * (len(SIMILARITIES) + 1),
    ]
    prefix = "up to " if result.mode == "cascading" else ""
    for name, table in summary.items():
        for index, stage in enumerate(result.stages):
            cells = [_interval(table[m][index]) for m in SIMILARITIES]
            cells.append(
                str(int(np.isnan(result.values[name]["spearman"][index]).sum()))
            )
            label = prefix + stage_label(stage)
            lines.append(f"| {name} | {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _interval(value: Estimate) -> str:
    if np.isnan(value.low):
        return f"{value.mean:.2f}"
    return f"{value.mean:.2f} [{value.low:.2f}, {value.high:.2f}]"


def sanity_json(result: SanityResult, summary: dict | None = None) -> dict[str, Any]:
    """The result as JSON-ready data: settings, stages, per-stage estimates.

    Args:
        result (SanityResult): From :func:`model_randomisation`.
        summary (dict, optional): From :func:`summarize_sanity`.
            Default: None (computed here)

    Returns:
        dict: ``model``, ``layer``, ``mode``, ``stages``, ``n_images``,
        ``settings`` and, per method and measure, ``mean``, ``ci95`` and the
        per-image ``values`` (``null`` where undefined) of every stage.
    """
    summary = summary or summarize_sanity(result)
    return {
        "model": result.model,
        "layer": result.layer,
        "mode": result.mode,
        "stages": [list(stage) for stage in result.stages],
        "n_images": result.n_images,
        "settings": result.settings,
        "methods": {
            name: {
                measure: {
                    "mean": [value.mean for value in estimates],
                    "ci95": [[value.low, value.high] for value in estimates],
                    "values": [
                        [None if np.isnan(v) else v for v in row.tolist()]
                        for row in result.values[name][measure]
                    ],
                }
                for measure, estimates in table.items()
            }
            for name, table in summary.items()
        },
    }


def randomisation_figure(
    result: SanityResult,
    summary: dict | None = None,
    methods: Sequence[str] | None = None,
    panel_size: float = 1.3,
) -> Any:
    """The paper's figure: maps down the randomisation, then similarity curves.

    The top grid shows, for the first image, each method's map (absolute
    value over its maximum, in grey, as Adebayo et al. draw them) on the
    trained model and after each stage; below, one panel per similarity
    measure with its mean and 95% interval per stage for every method.

    Args:
        result (SanityResult): From :func:`model_randomisation`.
        summary (dict, optional): From :func:`summarize_sanity`.
            Default: None (computed here)
        methods (sequence of str, optional): Methods to draw, in row order.
            Default: None (all, in the result's order)
        panel_size (float, optional): Side of a map panel in inches.
            Default: 1.3

    Returns:
        matplotlib.figure.Figure: The figure (save it with
        ``figure.savefig`` or :func:`captum_igcam.app.safe_files.atomic_save_figure`).
    """
    from matplotlib.figure import Figure

    summary = summary or summarize_sanity(result)
    methods = list(methods or result.values)
    columns = len(result.stages) + 2
    width = panel_size * columns
    maps_height = panel_size * len(methods)
    figure = Figure(figsize=(width, maps_height + 2.6), layout="constrained")
    top, bottom = figure.subfigures(2, 1, height_ratios=[maps_height, 2.6])
    grid = top.subplots(len(methods), columns, squeeze=False)
    titles = ["input", "trained"] + [
        ("up to " if result.mode == "cascading" else "") + stage_label(stage)
        for stage in result.stages
    ]
    for row, name in enumerate(methods):
        for column, ax in enumerate(grid[row]):
            ax.set_xticks([])
            ax.set_yticks([])
            if column == 0:
                ax.imshow(result.image)
                ax.set_ylabel(METHODS[name].title, fontsize=7)
            else:
                shown = np.abs(result.examples[name][column - 1])
                peak = shown.max()
                ax.imshow(
                    shown / peak if peak > 0 else shown, cmap="gray", vmin=0, vmax=1
                )
            if row == 0:
                ax.set_title(titles[column], fontsize=6, rotation=30, loc="left")
    curves = bottom.subplots(1, len(SIMILARITIES), squeeze=False)[0]
    positions = np.arange(len(result.stages))
    for ax, (measure, title) in zip(curves, SIMILARITIES.items()):
        for name in methods:
            estimates = summary[name][measure]
            means = [value.mean for value in estimates]
            ax.plot(
                positions, means, marker="o", markersize=3, label=METHODS[name].title
            )
            ax.fill_between(
                positions,
                [value.low for value in estimates],
                [value.high for value in estimates],
                alpha=0.2,
            )
        ax.axhline(0.0, color="black", linewidth=0.5)
        ax.set_title(title, fontsize=8)
        ax.set_xticks(positions, [stage_label(s) for s in result.stages], fontsize=5)
        ax.tick_params(axis="x", labelrotation=60)
        ax.tick_params(axis="y", labelsize=6)
    curves[0].set_ylabel("similarity to trained", fontsize=7)
    curves[0].legend(fontsize=5, loc="best")
    bottom.suptitle(
        f"{result.model}, layer {result.layer}: {result.mode} randomisation, "
        f"{result.n_images} images (mean, 95% CI)",
        fontsize=8,
    )
    return figure
