"""Time the real-photo comparison command of docs/variants.md on this machine.

Runs ``captum-igcam benchmark`` in this process with the options docs/variants.md
gives for an ImageNet validation copy, on built-in composites instead (the
same 224 px model input; JPEG decoding is not timed), measures the wall time
per image and rewrites the ``imagenet-time`` block of docs/variants.md with
it, the load average and the extrapolation to 1000 images.

    python benchmarks/measurements/imagenet_time.py --n 4 \
        --out benchmarks/measurements/imagenet_time.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

# benchmarks/lib: the results files every script writes.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))

import results_file
import torch
from doc_blocks import render

#: This script's name in the results files it writes.
SCRIPT = Path(__file__).name

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "variants.md"
#: The options of the documented command, besides --dataset and --n.
OPTIONS = ["--methods", "gradcam,igcam,igcam-paper", "--steps", "50"]
OPTIONS += ["--curve-steps", "20"]
IMAGES_IN_COMMAND = 1000


def measure(n: int) -> dict[str, object]:
    from captum_igcam.cli import main

    with tempfile.TemporaryDirectory() as folder:
        argv = ["benchmark", "--n", str(n), *OPTIONS, "--no-progress"]
        argv += ["--json", str(Path(folder) / "result.json")]
        load_before = os.getloadavg()[0]
        started, cpu_started = time.perf_counter(), time.process_time()
        assert main(argv) == 0
        seconds = time.perf_counter() - started
        cpu_seconds = time.process_time() - cpu_started
    return {
        "images": n,
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "options": OPTIONS,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "load_average": [load_before, os.getloadavg()[0]],
    }


def block(entry: dict) -> str:
    images = entry["images"]
    cpu_per_image = entry["cpu_seconds"] / images
    low, high = sorted(entry["load_average"])
    # Two idle cores: between perfect two-thread scaling and none.
    fastest, slowest = (cpu_per_image * IMAGES_IN_COMMAND / 3600 / k for k in (2, 1))
    return (
        "Its time on 2 CPU cores, estimated by "
        "`benchmarks/measurements/imagenet_time.py`: "
        f"the same command on {images} built-in composite{'s' * (images > 1)} "
        f"(the same 224 px model input, model loading included) used "
        f"{cpu_per_image:.0f} CPU seconds per image "
        f"({entry['torch_threads']} torch threads; wall time "
        f"{entry['seconds'] / images:.0f} s per image, because the "
        f"machine's 2 cores were shared with other jobs: 1-minute load average "
        f"{low:.1f} to {high:.1f}). On 2 idle cores that puts {IMAGES_IN_COMMAND} "
        f"photos at {fastest:.0f} to {slowest:.0f} hours (perfect to no two-thread "
        "speed-up), and `--n 111`, the quoted comparison's size, at a ninth of "
        "that."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=4)
    parser.add_argument("--out", default="benchmarks/measurements/imagenet_time.json")
    parser.add_argument("--report", metavar="JSON", help="only rewrite the doc")
    args = parser.parse_args()
    if args.report:
        entry = json.loads(Path(args.report).read_text())
    else:
        out = results_file.claim(args.out, SCRIPT)
        torch.set_num_threads(2)
        entry = measure(args.n)
        results_file.write(out, entry, SCRIPT, indent=1)
    DOC.write_text(render(DOC.read_text(), {"imagenet-time": block(entry)}))


if __name__ == "__main__":
    main()
