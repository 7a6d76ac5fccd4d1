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
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import results_file  # noqa: E402

from captum_igcam import cli  # noqa: E402
from captum_igcam.app.methods import METHODS  # noqa: E402
from captum_igcam.app.models import resolve_layer  # noqa: E402
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


def peak_memory_mb(method: str, settings: MethodSettings, repeats: int) -> float:
    """Median peak resident-set growth of one map of the first composite."""
    bundle = settings.load_model()
    settings = settings.for_model(bundle)
    layer = resolve_layer(bundle.model, settings.layer or bundle.layer_name)
    sample = next(iter(load_dataset("composites", 1, seed=0)))
    inputs = bundle.preprocess(sample.image).unsqueeze(0)
    target = int(bundle.model(inputs).argmax())
    from captum_igcam.app.baselines import baseline_input

    baselines = baseline_input(bundle, sample.image, settings.baseline)
    function = METHODS[method].build(bundle.model, layer, settings)
    growth = []
    for _ in range(repeats):
        Path("/proc/self/clear_refs").write_text("5")
        before = _rss_kib("VmRSS")
        function(inputs, target, baselines)
        growth.append((_rss_kib("VmHWM") - before) / 1024)
    return statistics.median(growth)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layer", default="_head_activation")
    parser.add_argument("--methods", default=METHODS_DEFAULT)
    parser.add_argument("--n", type=int, default=20)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--curve-steps", type=int, default=5)
    parser.add_argument(
        "--sanity", default="cascading", help="cascading, independent or none"
    )
    parser.add_argument("--sanity-stages", type=int, default=2)
    parser.add_argument("--memory-repeats", type=int, default=2)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
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
            "--json", str(result_path),
        ]  # fmt: skip
        if args.sanity != "none":
            command += ["--sanity", args.sanity]
            command += ["--sanity-stages", str(args.sanity_stages)]
        status = cli.main(command)
        if status != 0:
            raise SystemExit(f"the benchmark command failed with status {status}")
        benchmark = json.loads(result_path.read_text())
    seconds = time.time() - started
    settings = MethodSettings(layer=args.layer, n_steps=args.steps)
    memory = {
        name: peak_memory_mb(name, settings, args.memory_repeats)
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
            "benchmark": benchmark,
        },
        SCRIPT,
    )
    print(f"wrote {out} ({seconds:.0f} s)")


if __name__ == "__main__":
    main()
