"""Rebuild the generated tables of the docs from the committed result files.

Usage::

    python benchmarks/tools/render_results.py          # rewrite the pages
    python benchmarks/tools/render_results.py --check  # exit 1 if one is stale

Each table of ``benchmarks/RESULTS.md`` and the benchmark table of
``docs/evaluation.md`` sits in a generated block (``benchmarks/lib/
doc_blocks.py``) whose body is rebuilt here from the result file named
beside it; ``tests/test_results_page.py`` checks that the committed pages
equal the pages rebuilt from the committed results.
"""

from __future__ import annotations

import argparse
import gzip
import json
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
BENCHMARKS = ROOT / "benchmarks"
# benchmarks/lib (the generated blocks) and the comparison of two runs.
sys.path.insert(0, str(BENCHMARKS / "lib"))
sys.path.insert(0, str(BENCHMARKS / "measurements"))

import compare_runs  # noqa: E402
from doc_blocks import names, render  # noqa: E402

from captum_igcam import evaluation  # noqa: E402

MEASUREMENTS = BENCHMARKS / "measurements"
RESULTS_PAGE = BENCHMARKS / "RESULTS.md"
EVALUATION_PAGE = ROOT / "docs" / "evaluation.md"
BENCHMARK_JSON = ROOT / "docs" / "benchmark.json"
#: Metric -> column title, in the order of the evaluation table (the
#: benchmark's own titles; its time column is not a table column here).
METRICS = {
    metric.name: metric.title
    for metric in evaluation.METRICS
    if metric.name != "seconds_per_image"
}
#: Metrics given in percent: one decimal; the others three.
PERCENT = {"avg_drop", "increase_in_confidence"}
CASE_TITLES = {
    "resnet50.layer4/batch1": "ResNet-50 `layer4`, batch 1",
    "resnet50.layer4/batch8": "ResNet-50 `layer4`, batch 8",
    "vgg16.features.29/batch1": "VGG-16 `features.29`, batch 1",
    "vgg16.features.29/batch8": "VGG-16 `features.29`, batch 8",
    "resnet50.layer4/batch1/bf16": "bf16 autocast",
    "resnet50.layer4/batch1/channels_last": "channels_last",
    "resnet50.layer4/batch1/channels_last/bf16": "channels_last, bf16 autocast",
}


