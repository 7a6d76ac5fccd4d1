"""The variant study: Grad-CAM against Integrated Grad-CAM's variants, per layer.

For every model, every composite and every explained layer, the script
computes Grad-CAM and the variants of Integrated Grad-CAM that the class's
switches reach (baseline activations subtracted or not, the input baseline,
the quadrature rule and steps, the per-step ReLU), and scores them with the
localisation and faithfulness metrics of :mod:`captum_igcam.evaluation.metrics`.
It also measures the baseline term ``sum_k w_k(x_a) A_k(x')`` that the
figure's formula subtracts (its mean and spatial spread per layer).

One backward pass per path point serves all layers at once: forward hooks keep
each layer's output and its gradient, so a variant's map is assembled from the
same per-step activations and gradients that ``IntegratedLayerGradCam`` uses.
On the first batch the script checks its maps against the class itself.

The raw per-image values go to a JSON file; ``--report`` turns such a file
into the tables of ``docs/variants.md`` (means, paired differences against
Grad-CAM with bootstrap 95% confidence intervals) and the mechanism figure.

Run (the published numbers; a GPU makes it minutes)::

    python benchmarks/studies/variant_study.py --n 200 --seeds 0 1 --batch 20 \\
        --chunk 16 --out benchmarks/studies/variant_study.json.gz
    python benchmarks/studies/variant_study.py \\
        --report benchmarks/studies/variant_study.json.gz
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

# benchmarks/lib: the results files every script writes.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))

import numpy as np
import results_file
import torch
from captum.attr._utils.approximation_methods import approximation_parameters
from torch import Tensor, nn
from torchvision.transforms.v2 import functional as transforms

from captum_igcam import IntegratedLayerGradCam, evaluation
from captum_igcam.app.models import ModelBundle, load_model, resolve_layer
from captum_igcam.evaluation import metrics
from captum_igcam.evaluation.datasets import Sample, composites
from captum_igcam.evaluation.statistics import Estimate, estimate, paired_difference

#: This script's name in the results files it writes.
SCRIPT = Path(__file__).name

MODELS = ("efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2")
HEAD_LAYERS = ("_bn1", "_head_activation")
#: Standard deviation (input pixels) of the blurred input baseline.
BLUR_SIGMA = 10.0


@dataclass(frozen=True)
class StudyPath:
    """One straight path from a baseline, integrated with one rule."""

    baseline: str
    method: str
    n_steps: int


@dataclass(frozen=True)
class Variant:
    """An Integrated Grad-CAM variant: a path and the two switches."""

    name: str
    path: StudyPath
    subtract: bool = True
    per_step_relu: bool = True


GL16 = {b: StudyPath(b, "gausslegendre", 16) for b in ("zero", "black", "blurred")}
VARIANTS = (
    Variant("paper/zero", GL16["zero"]),
    Variant("paper/black", GL16["black"]),
    Variant("paper/blurred", GL16["blurred"]),
    Variant("nosub/zero", GL16["zero"], subtract=False),
    Variant("nosub/black", GL16["black"], subtract=False),
    Variant("nosub/blurred", GL16["blurred"], subtract=False),
    Variant("paper/black/signed", GL16["black"], per_step_relu=False),
    Variant("nosub/black/signed", GL16["black"], subtract=False, per_step_relu=False),
    Variant("notebook/black", StudyPath("black", "riemann_left", 16), subtract=False),
    Variant("paper/black/riemann_right", StudyPath("black", "riemann_right", 16)),
    Variant("paper/black/trapezoid", StudyPath("black", "riemann_trapezoid", 16)),
    Variant("paper/black/gl8", StudyPath("black", "gausslegendre", 8)),
    Variant("paper/black/gl32", StudyPath("black", "gausslegendre", 32)),
)
#: Methods whose deletion/insertion curves are computed (the others get the
#: cheaper Average Drop / Increase only).
CURVE_METHODS = (
    "gradcam",
    "paper/zero",
    "paper/black",
    "nosub/black",
    "notebook/black",
)


def middle_block(bundle: ModelBundle) -> str:
    """The last block at stride 16 (``_blocks.10`` in EfficientNet-Lite0)."""
    sizes: dict[str, int] = {}
    handles = [
        block.register_forward_hook(
            lambda module, inputs, output, name=f"_blocks.{index}": sizes.__setitem__(
                name, output.shape[-1]
            )
        )
        for index, block in enumerate(bundle.model._blocks)
    ]
    try:
        with torch.no_grad():
            side = bundle.input_size
            bundle.model(torch.zeros(1, 3, side, side, device=bundle.device))
    finally:
        for handle in handles:
            handle.remove()
    target = -(-bundle.input_size // 16)
    return [name for name, width in sizes.items() if width == target][-1]


class LayerRecorder:
    """Keeps the output of several layers and, after backward, their gradients."""

    def __init__(self, model: nn.Module, names: list[str]) -> None:
        self.outputs: dict[str, Tensor] = {}
        self.handles = [
            resolve_layer(model, name).register_forward_hook(self._keeper(name))
            for name in names
        ]

    def _keeper(self, name: str):
        def hook(module: nn.Module, inputs: object, output: Tensor) -> None:
            if output.requires_grad:
                output.retain_grad()
            self.outputs[name] = output

        return hook

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def baselines_for(bundle: ModelBundle, inputs: Tensor) -> dict[str, Tensor]:
    """The input baselines: zeros (after normalisation), black, blurred."""
    mean = torch.tensor(bundle.mean, device=inputs.device).view(1, 3, 1, 1)
    std = torch.tensor(bundle.std, device=inputs.device).view(1, 3, 1, 1)
    kernel = 2 * round(3 * BLUR_SIGMA) + 1
    return {
        "zero": torch.zeros_like(inputs),
        "black": ((0 - mean) / std).expand_as(inputs).contiguous(),
        "blurred": transforms.gaussian_blur(inputs, [kernel, kernel], [BLUR_SIGMA]),
    }


def path_terms(
    model: nn.Module,
    recorder: LayerRecorder,
    inputs: Tensor,
    baseline: Tensor,
    target: Tensor,
    points: list[float],
    chunk: int,
) -> dict[str, tuple[Tensor, Tensor]]:
    """Per path point and layer: spatially averaged gradients and activations.

    Returns, per layer, ``w`` of shape ``(M, N, K)`` and ``A`` of shape
    ``(M, N, K, h, w)`` for the ``M`` points ``x' + a (x - x')``.
    """
    points = torch.tensor(points, device=inputs.device)
    collected: dict[str, list[tuple[Tensor, Tensor]]] = {}
    for first in range(0, len(points), chunk):
        alpha = points[first : first + chunk].view(-1, 1, 1, 1, 1)
        scaled = (baseline + alpha * (inputs - baseline)).flatten(0, 1)
        scaled.requires_grad_(True)
        scores = model(scaled).gather(1, target.repeat(len(alpha)).view(-1, 1))
        scores.sum().backward()
        for name, output in recorder.outputs.items():
            shape = (len(alpha), len(inputs), *output.shape[1:])
            gradient = output.grad.mean(dim=(2, 3)).view(shape[:3])
            collected.setdefault(name, []).append(
                (gradient, output.detach().view(shape))
            )
        model.zero_grad(set_to_none=True)
    return {
        name: (torch.cat([g for g, _ in parts]), torch.cat([a for _, a in parts]))
        for name, parts in collected.items()
    }


def variant_map(
    weights: Tensor,
    gradients: Tensor,
    activations: Tensor,
    baseline_activations: Tensor,
    variant: Variant,
) -> Tensor:
    """``sum_m s_m relu?(sum_k w_mk (A_mk - A'_k?))`` as ``(N, 1, h, w)``."""
    if variant.subtract:
        activations = activations - baseline_activations.unsqueeze(0)
    per_step = torch.einsum("mnk,mnkhw->mnhw", gradients, activations)
    if variant.per_step_relu:
        per_step = per_step.relu()
    return torch.einsum("m,mnhw->nhw", weights.to(per_step.dtype), per_step)[:, None]


def study_model(
    name: str,
    samples: list[Sample],
    device: torch.device,
    batch: int,
    chunk: int,
    curve_steps: int,
    check: bool,
) -> dict[str, object]:
    """All methods x layers x metrics for one model; per-image values."""
    bundle = load_model(name, device=str(device))
    model = bundle.model
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    layers = [*HEAD_LAYERS, middle_block(bundle)]
    recorder = LayerRecorder(model, layers)
    methods = ["gradcam", "gradcam-sub/black", *(v.name for v in VARIANTS)]
    values: dict[str, dict[str, dict[str, list[float]]]] = {
        layer: {method: {} for method in methods} for layer in layers
    }
    mechanism: dict[str, dict[str, list[float]]] = {layer: {} for layer in layers}
    info: dict[str, list] = {"label": [], "area": [], "correct": []}
    paths = sorted({v.path for v in VARIANTS}, key=str)
    started = time.perf_counter()
    try:
        for first in range(0, len(samples), batch):
            chunk_samples = samples[first : first + batch]
            inputs = torch.stack([bundle.preprocess(s.image) for s in chunk_samples])
            with torch.no_grad():
                logits = model(inputs)
            target = torch.tensor(
                [
                    max(s.annotations[0].classes, key=lambda c: logits[i, c].item())
                    for i, s in enumerate(chunk_samples)
                ],
                device=device,
            )
            predicted = logits.argmax(dim=1)
            correct = (predicted == target).cpu()
            baselines = baselines_for(bundle, inputs)
            with torch.no_grad():
                baseline_activations = {}
                for key, baseline in baselines.items():
                    model(baseline)
                    baseline_activations[key] = {
                        layer: recorder.outputs[layer].detach() for layer in layers
                    }
            maps: dict[str, dict[str, Tensor]] = {layer: {} for layer in layers}
            # Grad-CAM: the path's end point alone.
            end = path_terms(model, recorder, inputs, inputs, target, [1.0], 1)
            for layer in layers:
                gradient, activation = end[layer]
                raw = torch.einsum("mnk,mnkhw->nhw", gradient, activation)
                maps[layer]["gradcam"] = raw.relu()[:, None]
                term = torch.einsum(
                    "mnk,nkhw->nhw", gradient, baseline_activations["black"][layer]
                )
                maps[layer]["gradcam-sub/black"] = (raw - term).relu()[:, None]
                _record_mechanism(mechanism[layer], "gradcam", raw)
            for path in paths:
                step_sizes, alphas = approximation_parameters(path.method)
                weights = torch.tensor(step_sizes(path.n_steps), device=device)
                terms = path_terms(
                    model,
                    recorder,
                    inputs,
                    baselines[path.baseline],
                    target,
                    alphas(path.n_steps),
                    chunk,
                )
                for layer in layers:
                    gradients, activations = terms[layer]
                    reference = baseline_activations[path.baseline][layer]
                    for variant in VARIANTS:
                        if variant.path == path:
                            maps[layer][variant.name] = variant_map(
                                weights, gradients, activations, reference, variant
                            )
                    if path in GL16.values():
                        term = torch.einsum(
                            "m,mnk,nkhw->nhw", weights.float(), gradients, reference
                        )
                        _record_mechanism(mechanism[layer], path.baseline, term)
            if check and first == 0:
                _check_against_class(model, bundle, inputs, target, baselines, maps)
            for index, sample in enumerate(chunk_samples):
                annotation = sample.annotations[0]
                size = sample.image.shape[:2]
                info["label"].append(annotation.label)
                info["area"].append(metrics.box_area_fraction(annotation.boxes, size))
                info["correct"].append(bool(correct[index]))
            for layer in layers:
                _score(
                    model,
                    inputs,
                    chunk_samples,
                    maps[layer],
                    target,
                    correct,
                    values[layer],
                    curve_steps,
                )
            print(
                f"{name}: {first + len(chunk_samples)}/{len(samples)} images, "
                f"{time.perf_counter() - started:.0f} s",
                flush=True,
            )
    finally:
        recorder.remove()
    return {
        "model": name,
        "input_size": bundle.input_size,
        "layers": layers,
        "info": info,
        "values": values,
        "mechanism": mechanism,
        "seconds": time.perf_counter() - started,
    }


def _record_mechanism(record: dict[str, list[float]], key: str, term: Tensor) -> None:
    """Mean, spatial std and range of a per-image map ``(N, h, w)``."""
    flat = term.flatten(1).double()
    record.setdefault(f"{key}/mean", []).extend(flat.mean(1).tolist())
    record.setdefault(f"{key}/spatial_std", []).extend(flat.std(1).tolist())
    record.setdefault(f"{key}/range", []).extend((flat.amax(1) - flat.amin(1)).tolist())


def _score(
    model: nn.Module,
    inputs: Tensor,
    samples: list[Sample],
    maps: dict[str, Tensor],
    target: Tensor,
    correct: Tensor,
    values: dict[str, dict[str, list[float]]],
    curve_steps: int,
) -> None:
    """Localisation on every image, faithfulness where the prediction is right."""
    names = list(maps)
    for index, sample in enumerate(samples):
        size = sample.image.shape[:2]
        boxes = [sample.annotations[0].boxes] * len(names)
        stacked = torch.cat([maps[name][index : index + 1] for name in names]).cpu()
        hits = metrics.pointing_game_hits(stacked, boxes, size)
        ebpg = metrics.energy_pointing_game(stacked, boxes, size)
        auroc = metrics.localisation_auroc(stacked, boxes, size)
        for position, name in enumerate(names):
            record = values[name]
            record.setdefault("pointing_game", []).append(float(hits[position]))
            record.setdefault("ebpg", []).append(float(ebpg[position]))
            record.setdefault("auroc", []).append(float(auroc[position]))
    keep = correct.nonzero().flatten().tolist()
    # Faithfulness: NaN where the model is wrong, so values stay image-aligned.
    for name in names:
        for metric in (
            "avg_drop",
            "increase_in_confidence",
            "deletion_auc",
            "insertion_auc",
        ):
            values[name].setdefault(metric, []).extend([float("nan")] * len(samples))
    if not keep:
        return
    chosen = torch.tensor(keep, device=inputs.device)
    subset, subset_target = inputs[chosen], target[chosen]
    offset = len(values[names[0]]["avg_drop"]) - len(samples)
    all_maps = torch.cat([maps[name][chosen] for name in names])
    repeated = subset.repeat(len(names), 1, 1, 1)
    repeated_target = subset_target.repeat(len(names))
    original, masked = metrics.masked_confidence(
        model, repeated, all_maps, repeated_target
    )
    drop = metrics.average_drop(original, masked).view(len(names), -1)
    rise = metrics.increase_in_confidence(original, masked).view(len(names), -1)
    curve_names = [name for name in names if name in CURVE_METHODS]
    curve_maps = torch.cat([maps[name][chosen] for name in curve_names])
    curve_inputs = subset.repeat(len(curve_names), 1, 1, 1)
    curve_target = subset_target.repeat(len(curve_names))
    aucs = {
        mode: metrics.curve_auc(
            metrics.perturbation_curve(
                model,
                curve_inputs,
                curve_maps,
                mode,
                target=curve_target,
                n_steps=curve_steps,
                batch_size=256,
            )
        ).view(len(curve_names), -1)
        for mode in ("deletion", "insertion")
    }
    for position, name in enumerate(names):
        for slot, image in enumerate(keep):
            record = values[name]
            record["avg_drop"][offset + image] = float(drop[position, slot])
            record["increase_in_confidence"][offset + image] = float(
                rise[position, slot]
            )
            if name in curve_names:
                row = curve_names.index(name)
                for mode, auc in aucs.items():
                    record[f"{mode}_auc"][offset + image] = float(auc[row, slot])


def _check_against_class(
    model: nn.Module,
    bundle: ModelBundle,
    inputs: Tensor,
    target: Tensor,
    baselines: dict[str, Tensor],
    maps: dict[str, dict[str, Tensor]],
) -> None:
    """The study's maps equal IntegratedLayerGradCam's for three variants."""
    for layer in maps:
        explainer = IntegratedLayerGradCam(model, resolve_layer(model, layer))
        for name in ("paper/zero", "nosub/black", "notebook/black"):
            variant = next(v for v in VARIANTS if v.name == name)
            expected = explainer.attribute(
                inputs,
                target=target,
                baselines=baselines[variant.path.baseline],
                n_steps=variant.path.n_steps,
                method=variant.path.method,
                subtract_baseline_activations=variant.subtract,
                per_step_relu=variant.per_step_relu,
            )
            scale = expected.abs().max().clamp(min=1e-12)
            error = float((maps[layer][name] - expected).abs().max() / scale)
            print(f"check {layer} {name}: max relative difference {error:.2e}")
            if error > 1e-3:  # float32 sums of many products
                raise AssertionError(f"{layer} {name} differs from the class: {error}")


def write_json(path: Path, results: dict) -> None:
    """Per-image values rounded to 5 decimals; gzip-compressed for ``.gz``."""

    def rounded(value: object) -> object:
        if isinstance(value, float):
            return round(value, 5)
        if isinstance(value, list):
            return [rounded(item) for item in value]
        if isinstance(value, dict):
            return {key: rounded(item) for key, item in value.items()}
        return value

    results_file.write(path, rounded(results), SCRIPT, separators=(",", ":"))


def run_study(args: argparse.Namespace) -> None:
    device = torch.device(
        "cuda"
        if args.device == "auto" and torch.cuda.is_available()
        else ("cpu" if args.device == "auto" else args.device)
    )
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    if args.threads:
        torch.set_num_threads(args.threads)
    results: dict[str, object] = {
        "settings": {
            "n_per_seed": args.n,
            "seeds": args.seeds,
            "steps": 16,
            "curve_steps": args.curve_steps,
            "device": str(device)
            + (f" ({torch.cuda.get_device_name()})" if device.type == "cuda" else ""),
            "torch": torch.__version__,
            "blur_sigma": BLUR_SIGMA,
        },
        "runs": [],
    }
    for seed in args.seeds:
        samples = list(composites(args.n, seed))
        for name in args.models:
            run = study_model(
                name,
                samples,
                device,
                args.batch,
                args.chunk,
                args.curve_steps,
                check=args.check,
            )
            run["seed"] = seed
            results["runs"].append(run)
            write_json(Path(args.out), results)
            print(f"wrote {args.out} ({name}, seed {seed})", flush=True)


LOCALISATION = ("pointing_game", "ebpg", "auroc")
FAITHFULNESS = ("avg_drop", "increase_in_confidence", "deletion_auc", "insertion_auc")
#: Metric -> column title: the benchmark's own titles.
HEADERS = {metric.name: metric.title for metric in evaluation.METRICS}
#: Object-size bins by the share of the image the box covers.
SIZE_BINS = (
    (0.0, 0.06, "small (< 6 %)"),
    (0.06, 0.12, "medium"),
    (0.12, 1.01, "large (>= 12 %)"),
)


def pooled(runs: list[dict], model: str) -> dict:
    """One model's runs (seeds) concatenated image by image."""
    chosen = [run for run in runs if run["model"] == model]
    merged = {"layers": chosen[0]["layers"], "info": {}, "values": {}, "mechanism": {}}
    for run in chosen:
        for key, column in run["info"].items():
            merged["info"].setdefault(key, []).extend(column)
        for layer, methods in run["values"].items():
            for method, metric_values in methods.items():
                target = merged["values"].setdefault(layer, {}).setdefault(method, {})
                for metric, column in metric_values.items():
                    target.setdefault(metric, []).extend(column)
        for layer, columns in run["mechanism"].items():
            for key, column in columns.items():
                merged["mechanism"].setdefault(layer, {}).setdefault(key, []).extend(
                    column
                )
    merged["seeds"] = [run["seed"] for run in chosen]
    return merged


def _fmt(value: Estimate, digits: int = 3, signed: bool = False) -> str:
    sign = "+" if signed else ""
    if np.isnan(value.low):
        return f"{value.mean:{sign}.{digits}f}"
    return (
        f"{value.mean:{sign}.{digits}f} "
        f"[{value.low:{sign}.{digits}f}, {value.high:{sign}.{digits}f}]"
    )


def _summary(values: list[float], metric: str, labels: list[str]) -> Estimate:
    return estimate(values, labels if metric == "pointing_game" else None)


def _digits(metric: str) -> int:
    return 1 if metric in ("avg_drop", "increase_in_confidence") else 3


def write_report(path: Path) -> None:
    """Tables (Markdown beside the JSON) and the mechanism figure."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        data = json.load(handle)
    settings = data["settings"]
    models = list(dict.fromkeys(run["model"] for run in data["runs"]))
    lines = [
        "# Variant study: raw tables",
        "",
        f"Generated by `python benchmarks/studies/variant_study.py --report {path}`. "
        f"Settings: {json.dumps(settings)}.",
        "",
    ]
    summary: dict[str, dict] = {}
    for model in models:
        merged = pooled(data["runs"], model)
        info = merged["info"]
        labels = info["label"]
        n = len(labels)
        accuracy = estimate([float(c) for c in info["correct"]])
        lines += [
            f"## {model}",
            "",
            f"{n} composites (seeds {merged['seeds']}); top-1 accuracy "
            f"{_fmt(accuracy)}; faithfulness on the {sum(info['correct'])} "
            "correctly classified.",
            "",
        ]
        summary[model] = {"n": n, "accuracy": accuracy.mean, "layers": {}}
        for layer in merged["layers"]:
            methods = merged["values"][layer]
            reference = methods["gradcam"]
            layer_summary = summary[model]["layers"].setdefault(layer, {})
            lines += [
                f"### {model}, layer `{layer}`",
                "",
                "Grad-CAM: "
                + "; ".join(
                    f"{HEADERS[m]} "
                    f"{_fmt(_summary(reference[m], m, labels), _digits(m))}"
                    for m in (*LOCALISATION, *FAITHFULNESS)
                    if not np.all(np.isnan(reference[m]))
                ),
                "",
                "Paired difference to Grad-CAM, mean [95% CI]:",
                "",
                "| variant | "
                + " | ".join(HEADERS[m] for m in (*LOCALISATION, *FAITHFULNESS))
                + " |",
                "|---|" + "---|" * (len(LOCALISATION) + len(FAITHFULNESS)),
            ]
            for method, columns in methods.items():
                if method == "gradcam":
                    continue
                cells = []
                for metric in (*LOCALISATION, *FAITHFULNESS):
                    if np.all(np.isnan(columns[metric])):
                        cells.append("")
                        continue
                    difference = paired_difference(
                        columns[metric],
                        reference[metric],
                        labels if metric == "pointing_game" else None,
                    )
                    layer_summary.setdefault(method, {})[metric] = difference
                    cells.append(_fmt(difference, _digits(metric), signed=True))
                lines.append(f"| {method} | " + " | ".join(cells) + " |")
            areas = np.asarray(info["area"])
            label_array = np.asarray(labels)
            lines += breakdown(
                "By object size (share of the image in the box)",
                methods,
                {
                    f"{title} (n={int(((areas >= low) & (areas < high)).sum())})": (
                        areas >= low
                    )
                    & (areas < high)
                    for low, high, title in SIZE_BINS
                },
            )
            lines += breakdown(
                "By class",
                methods,
                {label: label_array == label for label in sorted(set(labels))},
            )
            lines.append("")
        lines += mechanism_table(model, merged)
    markdown = path.parent / (path.name.split(".")[0] + ".md")
    markdown.write_text("\n".join(lines) + "\n")
    mechanism_figure(data, models, Path("docs/images/variant_mechanism.png"))
    print(f"wrote {markdown} and docs/images/variant_mechanism.png")


BREAKDOWN_METHODS = (
    "gradcam",
    "paper/zero",
    "paper/black",
    "nosub/black",
    "notebook/black",
)


def breakdown(title: str, methods: dict, groups: dict[str, np.ndarray]) -> list[str]:
    """Mean EBPG / pixel AUROC / pointing game of a few methods per group."""
    lines = [
        f"{title}: mean EBPG / pixel AUROC / pointing game (hit rate).",
        "",
        "| variant | " + " | ".join(groups) + " |",
        "|---|" + "---|" * len(groups),
    ]
    for method in BREAKDOWN_METHODS:
        cells = []
        for chosen in groups.values():
            if not chosen.any():
                cells.append("n/a")
                continue
            column = {m: np.asarray(methods[method][m])[chosen] for m in LOCALISATION}
            cells.append(
                f"{column['ebpg'].mean():.3f} / {np.nanmean(column['auroc']):.3f} / "
                f"{column['pointing_game'].mean():.2f}"
            )
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def mechanism_table(model: str, merged: dict) -> list[str]:
    """The baseline term ``sum_k w_k(x_a) A_k(x')`` against Grad-CAM's map."""
    lines = [
        f"### {model}: the baseline term per layer",
        "",
        "Mean over images of each map's spatial mean, spatial std and range "
        "(max - min); the baseline term is averaged over the path with the "
        "quadrature weights (16 Gauss-Legendre points).",
        "",
        "| layer | map | spatial mean | spatial std | range |",
        "|---|---|---|---|---|",
    ]
    for layer in merged["layers"]:
        columns = merged["mechanism"][layer]
        for key in ("gradcam", "zero", "black", "blurred"):
            title = (
                "Grad-CAM map (before ReLU)"
                if key == "gradcam"
                else f"baseline term, {key}"
            )
            lines.append(
                f"| `{layer}` | {title} | {np.mean(columns[key + '/mean']):+.4f} | "
                f"{np.mean(columns[key + '/spatial_std']):.4f} | "
                f"{np.mean(columns[key + '/range']):.4f} |"
            )
    return [*lines, ""]


def mechanism_figure(data: dict, models: list[str], out: Path) -> None:
    """Spread and offset of the baseline term relative to Grad-CAM's map."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    width = 0.12
    merged = {model: pooled(data["runs"], model) for model in models}
    layer_keys = ["_blocks (stride 16)", "_bn1", "_head_activation"]
    for offset, model in enumerate(models):
        for slot, baseline in enumerate(("zero", "black")):
            position = np.arange(3) + (offset * 2 + slot - 2.5) * width
            ratios_mean, ratios_std = [], []
            for key in layer_keys:
                layer = next(
                    name
                    for name in merged[model]["layers"]
                    if name == key
                    or (key.startswith("_blocks") and name.startswith("_blocks"))
                )
                columns = merged[model]["mechanism"][layer]
                scale = np.asarray(columns["gradcam/range"])
                ratios_mean.append(np.mean(np.abs(columns[f"{baseline}/mean"]) / scale))
                ratios_std.append(
                    np.mean(np.asarray(columns[f"{baseline}/spatial_std"]) / scale)
                )
            label = f"{model.split('-')[-1]}, {baseline}"
            axes[0].bar(position, ratios_mean, width, label=label)
            axes[1].bar(position, ratios_std, width, label=label)
    for axis, title in zip(
        axes,
        (
            "|spatial mean| of the baseline term / Grad-CAM range",
            "spatial std of the baseline term / Grad-CAM range",
        ),
    ):
        axis.set_xticks(np.arange(3), layer_keys)
        axis.set_title(title, fontsize=9)
    axes[1].legend(fontsize=7, ncol=2)
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--n", type=int, default=64, help="composites per seed")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--curve-steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=8, help="images per pass")
    parser.add_argument("--chunk", type=int, default=8, help="path points per pass")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--no-check", dest="check", action="store_false")
    parser.add_argument("--out", default="benchmarks/studies/variant_study.json.gz")
    parser.add_argument("--report", metavar="JSON", help="write the report of a run")
    args = parser.parse_args()
    if args.report:
        write_report(Path(args.report))
    else:
        run_study(args)


if __name__ == "__main__":
    main()
