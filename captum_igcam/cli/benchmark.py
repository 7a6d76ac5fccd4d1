"""``captum-igcam benchmark``: compare attribution methods on a data set.

Prints a Markdown table (one row per method, mean and bootstrap 95%
confidence interval of each metric, seconds per image) and, with ``--json``,
writes the numbers to a file.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from typing import Any

from captum_igcam.app.errors import UsageError
from captum_igcam.cli import _clock, _options
from captum_igcam.evaluation.defaults import DEFAULT_METHODS

#: ``--quick``'s values for the options not given. ``--steps`` otherwise has
#: the default of every command (``MethodSettings.n_steps``).
QUICK = {"n": 4, "steps": 10, "curve_steps": 10}
DEFAULTS = {"n": 20, "curve_steps": 20}
REFERENCE_METHOD = "gradcam"
#: Flag (parsed attribute) -> the metric family it turns on
#: (``captum_igcam.evaluation.METRIC_FAMILIES``). A new family: register it
#: in the evaluation room, add its flag in :func:`add_arguments` and here.
FAMILY_FLAGS = {"captum_metrics": "captum", "road": "road"}


NAME = "benchmark"
HELP = "compare attribution methods with localisation and faithfulness metrics"
DESCRIPTION = (
    "Compare attribution methods on a data set. Localisation metrics "
    "(pointing game, energy-based pointing game, pixel AUROC) need boxes "
    "and explain the annotated class; "
    "faithfulness metrics (Average Drop %, Increase in Confidence %, "
    "deletion/insertion AUC) explain the model's prediction. The model "
    "and attribution options mean what they mean for explain (the "
    "baseline of the integrated methods is black by default). Each model "
    "pass stays within --memory-budget."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the arguments of ``benchmark``."""
    _options.add_settings_options(parser)
    _options.add_methods_option(parser, DEFAULT_METHODS)
    parser.add_argument(
        "--dataset",
        default="composites",
        help="composites (built in), imagenet-loc:PATH (ILSVRC2012 validation "
        "images with CLS-LOC boxes: the per-image XML files or "
        "LOC_val_solution.csv + LOC_synset_mapping.txt), voc:PATH (PASCAL VOC "
        "layout, needs --class-map) or folder:PATH (images, faithfulness "
        "only); default: composites",
    )
    parser.add_argument(
        "--class-map",
        metavar="FILE",
        help='JSON mapping VOC class names to model outputs, e.g. {"cat": [281, 285]}',
    )
    parser.add_argument(
        "--n",
        type=_options.positive_int,
        help=f"number of images (default {DEFAULTS['n']}, quick {QUICK['n']})",
    )
    parser.add_argument(
        "--curve-steps",
        type=_options.positive_int,
        help="deletion/insertion steps "
        f"(default {DEFAULTS['curve_steps']}, quick {QUICK['curve_steps']})",
    )
    parser.add_argument(
        "--batch-images",
        type=_options.positive_int,
        default=1,
        help="images per model pass (default 1: the progress bar moves per "
        "image); results do not depend on it",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"few images and steps (minutes on a CPU): --n {QUICK['n']} "
        f"--steps {QUICK['steps']} --curve-steps {QUICK['curve_steps']} "
        "unless given",
    )
    parser.add_argument(
        "--captum-metrics",
        action="store_true",
        help="also compute Captum's infidelity and sensitivity_max (slow)",
    )
    parser.add_argument(
        "--road",
        action="store_true",
        help="also score ROAD (noisy linear imputation), most and least "
        "relevant first, beside deletion and insertion",
    )
    parser.add_argument(
        "--sanity",
        type=_sanity_modes,
        metavar="MODES",
        help="also run the model-randomisation sanity checks on the same "
        "images: cascading, independent or both, comma-separated",
    )
    parser.add_argument(
        "--sanity-stages",
        type=_options.positive_int,
        metavar="K",
        help="randomise in K stages: the output layer, then the other units "
        "in K-1 groups (default: one stage per unit)",
    )
    parser.add_argument("--json", metavar="FILE", help="write the results as JSON")
    parser.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    parser.add_argument(
        "--no-progress", action="store_true", help="hide the progress bar"
    )


