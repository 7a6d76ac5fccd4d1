"""How far two ``captum-igcam benchmark --json`` runs on the same images are apart.

Usage: ``python benchmarks/measurements/compare_runs.py FINE.json COARSE.json``

Both runs must cover the same images (same data set, ``--n`` and seed), e.g.
the default steps and the laptop configuration. For every method both ran
and every metric, it prints the two means, their difference, and the largest
per-image difference; then, per metric, whether the two runs order the
methods the same way (the question a benchmark answers).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def load(path: str) -> dict:
    run = json.loads(Path(path).read_text())
    for key in ("images", "values", "settings"):
        if key not in run:
            raise SystemExit(f"{path}: expected a benchmark --json file with {key!r}")
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("fine", help="benchmark JSON of the finer run")
    parser.add_argument("coarse", help="benchmark JSON of the coarser run")
    args = parser.parse_args()
    fine, coarse = load(args.fine), load(args.coarse)
    if fine["images"] != coarse["images"]:
        raise SystemExit("the two runs cover different images")
    for run, path in ((fine, args.fine), (coarse, args.coarse)):
        settings = run["settings"]
        print(
            f"{path}: n_steps {settings['n_steps']}, curve_steps "
            f"{settings['curve_steps']}, {len(run['images'])} images"
        )
    methods = [name for name in fine["values"] if name in coarse["values"]]
    metrics = [
        m for m in fine["values"][methods[0]] if m in coarse["values"][methods[0]]
    ]
    print(
        "| method | metric | fine mean | coarse mean | difference | largest per image |"
    )
    print("|---|---|---|---|---|---|")
    orders = {}
    for metric in metrics:
        means = {}
        for method in methods:
            a = np.asarray(fine["values"][method][metric], dtype=float)
            b = np.asarray(coarse["values"][method][metric], dtype=float)
            means[method] = (np.nanmean(a), np.nanmean(b))
            print(
                f"| {method} | {metric} | {means[method][0]:.4f} | "
                f"{means[method][1]:.4f} | {means[method][1] - means[method][0]:+.4f} "
                f"| {np.nanmax(np.abs(b - a)):.4f} |"
            )
        orders[metric] = [
            sorted(methods, key=lambda name, run=run: means[name][run])
            for run in (0, 1)
        ]
    for metric, (fine_order, coarse_order) in orders.items():
        verdict = "same" if fine_order == coarse_order else "different"
        print(
            f"{metric}: {verdict} order of the methods' means "
            f"(fine {' < '.join(fine_order)}; coarse {' < '.join(coarse_order)})"
        )


if __name__ == "__main__":
    main()
