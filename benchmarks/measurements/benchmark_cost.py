"""What ``captum-igcam benchmark`` costs: time over the floor of its work, peak memory.

Usage::

    python benchmarks/measurements/benchmark_cost.py [--n 4] [--methods LIST]
        [--steps 50] [--curve-steps 20] [--memory-n 20] [--no-time] [--no-memory]
        [--laptop-n 100] [--json FILE]

1. **Time over the floor**, side by side in this process, on ``--n``
   composites (real scikit-image photos pasted on real textures) with the
   default model, after a warm-up on one image:

   - ``loop``: :func:`captum_igcam.evaluation.evaluate` as the command runs
     it (its memory budget, one image per pass, all metrics);
   - ``floor``: the work it cannot avoid, (a) every attribution call the
     loop made, replayed with the same inputs, targets, baselines and
     ``internal_batch_size``, and (b) one no-grad forward pass per curve
     point (methods x 2 curves x ``curve_steps + 1`` per image) in passes of
     the loop's curve pass size.

   It prints ``loop / floor`` and the loop's seconds per image,
   from which the time of 100 photos follows.
2. **Peak memory of the default command**: ``captum-igcam benchmark`` in a
   subprocess (``--n`` set to ``--memory-n``, 20 being the default
   command's), its wall time and the high-water mark of its resident set
   (``ru_maxrss`` of the child).
3. **The laptop configuration** (``--laptop-n``, off by default):
   ``captum-igcam benchmark`` with the four methods above, every default
   metric, ``--steps 8 --curve-steps 5``, on ``--laptop-n`` composites in a
   subprocess: its wall time and peak resident set.

The load average is printed before and after: on a shared machine the
figures move with it.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

# benchmarks/lib: the results files every script writes.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))

import results_file
import torch

from captum_igcam import evaluation
from captum_igcam.app.methods import METHODS
from captum_igcam.app.models import ModelBundle, load_model
from captum_igcam.app.settings import MethodSettings
from captum_igcam.evaluation.datasets import composites

#: This script's name in the results files it writes.
SCRIPT = Path(__file__).name

#: Four methods: Grad-CAM, Integrated Grad-CAM (both forms) and input-space IG.
DEFAULT_COST_METHODS = "gradcam,igcam,igcam-paper,ig"
#: The laptop configuration of part 3: four methods, every default metric,
#: 8 path points and 5 deletion/insertion steps.
LAPTOP_ARGS = [
    "--methods",
    DEFAULT_COST_METHODS,
    "--steps",
    "8",
    "--curve-steps",
    "5",
]
Call = tuple[str, torch.Tensor, torch.Tensor, torch.Tensor | None]


@contextlib.contextmanager
def recorded_calls(names: list[str]) -> Iterator[list[Call]]:
    """Record every call of the named methods' map functions while inside."""
    calls: list[Call] = []
    saved = {name: METHODS[name] for name in names}

    def recording(name: str):
        def build(model, layer, settings):
            function = saved[name].build(model, layer, settings)

            def maps(inputs, target, baselines=None):
                calls.append((name, inputs, target, baselines))
                return function(inputs, target, baselines)

            return maps

        return dataclasses.replace(saved[name], build=build)

    METHODS.update({name: recording(name) for name in names})
    try:
        yield calls
    finally:
        METHODS.update(saved)


@contextlib.contextmanager
def timer() -> Iterator[dict[str, float]]:
    """Wall and CPU seconds (this process, all threads) of the block."""
    spent: dict[str, float] = {}
    wall, cpu = time.perf_counter(), time.process_time()
    yield spent
    spent["wall"] = time.perf_counter() - wall
    spent["cpu"] = time.process_time() - cpu


def replay_seconds(
    bundle: ModelBundle, settings: MethodSettings, calls: list[Call]
) -> dict[str, float]:
    """Wall and CPU seconds of the recorded attribution calls, made again."""
    layer = bundle.layer()
    names = dict.fromkeys(name for name, *_ in calls)
    functions = {
        name: METHODS[name].build(bundle.model, layer, settings) for name in names
    }
    with timer() as spent:
        for name, inputs, target, baselines in calls:
            functions[name](inputs, target, baselines)
    return spent