def run(args: argparse.Namespace) -> int:
    """Run the benchmark described by parsed arguments."""
    preset = QUICK if args.quick else DEFAULTS
    quick_steps = {"n_steps": QUICK["steps"]} if args.quick else {}
    settings = _options.settings_from_args(args, **quick_steps)
    settings.check_device()
    n = preset["n"] if args.n is None else args.n
    curve_steps = (
        preset["curve_steps"] if args.curve_steps is None else args.curve_steps
    )

    if args.json and os.path.lexists(args.json):
        raise UsageError(
            f"--json: {args.json!r} exists; the benchmark writes only new files"
        )
    _clock.announce_start_up(settings.model)
    from captum_igcam import evaluation
    from captum_igcam.evaluation.datasets import load_dataset, read_class_map

    families = [family for flag, family in FAMILY_FLAGS.items() if getattr(args, flag)]
    try:
        if args.class_map:
            read_class_map(args.class_map)  # a broken file fails before the model
        bundle = settings.load_model()
        dataset = load_dataset(
            args.dataset, n, seed=args.seed, class_map=args.class_map
        )
        for line in dataset.skipped:
            print(f"benchmark: left out {line}", file=sys.stderr)
        if len(dataset) == 0:
            raise UsageError(
                f"--dataset: no usable images in {args.dataset}"
                + (
                    f" ({len(dataset.skipped)} objects left out)"
                    if dataset.skipped
                    else ""
                )
            )
        result = evaluation.evaluate(
            bundle,
            dataset,
            args.methods,
            settings,
            curve_steps=curve_steps,
            batch_size=args.batch_images,
            progress=not args.no_progress,
            families=families,
        )
        checks = _sanity_checks(args, bundle, dataset, args.methods, settings)
    except ValueError as error:
        raise UsageError(str(error)) from error
    summary = evaluation.summarize(result, seed=args.seed)
    accuracy = evaluation.top1_accuracy(result, seed=args.seed)
    differences = _differences(result, evaluation)
    print(_report(result, summary, differences, accuracy))
    from captum_igcam.evaluation import sanity

    for check in checks.values():
        print("\n" + sanity.sanity_table(check))
    if args.json:
        from captum_igcam.app.safe_files import atomic_write_json

        data = _to_json(result, summary, differences, accuracy)
        if checks:
            data["sanity"] = {mode: sanity.sanity_json(c) for mode, c in checks.items()}
        atomic_write_json(args.json, data)
    return 0


def _sanity_modes(text: str) -> list[str]:
    """An argparse ``type``: comma-separated sanity-check modes."""
    from captum_igcam.evaluation.sanity import MODES

    modes = [mode.strip() for mode in text.split(",") if mode.strip()]
    if not modes or any(mode not in MODES for mode in modes):
        raise argparse.ArgumentTypeError(
            f"expected a comma-separated list from {', '.join(MODES)}, got {text!r}"
        )
    return list(dict.fromkeys(modes))


def _sanity_checks(
    args: argparse.Namespace, bundle: Any, dataset: Any, methods: list, settings: Any
) -> dict[str, Any]:
    """The sanity checks ``--sanity`` asks for, on the benchmark's images."""
    if not args.sanity:
        return {}
    from captum_igcam.evaluation import sanity

    stages = sanity.default_stages(bundle.model)
    if args.sanity_stages:
        stages = sanity.group_stages(stages, args.sanity_stages)
    images = [sample.image for sample in dataset]
    return {
        mode: sanity.model_randomisation(
            bundle,
            images,
            methods,
            settings,
            mode,
            stages,
            seed=args.seed,
            batch_size=args.batch_images,
            progress=not args.no_progress,
        )
        for mode in args.sanity
    }


def _differences(result: Any, evaluation: Any) -> dict[str, dict[str, Any]]:
    """Paired differences of every method against Grad-CAM, when both ran."""
    if REFERENCE_METHOD not in result.records:
        return {}
    record = result.records[REFERENCE_METHOD]
    return {
        name: {
            metric: evaluation.compare(result, name, REFERENCE_METHOD, metric)
            for metric in record.values
        }
        for name in result.records
        if name != REFERENCE_METHOD
    }


