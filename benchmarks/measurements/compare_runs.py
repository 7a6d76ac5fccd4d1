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

import numpy as np

from captum_igcam.evaluation.results import ResultFileError, read_result


def load(path: str) -> dict:
    try:
        run = read_result(path)
    except ResultFileError as error:
        raise SystemExit(str(error)) from None
    for key in ("images", "values", "settings"):
        if key not in run:
            raise SystemExit(f"{path}: expected a benchmark --json file with {key!r}")
    return run


def report(fine: dict, coarse: dict, names: tuple[str, str]) -> list[str]:
    """The comparison's lines: settings, a Markdown table, one verdict a metric.

    Args:
        fine (dict): The finer run (``captum-igcam benchmark --json``).
        coarse (dict): The coarser run, on the same images.
        names (tuple[str, str]): How to name the two runs (their paths).

    Returns:
        list[str]: The lines :func:`main` prints.
    """
    if fine["images"] != coarse["images"]:
        raise SystemExit("the two runs cover different images")
    lines = []
    for run, name in zip((fine, coarse), names):
        settings = run["settings"]
        lines.append(
            f"{name}: n_steps {settings['n_steps']}, curve_steps "
            f"{settings['curve_steps']}, {len(run['images'])} images"
        )
    methods = [name for name in fine["values"] if name in coarse["values"]]
    metrics = [
        m for m in fine["values"][methods[0]] if m in coarse["values"][methods[0]]
    ]
    lines += [
        "| method | metric | fine mean | coarse mean | difference "
        "| largest per image |",
        "|---|---|---|---|---|---|",
    ]
    orders = {}
    for metric in metrics:
        means = {}
        for method in methods:
            a = np.asarray(fine["values"][method][metric], dtype=float)
            b = np.asarray(coarse["values"][method][metric], dtype=float)
            means[method] = (np.nanmean(a), np.nanmean(b))
            lines.append(
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
        lines.append(
            f"{metric}: {verdict} order of the methods' means "
            f"(fine {' < '.join(fine_order)}; coarse {' < '.join(coarse_order)})"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("fine", help="benchmark JSON of the finer run")
    parser.add_argument("coarse", help="benchmark JSON of the coarser run")
    args = parser.parse_args()
    lines = report(load(args.fine), load(args.coarse), (args.fine, args.coarse))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