def forward_seconds(
    bundle: ModelBundle, inputs: torch.Tensor, points: int, rows: int
) -> dict[str, float]:
    """Wall and CPU seconds of ``points`` no-grad forward rows, ``rows`` per pass."""
    repeated = inputs.repeat((rows + len(inputs) - 1) // len(inputs), 1, 1, 1)[:rows]
    with timer() as spent, torch.no_grad():
        for first in range(0, points, rows):
            bundle.model(repeated[: min(rows, points - first)])
    return spent


def time_over_floor(args: argparse.Namespace) -> dict[str, object]:
    """Part 1: the loop and the floor of its work, in this process."""
    bundle = load_model()
    methods = args.methods.split(",")
    settings = MethodSettings(n_steps=args.steps)
    common = {"curve_steps": args.curve_steps, "progress": False}
    # Warm-up: first-call costs (kernels, thread pools) on one small run.
    evaluation.evaluate(
        bundle,
        composites(1, seed=99),
        methods,
        MethodSettings(n_steps=2),
        curve_steps=2,
        progress=False,
    )
    dataset = composites(args.n)  # made up front: not part of the loop's work
    with recorded_calls(methods) as calls, timer() as loop:
        result = evaluation.evaluate(bundle, dataset, methods, settings, **common)
    used = dataclasses.replace(
        settings, internal_batch_size=result.settings["internal_batch_size"]
    ).for_model(bundle)
    attribution = replay_seconds(bundle, used, calls)
    inputs = torch.stack([bundle.preprocess(sample.image) for sample in dataset])
    points = args.n * len(methods) * 2 * (args.curve_steps + 1)
    curve_rows = int(result.settings["curve_batch_size"])
    forwards = forward_seconds(bundle, inputs, points, curve_rows)
    return {
        "images": args.n,
        "methods": methods,
        "n_steps": args.steps,
        "curve_steps": args.curve_steps,
        "internal_batch_size": used.internal_batch_size,
        "curve_batch_size": curve_rows,
        "attribution_calls": len(calls),
        **{
            f"{clock}_{part}_s": spent[clock]
            for clock in ("wall", "cpu")
            for part, spent in (
                ("loop", loop),
                ("floor_attribution", attribution),
                ("floor_forward", forwards),
            )
        },
        **{
            f"{clock}_loop_over_floor": loop[clock]
            / (attribution[clock] + forwards[clock])
            for clock in ("wall", "cpu")
        },
        "wall_loop_s_per_image": loop["wall"] / args.n,
        "cpu_loop_s_per_image": loop["cpu"] / args.n,
    }


def command_cost(argv: list[str]) -> dict[str, float]:
    """Wall time and peak resident set of ``captum-igcam ARGV`` in a subprocess."""
    code = f"from captum_igcam.cli import main; raise SystemExit(main({argv!r}))"
    started = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"captum-igcam {' '.join(argv)} failed")
    # Linux reports ru_maxrss in KiB.
    return {"seconds": seconds, "peak_rss_gb": usage.ru_maxrss / 2**20}


def default_command_memory(n: int) -> dict[str, float]:
    """Part 2: wall time and peak resident set of ``captum-igcam benchmark``."""
    return {"images": n, **command_cost(["benchmark", "--no-progress", "--n", str(n)])}


def laptop_run(n: int) -> dict[str, object]:
    """Part 3: the laptop configuration on ``n`` images, end to end."""
    argv = ["benchmark", "--no-progress", "--n", str(n), *LAPTOP_ARGS]
    load_before = os.getloadavg()
    cost = command_cost(argv)
    return {
        "command": "captum-igcam " + " ".join(argv),
        "images": n,
        **cost,
        "load_before": load_before,
        "load_after": os.getloadavg(),
    }


def print_time(cost: dict) -> None:
    """Part 1's figures: one line per clock, and the 100-photo estimate."""
    for clock in ("wall", "cpu"):
        print(
            f"{clock} time: loop {cost[f'{clock}_loop_s']:.1f} s over floor "
            f"{cost[f'{clock}_floor_attribution_s']:.1f} s attribution + "
            f"{cost[f'{clock}_floor_forward_s']:.1f} s curve forwards = "
            f"{cost[f'{clock}_loop_over_floor']:.2f}"
        )
    cpu_per_image = cost["cpu_loop_s_per_image"]
    print(
        f"{cost['wall_loop_s_per_image']:.1f} s per image at this load "
        f"({cpu_per_image:.1f} CPU s): 100 photos x {len(cost['methods'])} methods "
        f"need {100 * cpu_per_image / 60:.1f} CPU min, so "
        f"{100 * cpu_per_image / 120:.1f} to {100 * cpu_per_image / 60:.1f} min "
        "on 2 idle cores (perfect to no parallel speed-up of the 2 threads)",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=4, help="images of part 1")
    parser.add_argument("--methods", default=DEFAULT_COST_METHODS)
    parser.add_argument("--steps", type=int, default=MethodSettings.n_steps)
    parser.add_argument("--curve-steps", type=int, default=20)
    parser.add_argument(
        "--memory-n", type=int, default=20, help="images of the default command"
    )
    parser.add_argument("--no-time", action="store_true", help="skip part 1")
    parser.add_argument("--no-memory", action="store_true", help="skip part 2")
    parser.add_argument(
        "--laptop-n",
        type=int,
        default=0,
        help="images of part 3, the laptop configuration (default 0: skip it; "
        "100 takes about 9 minutes on 2 idle cores)",
    )
    parser.add_argument("--json", metavar="FILE", help="write the results as JSON")
    args = parser.parse_args()
    out = args.json and results_file.claim(args.json, SCRIPT)
    report: dict[str, object] = {
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_before": os.getloadavg(),
    }
    if not args.no_time:
        report["time"] = time_over_floor(args)
        print_time(report["time"])
    if not args.no_memory:
        memory = default_command_memory(args.memory_n)
        report["default_command"] = memory
        print(
            f"captum-igcam benchmark --n {memory['images']}: "
            f"{memory['seconds']:.0f} s, peak resident set "
            f"{memory['peak_rss_gb']:.2f} GB"
        )
    if args.laptop_n:
        laptop = laptop_run(args.laptop_n)
        report["laptop"] = laptop
        print(
            f"{laptop['command']}: {laptop['seconds'] / 60:.1f} min for "
            f"{laptop['images']} images, "
            f"peak resident set {laptop['peak_rss_gb']:.2f} GB; "
            f"load average before {laptop['load_before'][0]:.2f}, after "
            f"{laptop['load_after'][0]:.2f}",
            flush=True,
        )
    report["load_after"] = os.getloadavg()
    print(f"load average before {report['load_before']}, after {report['load_after']}")
    if out:
        results_file.write(out, report, SCRIPT)


if __name__ == "__main__":
    main()
