"""The benchmark page: metric table with intervals, curves and breakdowns.

:func:`build_benchmark_report` reads the JSON of ``captum-igcam benchmark
--json FILE`` and writes a static page: the metric table with 95% intervals
(and the paired differences against Grad-CAM), one interval chart per
metric, each method's cost (seconds per image, peak memory), the mean
deletion and insertion curves per method, the localisation metrics by object
size and by class, and the images on which the methods differ most with each
method's map over them. The file is read and checked by
:func:`captum_igcam.evaluation.results.read_result`; sections whose data the
file lacks (a file written by an older version) are left out with a note.
"""

from __future__ import annotations

import base64
import html
import io
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from captum_igcam.evaluation.results import format_interval, read_result
from captum_igcam.report import files, page, svg

#: Object-size groups of the breakdown: (name, smallest box fraction).
SIZE_GROUPS = (
    ("small (< 10%)", 0.0),
    ("medium (10-40%)", 0.1),
    ("large (>= 40%)", 0.4),
)
#: Most classes shown in the by-class breakdown (those with most objects).
MAX_CLASSES = 12
#: Images listed where the methods differ most.
MOST_DIFFERENT = 10


def build_benchmark_report(
    path: str | os.PathLike[str], out: str | os.PathLike[str]
) -> Path:
    """Write the page of a benchmark result into ``out``.

    Args:
        path (str or os.PathLike): ``captum-igcam benchmark --json`` file.
        out (str or os.PathLike): The report folder.

    Returns:
        Path: The report's ``index.html``.

    Example::

        >>> build_benchmark_report("bench.json", "bench-report")
        PosixPath('bench-report/index.html')
    """
    result = read_result(path)
    report = files.open_report_folder(out)
    methods = list(result["methods"])
    colours = {name: svg.colour(i) for i, name in enumerate(methods)}
    metrics = _metrics(result)
    sections = [
        _facts(result),
        _table(result, metrics),
        _differences(result, metrics),
        _interval_charts(result, metrics, colours),
        _curves(result, colours),
        _breakdowns(result, metrics, colours),
        _most_different(result, metrics),
        _example_maps(result, colours),
    ]
    title = f"Benchmark: {result.get('model', '?')} on {result.get('dataset', '?')}"
    data = {"kind": "benchmark", "title": title}
    return page.write_page(report, "benchmark", data, "\n".join(sections))