def read(path: Path) -> Any:
    """A JSON result file (gzip-compressed when its name ends in ``.gz``)."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as stream:
        return json.load(stream)


def table(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def load_range(load: list[float]) -> str:
    """The 1-minute load averages before and after a run, low to high."""
    low, high = sorted(load)
    return f"{low:.1f} to {high:.1f}"


def machine(data: dict) -> str:
    """The machine line of a ``speed.py`` result."""
    spec = data["machine"]
    return (
        f"Machine: {spec['cpus']} CPUs ({spec['processor']}), "
        f"{spec['threads']} torch threads, torch {spec['torch']}."
    )


def speed_time(data: dict) -> str:
    """Seconds and ratios of each case of ``speed.py``."""
    variants = ["floor", "igcam", "igcam_layer", "layer_ig", "naive", "gradcam"]
    rows = []
    for name, case in data["cases"].items():
        seconds = case["seconds"]
        rows.append(
            [CASE_TITLES.get(name, name), str(case["repeats"])]
            + [f"{seconds[v]:.2f}" if v in seconds else "-" for v in variants]
            + [
                f"{case['igcam_over_floor']:.2f}",
                f"{case['igcam_over_layer_ig']:.2f}",
                f"{case['layer_path_speedup']:.1f}x",
            ]
        )
    header = ["case", "repeats", *(f"{v} s" for v in variants)]
    header += ["igcam / floor", "igcam / layer_ig", "layer-space speed-up"]
    return machine(data) + "\n\n" + table(header, rows)


def speed_memory(data: dict) -> str:
    """Peak memory of each case of ``speed.py``."""
    variants = ["floor", "igcam", "igcam_layer", "layer_ig", "naive"]
    rows = []
    for name, case in data["cases"].items():
        peak = case["peak_mem_mb"]
        rows.append(
            [CASE_TITLES.get(name, name)]
            + [f"{peak[v]:.0f}" if v in peak else "-" for v in variants]
            + [
                f"{case['peak_mem_igcam_over_floor']:.2f}",
                f"{case['peak_mem_igcam_over_layer_ig']:.2f}",
            ]
        )
    header = ["case", *(f"{v} MiB" for v in variants)]
    header += ["igcam / floor", "igcam / layer_ig"]
    return table(header, rows)


def speed_configurations(data: dict) -> str:
    """The configurations users pick, each against its own floor."""
    rows, compiled = [], []
    for name, case in data["cases"].items():
        seconds = case["seconds"]
        if "compiled_speedup" in case:
            compiled = [
                ["floor (compiled model, no autograd)", f"{seconds['floor']:.2f}"],
                ["igcam on the compiled model", f"{seconds['igcam']:.2f}"],
                ["igcam on the same model uncompiled", f"{seconds['igcam_eager']:.2f}"],
            ]
            compiled_ratios = (case["igcam_over_floor"], case["compiled_speedup"])
            continue
        rows.append(
            [
                CASE_TITLES.get(name, name),
                str(case["repeats"]),
                f"{seconds['floor']:.2f}",
                f"{seconds['igcam']:.2f}",
                f"{case['igcam_over_floor']:.2f}",
                f"{case['peak_mem_igcam_over_floor']:.2f}",
            ]
        )
    header = ["ResNet-50 `layer4`, batch 1", "repeats", "floor s", "igcam s"]
    text = (
        machine(data)
        + "\n\n"
        + table(header + ["igcam / floor", "memory / floor"], rows)
    )
    if compiled:
        text += (
            "\n\n`torch.compile` (ResNet-18 `layer4`, batch 1; compilation not "
            "timed):\n\n"
            + table(["variant", "seconds"], compiled)
            + f"\n\nigcam / compiled floor {compiled_ratios[0]:.2f}; compiled over "
            f"uncompiled igcam {compiled_ratios[1]:.2f}x as fast."
        )
    return text


def call_memory(data: dict) -> str:
    """One call's peak memory over its floor's (``call_memory.py``)."""
    rows = []
    for name, case in data.items():
        if not isinstance(case, dict):
            continue
        peak = case["peak_mb"]
        rows.append(
            [
                CASE_TITLES.get(name, name),
                f"{peak['floor']:.0f}",
                f"{peak['igcam']:.0f}",
                f"{case['igcam_over_floor']:.2f}",
            ]
        )
    load = [data["load_before"][0], data["load_after"][0]]
    return (
        table(["case", "floor MiB", "igcam MiB", "igcam / floor"], rows)
        + f"\n\nLoad average {load_range(load)} during the run."
    )


def benchmark_cost_time(data: dict) -> str:
    """The benchmark loop's time over the floor of its work."""
    cost = data["time"]
    rows = [
        [
            label,
            f"{cost[f'{clock}_loop_s']:.1f}",
            f"{cost[f'{clock}_floor_attribution_s']:.1f}",
            f"{cost[f'{clock}_floor_forward_s']:.1f}",
            f"{cost[f'{clock}_loop_over_floor']:.2f}",
        ]
        for clock, label in (("cpu", "CPU (this process)"), ("wall", "wall"))
    ]
    header = ["clock", "loop s", "floor: attribution s"]
    header += ["floor: curve forwards s", "loop / floor"]
    load = [data["load_before"][0], data["load_after"][0]]
    return (
        f"{cost['images']} composite(s), methods {', '.join(cost['methods'])}, "
        f"{cost['n_steps']} steps, {cost['curve_steps']} curve steps; "
        f"{data['cpus']} CPUs, {data['torch_threads']} torch threads, load "
        f"average {load_range(load)}.\n\n" + table(header, rows)
    )


def benchmark_cost_memory(data: dict) -> str:
    """Peak memory of the default ``captum-igcam benchmark``."""
    run = data["default_command"]
    load = [data["load_before"][0], data["load_after"][0]]
    return (
        f"`captum-igcam benchmark --n {run['images']}`: peak resident set "
        f"**{run['peak_rss_gb']:.2f} GB**, {run['seconds']:.0f} s at a load "
        f"average of {load_range(load)} on {data['cpus']} CPUs."
    )


def benchmark_laptop(data: dict) -> str:
    """The laptop configuration's time on 100 composites."""
    run = data["laptop"]
    load = [run["load_before"][0], run["load_after"][0]]
    return (
        f"`{run['command']}`: {run['seconds'] / 60:.1f} min for "
        f"{run['images']} images, peak resident set {run['peak_rss_gb']:.2f} GB; "
        f"{data['cpus']} CPUs, load average {load_range(load)}."
    )


