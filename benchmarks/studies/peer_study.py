"""Integrated Grad-CAM beside pytorch-grad-cam's CAM methods, on composites.

Usage (from the repository root, with ``pip install -e ".[peers]"``)::

    python benchmarks/studies/peer_study.py --layer _head_activation \\
        --out benchmarks/studies/peers_head.json
    python benchmarks/studies/peer_study.py --layer _blocks.10 \\
        --out benchmarks/studies/peers_middle.json
    python benchmarks/studies/peer_study.py --layer _blocks.10 --n 4 \\
        --methods gradcam,scorecam,ablationcam --sanity none \\
        --out benchmarks/studies/peers_perturbation.json
    python benchmarks/studies/make_peers_doc.py   # writes docs/peers.md

Each run is one ``captum-igcam benchmark`` command (the embedded
EfficientNet-Lite0, built-in composites, seed 0, the command's own metrics,
intervals, paired differences against Grad-CAM and, unless ``--sanity
none``, the cascading model-randomisation check), run in this process; the
file holds the command's JSON result under ``"benchmark"``, beside:

- ``peak_memory_mb``: per method, the growth of the resident set from just
  before one map of the first image to its high-water mark (``VmHWM``,
  reset through ``/proc/self/clear_refs``; Linux), the median of
  ``--memory-repeats`` calls: the same attribution call the benchmark times
  (``seconds_per_image`` in the result);
- ``versions``: the exact versions of the libraries that computed the maps;
- ``load_average`` before and after, and the CPU count: the machine is
  shared, and the times move with its load.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))
import results_file  # noqa: E402

from captum_igcam import cli  # noqa: E402
from captum_igcam.app.methods import METHODS  # noqa: E402
from captum_igcam.app.peer_methods import library_versions  # noqa: E402
from captum_igcam.app.settings import MethodSettings  # noqa: E402
from captum_igcam.evaluation.datasets import load_dataset  # noqa: E402

SCRIPT = Path(__file__).name
#: Every gradient-based peer that costs about one Grad-CAM (Score-CAM and
#: Ablation-CAM score one perturbed image per channel: their own run).
METHODS_DEFAULT = (
    "gradcam,igcam,gradcam++,xgradcam,layercam,hirescam,eigencam,eigengradcam"
)


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def measure_peak_memory(method: str, layer: str, steps: int, repeats: int) -> float:
    """Median peak resident-set growth of one map of the first composite, MiB.

    Run in a fresh process (``--measure-memory``), so that memory freed by
    earlier work in the same heap does not hide the call's own growth.
    """
    from captum_igcam.app.baselines import baseline_input

    settings = MethodSettings(layer=layer, n_steps=steps)
    bundle = settings.load_model()
    settings = settings.for_model(bundle)
    function = METHODS[method].build(bundle.model, bundle.layer(), settings)
    sample = next(iter(load_dataset("composites", 1, seed=0)))
    inputs = bundle.preprocess(sample.image).unsqueeze(0)
    with torch.no_grad():
        target = int(bundle.model(inputs).argmax())
    baselines = baseline_input(bundle, sample.image, settings.baseline)
    growth = []
    for _ in range(repeats):
        Path("/proc/self/clear_refs").write_text("5")
        before = _rss_kib("VmRSS")
        function(inputs, target, baselines)
        growth.append((_rss_kib("VmHWM") - before) / 1024)
    return statistics.median(growth)


def peak_memory_mb(method: str, layer: str, steps: int, repeats: int) -> float:
    """:func:`measure_peak_memory` in a subprocess of this script."""
    import subprocess

    argv = [sys.executable, __file__, "--measure-memory", method, "--layer", layer]
    argv += ["--steps", str(steps), "--memory-repeats", str(repeats)]
    done = subprocess.run(argv, capture_output=True, text=True, check=True)
    return float(done.stdout.strip().splitlines()[-1])


def strict(value: object) -> object:
    """``value`` with every NaN or infinity replaced by None (strict JSON)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: strict(item) for key, item in value.items()}
    if isinstance(value, list):
        return [strict(item) for item in value]
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layer", default="_head_activation")
    parser.add_argument("--methods", default=METHODS_DEFAULT)
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--curve-steps", type=int, default=5)
    parser.add_argument(
        "--sanity", default="cascading", help="cascading, independent or none"
    )
    parser.add_argument("--sanity-stages", type=int, default=2)
    parser.add_argument("--memory-repeats", type=int, default=1)
    parser.add_argument("--out", help="results file (required unless measuring)")
    parser.add_argument("--measure-memory", metavar="METHOD", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure_memory:
        peak = measure_peak_memory(
            args.measure_memory, args.layer, args.steps, args.memory_repeats
        )
        print(peak)
        return
    if not args.out:
        parser.error("--out is required")
    out = results_file.claim(args.out, SCRIPT)
    torch.manual_seed(0)
    load_before = os.getloadavg()
    started = time.time()
    with tempfile.TemporaryDirectory() as folder:
        result_path = Path(folder) / "benchmark.json"
        command = [
            "benchmark",
            "--layer", args.layer,
            "--methods", args.methods,
            "--n", str(args.n),
            "--steps", str(args.steps),
            "--curve-steps", str(args.curve_steps),
            "--seed", "0",
            "--no-progress",
        ]  # fmt: skip
        if args.sanity != "none":
            command += ["--sanity", args.sanity]
            command += ["--sanity-stages", str(args.sanity_stages)]
        command += ["--json", str(result_path)]
        status = cli.main(command)
        if status != 0:
            raise SystemExit(f"the benchmark command failed with status {status}")
        benchmark = json.loads(result_path.read_text())
    seconds = time.time() - started
    memory = {
        name: peak_memory_mb(name, args.layer, args.steps, args.memory_repeats)
        for name in args.methods.split(",")
    }
    import captum

    import captum_igcam

    versions = {
        **library_versions(),
        "captum": captum.__version__,
        "captum-igcam": captum_igcam.__version__,
        "python": platform.python_version(),
    }
    results_file.write(
        out,
        {
            "command": "captum-igcam " + " ".join(command[:-2] + ["--json", "FILE"]),
            "layer": args.layer,
            "versions": versions,
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "load_average": {"before": load_before, "after": os.getloadavg()},
            "wall_seconds": round(seconds, 1),
            "peak_memory_mb": memory,
            "benchmark": strict(benchmark),
        },
        SCRIPT,
    )
    print(f"wrote {out} ({seconds:.0f} s)")


if __name__ == "__main__":
    main()