def _report(result: Any, summary: dict, differences: dict, accuracy: Any | None) -> str:
    from captum_igcam.evaluation.runner import all_metrics

    headers = {
        m.name: f"{m.title} {'↑' if m.higher_is_better else '↓'}" for m in all_metrics()
    }
    metrics = list(dict.fromkeys(name for row in summary.values() for name in row))
    top1 = (
        f"; model top-1 accuracy on the annotated images: {_cell(accuracy, 'ebpg')}"
        if accuracy is not None
        else ""
    )
    lines = [
        f"Dataset: {result.dataset}; model: {result.model} (layer {result.layer}); "
        f"images: {result.n_images}; integration steps: {result.settings['n_steps']}; "
        f"deletion/insertion steps: {result.settings['curve_steps']}; "
        f"baseline: {result.settings['baseline']}{top1}",
        *result.notes,
        "",
        "| method | " + " | ".join(headers.get(m, m) for m in metrics) + " |",
        "|---|" + "---|" * len(metrics),
    ]
    for name, row in summary.items():
        cells = [_cell(row[m], m) if m in row else "n/a" for m in metrics]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    if result.skipped:
        lines += ["", f"Left out ({len(result.skipped)} annotated objects):"]
        lines += [f"- {line}" for line in result.skipped]
    if differences:
        shown = [m for m in metrics if m != "seconds_per_image"]
        lines += [
            "",
            f"Paired difference against {REFERENCE_METHOD} (same images), "
            "mean [95% CI]:",
            "",
            "| method | " + " | ".join(headers.get(m, m) for m in shown) + " |",
            "|---|" + "---|" * len(shown),
        ]
        for name, row in differences.items():
            cells = [
                _cell(row[m], m, signed=True) if m in row else "n/a" for m in shown
            ]
            lines.append(f"| {name} - {REFERENCE_METHOD} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _cell(estimate: Any, metric: str, signed: bool = False) -> str:
    digits = 1 if metric in ("avg_drop", "increase_in_confidence") else 3
    sign = "+" if signed else ""
    half = (estimate.high - estimate.low) / 2
    if metric == "seconds_per_image" or math.isnan(half):
        return f"{estimate.mean:{sign}.{digits}f}"
    if signed:
        return (
            f"{estimate.mean:+.{digits}f} "
            f"[{estimate.low:+.{digits}f}, {estimate.high:+.{digits}f}]"
        )
    return f"{estimate.mean:.{digits}f} ± {half:.{digits}f}"


def _to_json(
    result: Any, summary: dict, differences: dict, accuracy: Any | None
) -> dict[str, Any]:
    def interval(estimate: Any) -> list[float]:
        return [estimate.low, estimate.high]

    methods = {}
    for name, row in summary.items():
        entry: dict[str, Any] = {
            metric: estimate.mean for metric, estimate in row.items()
        }
        entry["ci95"] = {metric: interval(estimate) for metric, estimate in row.items()}
        if name in differences:
            entry[f"difference_vs_{REFERENCE_METHOD}"] = {
                metric: {"mean": estimate.mean, "ci95": interval(estimate)}
                for metric, estimate in differences[name].items()
            }
        methods[name] = entry
    return {
        "dataset": result.dataset,
        "model": result.model,
        "layer": result.layer,
        "n_images": result.n_images,
        "settings": result.settings,
        "notes": result.notes,
        "skipped": result.skipped,
        "top1_accuracy": None
        if accuracy is None
        else {"mean": accuracy.mean, "ci95": interval(accuracy)},
        "methods": methods,
        **_per_image_json(result),
    }


def _per_image_json(result: Any) -> dict[str, Any]:
    """What ``captum-igcam report`` plots: per-image values, objects, curves.

    ``values``: method -> metric -> one value per image (per object, in the
    order of ``objects``, for the localisation metrics; NaN written as null);
    ``curves``: method -> ``deletion``/``insertion`` -> the mean curve.
    """

    def finite(values: list[float]) -> list[float | None]:
        return [value if math.isfinite(value) else None for value in values]

    return {
        "images": result.image_names,
        "objects": result.objects,
        "values": {
            name: {metric: finite(column) for metric, column in record.values.items()}
            for name, record in result.records.items()
        },
        "curves": {
            name: {
                mode: [sum(point) / len(point) for point in zip(*curves)]
                for mode, curves in record.curves.items()
            }
            for name, record in result.records.items()
        },
    }