def laptop_against_fine(fine: dict, coarse: dict) -> str:
    """``compare_runs.py`` on the two committed 10-image runs."""
    lines = compare_runs.report(
        fine, coarse, ("benchmark_fine10.json", "benchmark_laptop10.json")
    )
    settings = lines[:2]
    rows = [line for line in lines[2:] if line.startswith("|")]
    verdicts = [line for line in lines[2:] if not line.startswith("|")]
    return "\n\n".join(
        [
            "; ".join(settings) + ".",
            "\n".join(rows),
            "\n".join(f"- {verdict}" for verdict in verdicts),
        ]
    )


def dataset_throughput(data: dict) -> str:
    """``explain-dataset`` over the same work on batches in memory."""
    settings = data["settings"]
    rows = [
        [
            path,
            f"{result['in_memory_images_per_s']:.3f}",
            f"{result['explain_dataset_images_per_s']:.3f}",
            f"{result['ratio']:.2f}",
        ]
        for path, result in data["results"].items()
    ]
    return (
        f"{settings['images']} JPEGs, `n_steps={settings['steps']}`, "
        f"{settings['images_per_batch']} images per batch, "
        f"`internal_batch_size={settings['internal_batch_size']}`, "
        f"{settings['workers']} loader worker(s), median of "
        f"{settings['repeats']} runs, on `{settings['device']}`.\n\n"
        + table(
            ["path", "in-memory images/s", "explain-dataset images/s", "ratio"], rows
        )
    )


def layer_space_speed(data: dict) -> str:
    """The application's ``igcam-layer`` against ``igcam`` at its defaults."""
    settings, machine = data["settings"], data["machine"]
    rows = [
        [
            f"{result['model']} `{result['layer']}`",
            str(result["images"]),
            f"{statistics.median(result['seconds']['igcam-layer']):.2f}",
            f"{statistics.median(result['seconds']['igcam']):.2f}",
            f"{result['ratio']:.1f}x",
        ]
        for result in data["results"]
    ]
    return (
        f"`n_steps={settings['n_steps']}`, `{settings['method']}`, median of "
        f"{len(data['results'][0]['seconds']['igcam'])} runs, memory budget "
        f"{settings['memory_budget_mb']} MiB, {machine['torch_threads']} torch "
        f"thread(s), load {load_range(machine['load_average'])}, torch "
        f"{machine['torch']}.\n\n"
        + table(
            ["model and layer", "images", "igcam-layer s", "igcam s", "speed-up"],
            rows,
        )
    )


def tasks_cost(data: dict) -> str:
    """Integrated Grad-CAM on the task models over the floor of its work."""
    settings = data["settings"]
    rows = [
        [
            f"{result['case']}: {result['model']} `{result['layer']}`",
            str(result["internal_batch_size"]),
            f"{result['seconds']['igcam']:.2f}",
            f"{result['seconds']['floor']:.2f}",
            f"{result['ratio_to_floor']:.2f}",
            f"{result['ratio_to_forward']:.2f}",
        ]
        for result in data["results"]
    ]
    return (
        f"`n_steps={settings['n_steps']}`, median of {settings['repeats']}, "
        f"{settings['threads']} torch thread(s), load "
        f"{data['load_average']:.1f}.\n\n"
        + table(
            [
                "model and layer",
                "internal_batch_size",
                "igcam s",
                "floor s",
                "over floor",
                "over forward passes",
            ],
            rows,
        )
    )


def gpu_benchmark_speed(data: dict) -> str:
    """The benchmark loop on a GPU: batched against one image at a time."""
    rows = [
        [name, f"{seconds:.2f}", f"{data['speed_up_vs_slowest'][name]:.2f}x"]
        for name, seconds in data["seconds"].items()
    ]
    return (
        f"{data['images']} composites, methods {', '.join(data['methods'])}, "
        f"{data['steps']} steps, {data['curve_steps']} curve steps, device "
        f"`{data['device']}`; largest difference between the batched and the "
        f"one-image values {data['largest_difference_batched_vs_one_image']:.3g}."
        "\n\n" + table(["loop", "seconds", "speed-up"], rows)
    )


def signed(value: float, metric: str) -> str:
    return f"{value:+.{1 if metric in PERCENT else 3}f}"


def evaluation_run(data: dict) -> str:
    """What the committed benchmark result measured."""
    settings = data["settings"]
    accuracy = data.get("top1_accuracy")
    top1 = (
        f" The model's top-1 accuracy on them is {accuracy['mean']:.2f} "
        f"[{accuracy['ci95'][0]:.2f}, {accuracy['ci95'][1]:.2f}]."
        if accuracy
        else ""
    )
    return (
        f"{data['n_images']} images of `{data['dataset']}`, model "
        f"`{data['model']}` at `{data['layer']}`, methods "
        f"{', '.join(f'`{name}`' for name in data['methods'])}, "
        f"{settings['n_steps']} path points, {settings['curve_steps']} "
        f"deletion/insertion steps, baseline `{settings.get('baseline', 'black')}`."
        + top1
    )


