"""Explaining a segmentation model or a detector on one photo.

:func:`prepare` turns a photo's model input and the user's choice (a class, a
region, a box) into what the method registry explains: the model wrapped by
:class:`~captum_igcam.targets.SegmentationScores` or
:class:`~captum_igcam.targets.DetectionScore` with the region or the box
bound to it, the class ``target``, and a record of what was explained for
``summary.json``. :func:`draw` draws the region or the box over a figure's
panels. Boxes are given and recorded in the photo's pixels; the model sees
the photo resized to its square input.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn

from captum_igcam.app.task_settings import TaskTarget, parse_box
from captum_igcam.targets import (
    DetectionScore,
    SegmentationScores,
    box_region,
    predicted_region,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from captum_igcam.app.model_bundle import ModelBundle
    from captum_igcam.app.settings import MethodSettings

#: The first category of torchvision's segmentation and detection weights.
BACKGROUND = "__background__"


class NothingToExplainError(ValueError):
    """A photo has no pixel of the class, or not the detection asked for."""


class _BoundArguments(nn.Module):
    """``forward(inputs) = scores(inputs, *arguments)``, one set for every example.

    The method registry calls a model with the inputs alone; the region or
    the box (batch 1) is expanded to however many path points a pass holds.
    """

    def __init__(self, scores: nn.Module, *arguments: Tensor) -> None:
        super().__init__()
        self.scores = scores
        self.arguments = arguments
        self.training = scores.training

    def forward(self, inputs: Tensor) -> Tensor:
        expanded = [a.expand(len(inputs), *a.shape[1:]) for a in self.arguments]
        return self.scores(inputs, *expanded)


@dataclasses.dataclass
class Prepared:
    """One photo's explanation target.

    Args:
        forward (nn.Module): The model with the region or box bound; a
            model for the method registry.
        target (int, optional): The class ``target`` (segmentation); None for
            a detection score.
        caption (str): What is explained, for the figure's panels.
        record (dict): What was explained, for ``summary.json``.
        region (np.ndarray, optional): The region at the photo's size
            (boolean ``H x W``).
        box (tuple, optional): The box in the photo's pixels.
    """

    forward: nn.Module
    target: int | None
    caption: str
    record: dict[str, Any]
    region: np.ndarray | None = None
    box: tuple[float, ...] | None = None


def prepare(
    bundle: ModelBundle,
    inputs: Tensor,
    photo_size: tuple[int, int],
    target: int | None,
    choice: TaskTarget,
) -> Prepared:
    """What to explain for one photo of a segmentation model or a detector.

    Args:
        bundle (ModelBundle): A segmentation or detection model.
        inputs (Tensor): The photo as the model's ``(1, 3, S, S)`` input.
        photo_size (tuple[int, int]): The photo's ``(H, W)``.
        target (int, optional): Class; None for the class predicted on most
            pixels (background last) or, for a detector, any label.
        choice (TaskTarget): Region or box options.

    Returns:
        Prepared: The bound model, target and record.

    Raises:
        ValueError: No pixel of the class, no such detection, or a box for
            an unsuitable task; the message names the option.
    """
    scale = _photo_to_input(inputs, photo_size)
    if bundle.task == "segmentation":
        prepared = _prepare_segmentation(bundle, inputs, scale, target, choice)
        region = nn.functional.interpolate(prepared.region[:, None].float(), photo_size)
        return dataclasses.replace(prepared, region=region[0, 0].cpu().numpy() > 0.5)
    return _prepare_detection(bundle, inputs, scale, target, choice)


def _photo_to_input(inputs: Tensor, photo_size: tuple[int, int]) -> Tensor:
    """``(sx, sy, sx, sy)``: multiply photo coordinates to get input coordinates."""
    height, width = photo_size
    sx, sy = inputs.shape[-1] / width, inputs.shape[-2] / height
    return torch.tensor([sx, sy, sx, sy], device=inputs.device)


def _label(bundle: ModelBundle, index: int) -> str:
    categories = bundle.categories
    return categories[index] if 0 <= index < len(categories) else f"class {index}"


def _prepare_segmentation(
    bundle: ModelBundle,
    inputs: Tensor,
    scale: Tensor,
    target: int | None,
    choice: TaskTarget,
) -> Prepared:
    scores = SegmentationScores(bundle.model)
    choice.check_task("segmentation")
    box = parse_box(choice.box)
    with torch.no_grad():
        logits = scores.logits(inputs)
    if target is None:
        target = _most_predicted_class(bundle, logits)
    if box is None:
        try:
            region = predicted_region(scores, inputs, target)
        except ValueError as error:
            raise NothingToExplainError(str(error)) from None
    else:
        input_box = torch.tensor([box], device=inputs.device) * scale
        region = box_region(input_box, logits.shape[-2:])
    with torch.no_grad():
        score = float(scores(inputs, region)[0, target])
    return Prepared(
        forward=_BoundArguments(scores, region),
        target=target,
        caption=f"{_label(bundle, target)} region (mean logit {score:.2f})",
        record={
            "task": "segmentation",
            "target_index": target,
            "target_label": _label(bundle, target),
            "region": "predicted" if box is None else "box",
            "box": None if box is None else list(box),
            "region_pixels": int(region.sum()),
            "region_fraction": round(float(region.float().mean()), 6),
            "region_mean_logit": round(score, 6),
        },
        region=region,
    )


def _most_predicted_class(bundle: ModelBundle, logits: Tensor) -> int:
    """The class of most pixels, background only if nothing else is predicted."""
    counts = torch.bincount(logits.argmax(dim=1).flatten(), minlength=logits.shape[1])
    if bundle.categories and bundle.categories[0] == BACKGROUND and counts[1:].any():
        return 1 + int(counts[1:].argmax())
    return int(counts.argmax())


def _prepare_detection(
    bundle: ModelBundle,
    inputs: Tensor,
    scale: Tensor,
    target: int | None,
    choice: TaskTarget,
) -> Prepared:
    scores = DetectionScore(bundle.model, choice.detection_output, choice.min_iou)
    with torch.no_grad():
        found = scores.detect(inputs)[0]
    box = parse_box(choice.box)
    index = None
    if box is None or isinstance(box, int):
        rank = box or 0
        candidates = torch.arange(len(found["scores"]), device=inputs.device)
        if target is not None:
            candidates = candidates[found["labels"] == target]
        if rank >= len(candidates):
            of_label = "" if target is None else f" of class {_label(bundle, target)}"
            raise NothingToExplainError(
                f"box: the model found {len(candidates)} detection(s){of_label} on "
                f"this photo, so there is no detection {rank}; give a box "
                "x1,y1,x2,y2 or another target"
            )
        index = int(candidates[rank])
        input_box = found["boxes"][index]
        label = int(found["labels"][index])
    else:
        input_box = torch.tensor(box, device=inputs.device) * scale
        label = target if target is not None else _overlapping_label(found, input_box)
    input_box = input_box.to(inputs.dtype)
    bound_label = torch.tensor([label], device=inputs.device)
    with torch.no_grad():
        match = scores.match(inputs, input_box[None], bound_label)
    photo_box = tuple(round(float(v), 2) for v in input_box / scale)
    matched = bool(match.matched[0])
    score = float(match.score[0])
    return Prepared(
        forward=_BoundArguments(scores, input_box[None], bound_label),
        target=None,
        caption=f"{_label(bundle, label)} box ({choice.detection_output} {score:.2f})"
        if matched
        else f"{_label(bundle, label)} box (no detection matches at the input)",
        record={
            "task": "detection",
            "target_index": label,
            "target_label": _label(bundle, label),
            "box": list(photo_box),
            "detection_index": index,
            "explained": choice.detection_output,
            "min_iou": choice.min_iou,
            "matched_at_input": matched,
            "score_at_input": round(score, 6),
            "detections_at_input": len(found["scores"]),
        },
        box=photo_box,
    )


def _overlapping_label(found: dict[str, Tensor], box: Tensor) -> int:
    from torchvision.ops import box_iou

    if not len(found["boxes"]):
        raise NothingToExplainError(
            "box: the model found no detection on this photo to take the label "
            "from; give the class with --target"
        )
    overlap = box_iou(found["boxes"], box[None].to(found["boxes"].dtype))[:, 0]
    return int(found["labels"][int(overlap.argmax())])


def draw(figure: Figure, prepared: Prepared, panels: int) -> None:
    """Outline the region or the box on the photo and on each overlay panel."""
    from matplotlib.patches import Rectangle

    for axis in figure.axes[: 1 + panels]:
        if prepared.box is not None:
            x1, y1, x2, y2 = prepared.box
            axis.add_patch(
                Rectangle(
                    (x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor="white", lw=1.5
                )
            )
        if prepared.region is not None:
            axis.contour(prepared.region, levels=[0.5], colors="white", linewidths=1)


def explain_photo(
    folder: Path,
    settings: MethodSettings,
    bundle: ModelBundle,
    methods: Sequence[str],
    target: int | None,
    choice: TaskTarget,
    label: str,
    stem: str,
    photo: np.ndarray,
    upsampled_maps: bool,
) -> dict[str, Any]:
    """``explain``'s figure, maps and summary record for one photo of a task model.

    Like a classifier's (:func:`captum_igcam.app.explain.explain_images`),
    with the region or the box outlined on every panel and the record saying
    what was explained.
    """
    from captum_igcam.app import _atomic, maps
    from captum_igcam.app.baselines import baseline_input
    from captum_igcam.app.explain import FIGURE_DPI, _save_maps
    from captum_igcam.app.methods import METHODS

    inputs = bundle.preprocess(photo).unsqueeze(0)
    prepared = prepare(bundle, inputs, photo.shape[:2], target, choice)
    layer = bundle.layer()
    baseline = baseline_input(bundle, photo, settings.baseline)
    figure_path = folder / f"{stem}.png"
    files, panels = [figure_path.name], []
    for name in methods:
        explain_maps = METHODS[name].build(prepared.forward, layer, settings)
        layer_map = explain_maps(inputs, prepared.target, baseline)
        names, heat = _save_maps(
            folder,
            stem,
            name,
            layer_map.detach().float().cpu(),
            photo.shape[:2],
            upsampled_maps,
        )
        files.extend(names)
        panels.append((f"{METHODS[name].title}\n{prepared.caption}", heat))
    weights_note = "\n(random weights)" if settings.random_weights else ""
    figure = maps.explanation_figure(
        photo, panels, image_title=f"{stem}\n{bundle.task}{weights_note}"
    )
    draw(figure, prepared, len(panels))
    _atomic.atomic_save_figure(figure, figure_path, dpi=FIGURE_DPI)
    return {"image": label, "name": stem, **prepared.record, "files": files}


__all__ = ["NothingToExplainError", "Prepared", "draw", "explain_photo", "prepare"]
