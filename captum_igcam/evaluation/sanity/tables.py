"""Tables and JSON of the model-randomisation sanity checks.

:func:`sanity_table` writes a
:class:`~captum_igcam.evaluation.sanity.SanityResult` as a Markdown table and
:func:`sanity_json` as JSON-ready data (the ``sanity`` field of the
benchmark's result, :mod:`captum_igcam.evaluation.results`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from captum_igcam.evaluation.results import format_interval
from captum_igcam.evaluation.sanity.checks import (
    SIMILARITIES,
    SanityResult,
    stage_label,
    summarize_sanity,
)


def sanity_table(result: SanityResult, summary: dict | None = None) -> str:
    """A Markdown table: one row per method and stage, mean [95% CI] per measure.

    Args:
        result (SanityResult): From :func:`model_randomisation`.
        summary (dict, optional): From :func:`summarize_sanity`.
            Default: None (computed here)

    Returns:
        str: The table, preceded by a line naming the model, layer and mode.
    """
    summary = summary or summarize_sanity(result)
    lines = [
        f"Model randomisation ({result.mode}): {result.model}, layer "
        f"{result.layer}, {result.n_images} images; similarity of each map "
        "to the trained model's, mean [95% CI] (lower: the map depends more "
        "on the weights); constant: images whose randomised map is constant "
        "(correlations undefined, left out)",
        "",
        "| method | randomised | "
        + " | ".join(SIMILARITIES.values())
        + " | constant |",
        "|---|---|" + "---|" * (len(SIMILARITIES) + 1),
    ]
    prefix = "up to " if result.mode == "cascading" else ""
    for name, table in summary.items():
        for index, stage in enumerate(result.stages):
            cells = [_cell(table[m][index]) for m in SIMILARITIES]
            cells.append(
                str(int(np.isnan(result.values[name]["spearman"][index]).sum()))
            )
            label = prefix + stage_label(stage)
            lines.append(f"| {name} | {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _cell(value: Any) -> str:
    return format_interval(value.mean, value.low, value.high, ".2f")


def sanity_json(result: SanityResult, summary: dict | None = None) -> dict[str, Any]:
    """The result as JSON-ready data: settings, stages, per-stage estimates.

    Args:
        result (SanityResult): From :func:`model_randomisation`.
        summary (dict, optional): From :func:`summarize_sanity`.
            Default: None (computed here)

    Returns:
        dict: ``model``, ``layer``, ``mode``, ``stages``, ``n_images``,
        ``settings`` and, per method and measure, ``mean``, ``ci95`` and the
        per-image ``values`` (``null`` where undefined) of every stage.
    """
    summary = summary or summarize_sanity(result)
    return {
        "model": result.model,
        "layer": result.layer,
        "mode": result.mode,
        "stages": [list(stage) for stage in result.stages],
        "n_images": result.n_images,
        "settings": result.settings,
        "methods": {
            name: {
                measure: {
                    "mean": [value.mean for value in estimates],
                    "ci95": [[value.low, value.high] for value in estimates],
                    "values": [
                        [None if np.isnan(v) else v for v in row.tolist()]
                        for row in result.values[name][measure]
                    ],
                }
                for measure, estimates in table.items()
            }
            for name, table in summary.items()
        },
    }