def _metrics(result: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """``(name, title, higher_is_better)`` of the metrics present, table order."""
    from captum_igcam.evaluation.runner import METRICS

    present = {key for row in result["methods"].values() for key in row}
    return [(m.name, m.title, m.higher_is_better) for m in METRICS if m.name in present]


def _number(value: Any) -> float:
    """A JSON number as a float; NaN for null or anything else."""
    return float(value) if isinstance(value, (int, float)) else math.nan


def _interval(row: dict[str, Any], metric: str) -> tuple[float, float, float]:
    low, high = (row.get("ci95", {}).get(metric) or [math.nan, math.nan])[:2]
    return _number(row.get(metric)), _number(low), _number(high)


def _format(mean: float, low: float, high: float) -> str:
    return format_interval(mean, low, high, ".3g")


def _facts(result: dict[str, Any]) -> str:
    settings = result.get("settings") or {}
    facts = [
        ("model", f"{result.get('model')} (layer {result.get('layer')})"),
        ("images", result.get("n_images")),
        ("integration steps", settings.get("n_steps")),
        ("baseline", settings.get("baseline")),
        ("deletion/insertion steps", settings.get("curve_steps")),
    ]
    accuracy = result.get("top1_accuracy")
    if isinstance(accuracy, dict):
        mean, low, high = _interval(
            {"a": accuracy.get("mean"), "ci95": {"a": accuracy.get("ci95")}}, "a"
        )
        facts.append(("model top-1 accuracy", _format(mean, low, high)))
    items = "".join(
        f"<li>{html.escape(name)}: {html.escape(str(value))}</li>"
        for name, value in facts
    )
    notes = "".join(
        f"<li>{html.escape(str(n))}</li>" for n in result.get("notes") or []
    )
    return f'<ul id="facts">{items}{notes}</ul>'


def _table(result: dict[str, Any], metrics: list[tuple[str, str, bool]]) -> str:
    head = "".join(
        f'<th data-sort="{i + 1}">{html.escape(title)} {"↑" if up else "↓"}</th>'
        for i, (_, title, up) in enumerate(metrics)
    )
    best = {}
    for name, _, up in metrics:
        means = [_number(row.get(name)) for row in result["methods"].values()]
        finite = [m for m in means if math.isfinite(m)]
        best[name] = (max if up else min)(finite) if finite else None
    rows = []
    for method, row in result["methods"].items():
        cells = []
        for name, _, _ in metrics:
            mean, low, high = _interval(row, name)
            css = ' class="best"' if mean == best[name] else ""
            sort_value = mean if math.isfinite(mean) else ""
            cells.append(
                f'<td{css} data-value="{sort_value}">{_format(mean, low, high)}</td>'
            )
        peak = _number((row.get("cost") or {}).get("peak_memory_mb"))
        shown = f"{peak:.0f}" if math.isfinite(peak) else "n/a"
        sort_value = peak if math.isfinite(peak) else ""
        cells.append(f'<td class="cost" data-value="{sort_value}">{shown}</td>')
        rows.append(f"<tr><td>{html.escape(method)}</td>{''.join(cells)}</tr>")
    cost_head = f'<th data-sort="{len(metrics) + 1}">peak memory MiB (cost) ↓</th>'
    return (
        "<h2>Metrics (mean [95% CI]; best in bold; click a header to sort)</h2>"
        '<table id="metrics"><thead><tr><th data-sort="0">method</th>'
        f"{head}{cost_head}</tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _differences(result: dict[str, Any], metrics: list[tuple[str, str, bool]]) -> str:
    keys = {
        k
        for row in result["methods"].values()
        for k in row
        if k.startswith("difference_vs_")
    }
    if not keys:
        return ""
    key = sorted(keys)[0]
    reference = key.removeprefix("difference_vs_")
    shown = [m for m in metrics if m[0] != "seconds_per_image"]
    head = "".join(f"<th>{html.escape(title)}</th>" for _, title, _ in shown)
    rows = []
    for method, row in result["methods"].items():
        if key not in row:
            continue
        cells = []
        for name, _, _ in shown:
            entry = row[key].get(name) or {}
            mean, low, high = _interval(
                {"d": entry.get("mean"), "ci95": {"d": entry.get("ci95")}}, "d"
            )
            cells.append(f"<td>{_format(mean, low, high)}</td>")
        rows.append(
            f"<tr><td>{html.escape(method)} - {html.escape(reference)}</td>"
            f"{''.join(cells)}</tr>"
        )
    return (
        f"<h2>Paired differences against {html.escape(reference)} (same images)</h2>"
        f'<table id="differences"><thead><tr><th>methods</th>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _interval_charts(
    result: dict[str, Any], metrics: list, colours: dict[str, str]
) -> str:
    charts = []
    for name, title, up in metrics:
        rows = [
            (method, *_interval(row, name), colours[method])
            for method, row in result["methods"].items()
            if name in row
        ]
        charts.append(
            svg.interval_chart(
                f"{title} ({'higher' if up else 'lower'} is better)", rows
            )
        )
    return (
        f'<h2>Intervals</h2><div class="plots" id="intervals">{"".join(charts)}</div>'
    )


def _curves(result: dict[str, Any], colours: dict[str, str]) -> str:
    curves = result.get("curves")
    if not isinstance(curves, dict) or not curves:
        return _missing("Deletion and insertion curves", "curves")
    charts = []
    for mode, better in (("deletion", "lower"), ("insertion", "higher")):
        series = {
            method: [_number(v) for v in modes[mode]]
            for method, modes in curves.items()
            if isinstance(modes, dict) and modes.get(mode) and method in colours
        }
        if series:
            charts.append(
                svg.line_chart(
                    f"{mode} curve (area {better} is better)",
                    series,
                    colours,
                    f"fraction of pixels {mode.removesuffix('ion')}ed",
                    "probability of the class",
                )
            )
    return (
        "<h2>Deletion and insertion curves (mean over images)</h2>"
        f'<div class="plots" id="curves">{"".join(charts)}</div>'
    )


def _breakdowns(result: dict[str, Any], metrics: list, colours: dict[str, str]) -> str:
    objects, values = result.get("objects"), result.get("values")
    if not isinstance(objects, list) or not isinstance(values, dict) or not objects:
        return _missing("Localisation by object size and class", "objects and values")
    from captum_igcam.evaluation.runner import METRICS
    from captum_igcam.evaluation.statistics import estimate

    per_object = {m.name for m in METRICS if m.per_object}
    shown = [m for m in metrics if m[0] in per_object]
    sizes = [_size_group(_number(o.get("box_fraction"))) for o in objects]
    labels = [str(o.get("label")) for o in objects]
    counts: dict[str, int] = {}
    for label in labels:
        counts[label] = counts.get(label, 0) + 1
    classes = sorted(counts, key=lambda c: (-counts[c], c))[:MAX_CLASSES]
    parts = []
    for heading, groups, keys in (
        (
            "object size (share of the image its boxes cover)",
            [g for g, _ in SIZE_GROUPS],
            sizes,
        ),
        (f"class ({len(classes)} with most objects)", classes, labels),
    ):
        charts = []
        for name, title, _ in shown:
            rows = []
            for group in groups:
                chosen = [i for i, key in enumerate(keys) if key == group]
                for method, column in values.items():
                    column = column.get(name) if isinstance(column, dict) else None
                    if not chosen or not column or method not in colours:
                        continue
                    picked = np.array([_number(column[i]) for i in chosen])
                    picked = picked[np.isfinite(picked)]
                    if picked.size == 0:
                        continue
                    e = estimate(picked)
                    rows.append(
                        (
                            f"{group} ({len(chosen)}) {method}",
                            e.mean,
                            e.low,
                            e.high,
                            colours[method],
                        )
                    )
            if rows:
                charts.append(svg.interval_chart(title, rows))
        parts.append(
            f"<h3>By {html.escape(heading)}</h3>"
            f'<div class="plots">{"".join(charts)}</div>'
        )
    return (
        f'<h2>Localisation breakdowns</h2><div id="breakdowns">{"".join(parts)}</div>'
    )


def _size_group(fraction: float) -> str:
    name = SIZE_GROUPS[0][0]
    for group, smallest in SIZE_GROUPS:
        if fraction >= smallest:
            name = group
    return name


def _most_different(result: dict[str, Any], metrics: list) -> str:
    images, values = result.get("images"), result.get("values")
    if not isinstance(images, list) or not isinstance(values, dict) or not images:
        return _missing("Images where the methods differ most", "images and values")
    tables = []
    for name, title, _ in metrics:
        columns = {
            method: [_number(v) for v in column[name]]
            for method, column in values.items()
            if isinstance(column, dict) and len(column.get(name) or []) == len(images)
        }
        if len(columns) < 2 or name == "seconds_per_image":
            continue
        matrix = np.array(list(columns.values()))
        with np.errstate(invalid="ignore"):
            spread = np.nanmax(matrix, axis=0) - np.nanmin(matrix, axis=0)
        order = [
            i
            for i in np.argsort(-np.nan_to_num(spread, nan=-1.0))
            if np.isfinite(spread[i])
        ]
        head = "".join(f"<th>{html.escape(m)}</th>" for m in columns)
        rows = "".join(
            f"<tr><td>{html.escape(str(images[i]))}</td><td>{spread[i]:.3g}</td>"
            + "".join(f"<td>{row[i]:.3g}</td>" for row in matrix)
            + "</tr>"
            for i in order[:MOST_DIFFERENT]
        )
        tables.append(
            f"<h3>{html.escape(title)}</h3><table><thead><tr><th>image</th>"
            f"<th>spread</th>{head}</tr></thead><tbody>{rows}</tbody></table>"
        )
    return (
        "<h2>Images where the methods differ most (largest spread)</h2>"
        f'<div id="most-different">{"".join(tables)}</div>'
    )


def _example_maps(result: dict[str, Any], colours: dict[str, str]) -> str:
    """Each method's map over the images where the methods differ most."""
    examples, images = result.get("examples"), result.get("images")
    if not images:
        return ""  # the section above says what is missing
    if not examples:
        return _missing("Maps of the images where the methods differ most", "examples")
    methods = [m for m in result["methods"] if m in examples[0]["maps"]]
    head = "".join(f"<th>{html.escape(m)}</th>" for m in methods)
    rows = []
    for example in examples:
        photo = _picture(example["thumbnail_png"])
        cells = [f"<td>{_img(photo, 'input')}</td>"]
        for method in methods:
            grid = np.asarray(example["maps"][method], dtype=np.float64)
            cells.append(f"<td>{_img(_overlay(photo, grid), method)}</td>")
        name = html.escape(str(images[example["image"]]))
        rows.append(f"<tr><td>{name}</td>{''.join(cells)}</tr>")
    return (
        "<h2>Maps of the images where the methods differ most</h2>"
        '<table id="example-maps"><thead><tr><th>image</th><th>input</th>'
        f"{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def _picture(encoded: str) -> Any:
    from PIL import Image

    return Image.open(io.BytesIO(base64.b64decode(encoded))).convert("RGB")


def _overlay(photo: Any, grid: np.ndarray) -> Any:
    import torch

    from captum_igcam.report.thumbnails import overlay

    values = torch.from_numpy(np.nan_to_num(grid)).float()[None]
    return overlay(photo, values)


def _img(picture: Any, label: str) -> str:
    from captum_igcam.report.thumbnails import jpeg_bytes

    data = base64.b64encode(jpeg_bytes(picture)).decode("ascii")
    return f'<img alt="{html.escape(label)}" src="data:image/jpeg;base64,{data}">'


def _missing(section: str, fields: str) -> str:
    return (
        f'<h2>{html.escape(section)}</h2><p class="note">Not in this result (it '
        f"has no {html.escape(fields)}): rerun captum-igcam benchmark --json with "
        "this version.</p>"
    )
