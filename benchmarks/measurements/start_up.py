"""How long ``captum-igcam`` commands take to print their first line, and in all.

Usage::

    python benchmarks/measurements/start_up.py [--repeat N] [--checkout DIR ...]

Runs, as new processes, ``explain --help``, ``explain --model resnet18``
(which stops at the missing pretrained weights unless they are cached) and
``explain-dataset`` on a folder whose maps are all written already (it only
checks them), and prints, per command, the median seconds to the first line
on stdout or stderr and to the end. With several ``--checkout`` folders
(e.g. this one and an older clone) each is run in turn with ``PYTHONPATH``
set to it, side by side on the same machine. ``python -X importtime`` shows
where a start-up goes; on a 2-core CPU it is mostly importing torch and
torchvision, which every command that loads a model needs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]


def timed(argv: list[str], checkout: Path) -> tuple[float, float]:
    """Seconds to the first output line and to the end of one command."""
    env = {**os.environ, "PYTHONPATH": str(checkout), "PYTHONUNBUFFERED": "1"}
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "captum_igcam", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=checkout,
    )
    first = process.stdout.readline() and time.perf_counter() - started
    process.communicate()
    return float(first or 0.0), time.perf_counter() - started


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per command")
    parser.add_argument("--checkout", type=Path, action="append", help="default: this")
    args = parser.parse_args(argv)
    checkouts = args.checkout or [ROOT]
    with tempfile.TemporaryDirectory() as tmp:
        photos = Path(tmp) / "photos"
        photos.mkdir()
        Image.fromarray(np.full((32, 32, 3), 128, np.uint8)).save(photos / "grey.png")
        maps = Path(tmp) / "maps"
        done = ["explain-dataset", str(photos), "--out", str(maps), "--steps", "2"]
        done += ["--workers", "0", "--no-progress"]
        timed(done, checkouts[0])  # writes the maps: later runs only check them
        commands = {
            "explain --help": ["explain", "--help"],
            "explain --model resnet18 (no weights)": ["explain", "--model", "resnet18"],
            "explain-dataset, all done": done,
        }
        print(f"{'command':40s} {'checkout':24s} {'first line s':>12s} {'total s':>8s}")
        for name, command in commands.items():
            for checkout in checkouts:
                runs = [timed(command, checkout) for _ in range(args.repeat)]
                first = statistics.median(r[0] for r in runs)
                total = statistics.median(r[1] for r in runs)
                label = str(checkout)[-24:]
                print(f"{name:40s} {label:24s} {first:12.1f} {total:8.1f}", flush=True)


if __name__ == "__main__":
    main()