def evaluation_differences(data: dict) -> str:
    """Paired differences against Grad-CAM, mean [95 % CI]."""
    rows = []
    for name, entry in data["methods"].items():
        differences = entry.get("difference_vs_gradcam")
        if not differences:
            continue
        cells = []
        for metric in METRICS:
            if metric not in differences:
                cells.append("n/a")
                continue
            estimate = differences[metric]
            low, high = estimate["ci95"]
            cells.append(
                f"{signed(estimate['mean'], metric)} "
                f"[{signed(low, metric)}, {signed(high, metric)}]"
            )
        rows.append([f"`{name}`", *cells])
    return table(["method", *METRICS.values()], rows)


def evaluation_means(data: dict) -> str:
    """Each method's mean and 95 % CI."""
    rows = []
    for name, entry in data["methods"].items():
        cells = []
        for metric in METRICS:
            if metric not in entry:
                cells.append("n/a")
                continue
            digits = 1 if metric in PERCENT else 3
            low, high = entry["ci95"][metric]
            cells.append(
                f"{entry[metric]:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"
            )
        rows.append([f"`{name}`", *cells])
    return table(["method", *METRICS.values()], rows)


def results_blocks() -> dict[str, str]:
    """Every generated block of ``benchmarks/RESULTS.md``, by name."""
    speed = read(MEASUREMENTS / "speed_results.json")
    return {
        "speed-time": speed_time(speed),
        "speed-memory": speed_memory(speed),
        "speed-configurations": speed_configurations(
            read(MEASUREMENTS / "speed_results_configurations.json")
        ),
        "call-memory": call_memory(read(MEASUREMENTS / "call_memory.json")),
        "benchmark-cost-time": benchmark_cost_time(
            read(MEASUREMENTS / "benchmark_cost_time.json")
        ),
        "benchmark-cost-memory": benchmark_cost_memory(
            read(MEASUREMENTS / "benchmark_cost_memory.json")
        ),
        "benchmark-laptop": benchmark_laptop(
            read(MEASUREMENTS / "benchmark_laptop.json")
        ),
        "laptop-against-fine": laptop_against_fine(
            read(MEASUREMENTS / "benchmark_fine10.json"),
            read(MEASUREMENTS / "benchmark_laptop10.json"),
        ),
        "dataset-throughput": dataset_throughput(
            read(MEASUREMENTS / "dataset_throughput_cpu.json")
        ),
        "layer-space-speed": layer_space_speed(
            read(MEASUREMENTS / "layer_space_speed.json")
        ),
        "tasks-cost": tasks_cost(read(MEASUREMENTS / "tasks_cost.json")),
        "gpu-benchmark-speed": gpu_benchmark_speed(
            read(BENCHMARKS / "gpu" / "benchmark_speed_gpu.json")
        ),
    }


def evaluation_blocks() -> dict[str, str]:
    """Every generated block of ``docs/evaluation.md``, by name."""
    data = read(BENCHMARK_JSON)
    return {
        "benchmark-run": evaluation_run(data),
        "benchmark-means": evaluation_means(data),
        "benchmark-differences": evaluation_differences(data),
    }


#: Page -> the function that builds its blocks.
PAGES: dict[Path, Callable[[], dict[str, str]]] = {
    RESULTS_PAGE: results_blocks,
    EVALUATION_PAGE: evaluation_blocks,
}


def stale_pages() -> list[str]:
    """Pages whose generated blocks differ from their result files, or that
    have a block no result file fills."""
    problems = []
    for page, build in PAGES.items():
        text, blocks = page.read_text(), build()
        missing = sorted(set(names(text)) - set(blocks))
        problems += [f"{page.name}: no result for block {name!r}" for name in missing]
        if render(text, blocks) != text:
            problems.append(f"{page.name}: differs from its result files")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report stale pages")
    args = parser.parse_args()
    if args.check:
        problems = stale_pages()
        print("\n".join(problems) or "every generated block is up to date")
        raise SystemExit(1 if problems else 0)
    for page, build in PAGES.items():
        page.write_text(render(page.read_text(), build()))
        print(f"wrote {page.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
