"""The figure of the model-randomisation sanity checks (Adebayo et al.).

:func:`randomisation_figure` draws a
:class:`~captum_igcam.evaluation.sanity.SanityResult`: each method's map
down the randomisation stages, then the similarity curves.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from captum_igcam.app.methods import METHODS
from captum_igcam.evaluation.sanity.checks import (
    SIMILARITIES,
    SanityResult,
    stage_label,
    summarize_sanity,
)


def randomisation_figure(
    result: SanityResult,
    summary: dict | None = None,
    methods: Sequence[str] | None = None,
    panel_size: float = 1.3,
) -> Any:
    """The paper's figure: maps down the randomisation, then similarity curves.

    The top grid shows, for the first image, each method's map (absolute
    value over its maximum, in grey, as Adebayo et al. draw them) on the
    trained model and after each stage; below, one panel per similarity
    measure with its mean and 95% interval per stage for every method.

    Args:
        result (SanityResult): From :func:`model_randomisation`.
        summary (dict, optional): From :func:`summarize_sanity`.
            Default: None (computed here)
        methods (sequence of str, optional): Methods to draw, in row order.
            Default: None (all, in the result's order)
        panel_size (float, optional): Side of a map panel in inches.
            Default: 1.3

    Returns:
        matplotlib.figure.Figure: The figure (save it with
        ``figure.savefig`` or :func:`captum_igcam.app.safe_files.atomic_save_figure`).
    """
    from matplotlib.figure import Figure

    summary = summary or summarize_sanity(result)
    methods = list(methods or result.values)
    columns = len(result.stages) + 2
    width = panel_size * columns
    maps_height = panel_size * len(methods)
    figure = Figure(figsize=(width, maps_height + 2.6), layout="constrained")
    top, bottom = figure.subfigures(2, 1, height_ratios=[maps_height, 2.6])
    grid = top.subplots(len(methods), columns, squeeze=False)
    titles = ["input", "trained"] + [
        ("up to " if result.mode == "cascading" else "") + stage_label(stage)
        for stage in result.stages
    ]
    for row, name in enumerate(methods):
        for column, ax in enumerate(grid[row]):
            ax.set_xticks([])
            ax.set_yticks([])
            if column == 0:
                ax.imshow(result.image)
                ax.set_ylabel(METHODS[name].title, fontsize=7)
            else:
                shown = np.abs(result.examples[name][column - 1])
                peak = shown.max()
                ax.imshow(
                    shown / peak if peak > 0 else shown, cmap="gray", vmin=0, vmax=1
                )
            if row == 0:
                ax.set_title(titles[column], fontsize=6, rotation=30, loc="left")
    curves = bottom.subplots(1, len(SIMILARITIES), squeeze=False)[0]
    positions = np.arange(len(result.stages))
    for ax, (measure, title) in zip(curves, SIMILARITIES.items()):
        for name in methods:
            estimates = summary[name][measure]
            means = [value.mean for value in estimates]
            ax.plot(
                positions, means, marker="o", markersize=3, label=METHODS[name].title
            )
            ax.fill_between(
                positions,
                [value.low for value in estimates],
                [value.high for value in estimates],
                alpha=0.2,
            )
        ax.axhline(0.0, color="black", linewidth=0.5)
        ax.set_title(title, fontsize=8)
        ax.set_xticks(positions, [stage_label(s) for s in result.stages], fontsize=5)
        ax.tick_params(axis="x", labelrotation=60)
        ax.tick_params(axis="y", labelsize=6)
    curves[0].set_ylabel("similarity to trained", fontsize=7)
    curves[0].legend(fontsize=5, loc="best")
    bottom.suptitle(
        f"{result.model}, layer {result.layer}: {result.mode} randomisation, "
        f"{result.n_images} images (mean, 95% CI)",
        fontsize=8,
    )
    return figure
