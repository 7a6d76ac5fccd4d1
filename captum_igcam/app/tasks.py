"""What one photo's explanation is about: a class, a region or a box.

:func:`prepare` turns a photo's model input and the user's choice (a class, a
region, a box) into what the method registry explains, the same way for
every task: a forward function, the ``target`` passed with it, and a record
of what was explained for ``summary.json``. For a classifier the forward
function is the model and the target the predicted or requested class; for
a segmentation model or a detector it is the model wrapped by
:class:`~captum_igcam.targets.SegmentationScores` or
:class:`~captum_igcam.targets.DetectionScore` with the region or the box
bound to it. :func:`draw` draws the region or the box over a figure's
panels. Boxes are given and recorded in the photo's pixels; the model sees
the photo resized to its square input.
"""

from __future__ import annotations

import dataclasses
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

#: The first category of torchvision's segmentation and detection weights.
BACKGROUND = "__background__"


class NothingToExplainError(ValueError):
    """A photo has no pixel of the class, not the detection asked for, or
    no pixel inside the box asked for."""


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
        forward (nn.Module): The model for the method registry: a
            classifier itself, else the model with the region or box bound.
        target (int, optional): The class ``target`` (classification,
            segmentation); None for a detection score.
        caption (str): What is explained, for the figure's panels.
        title (str): What the model gives, under the photo's name.
        record (dict): What was explained, for ``summary.json``.
        region (np.ndarray, optional): The region at the photo's size
            (boolean ``H x W``).
        box (tuple, optional): The box in the photo's pixels.
    """

    forward: nn.Module
    target: int | None
    caption: str
    title: str
    record: dict[str, Any]
    region: np.ndarray | None = None
    box: tuple[float, ...] | None = None


def prepare(
    bundle: ModelBundle,
    inputs: Tensor,
    photo_size: tuple[int, int],
    target: int | None,
    choice: TaskTarget | None = None,
) -> Prepared:
    """What to explain for one photo, for a model of any of the tasks.

    Args:
        bundle (ModelBundle): A classifier, segmentation model or detector.
        inputs (Tensor): The photo as the model's ``(1, 3, S, S)`` input.
        photo_size (tuple[int, int]): The photo's ``(H, W)``.
        target (int, optional): Class; None for the predicted class (for a
            segmentation model the class predicted on most pixels,
            background last; for a detector any label).
        choice (TaskTarget, optional): Region or box options; a classifier
            takes none.
            Default: None (``TaskTarget()``)

    Returns:
        Prepared: The forward function, target and record.

    Raises:
        NothingToExplainError: No pixel of the class, no such detection, or
            a box outside this photo; the message names the option.
        SettingValueError: Options that do not fit the model's task.

    Example::

        >>> prepared = prepare(bundle, inputs, (300, 451), None)
        >>> prepared.record["predicted_label"]
        'Egyptian cat'
    """
    choice = choice or TaskTarget()
    choice.check_task(bundle.task)
    if bundle.task == "classification":
        return _prepare_classification(bundle, inputs, target)
    box = _box_in_photo(choice, photo_size)
    scale = _photo_to_input(inputs, photo_size)
    if bundle.task == "segmentation":
        prepared = _prepare_segmentation(bundle, inputs, target, box, scale)
        region = nn.functional.interpolate(prepared.region[:, None].float(), photo_size)
        return dataclasses.replace(prepared, region=region[0, 0].cpu().numpy() > 0.5)
    return _prepare_detection(bundle, inputs, scale, target, choice, box)


def _box_in_photo(
    choice: TaskTarget, photo_size: tuple[int, int]
) -> int | tuple[float, ...] | None:
    """The ``--box`` of ``choice``; a box that misses the photo is nothing to
    explain on it (it may fit the other photos of a run)."""
    box = parse_box(choice.box)
    height, width = photo_size
    if isinstance(box, tuple):
        x1, y1, x2, y2 = box
        if x2 <= 0 or y2 <= 0 or x1 >= width or y1 >= height:
            raise NothingToExplainError(
                f"box: {choice.box} lies outside this photo ({width} x {height} pixels)"
            )
    return box


def _photo_to_input(inputs: Tensor, photo_size: tuple[int, int]) -> Tensor:
    """``(sx, sy, sx, sy)``: multiply photo coordinates to get input coordinates."""
    height, width = photo_size
    sx, sy = inputs.shape[-1] / width, inputs.shape[-2] / height
    return torch.tensor([sx, sy, sx, sy], device=inputs.device)


def _label(bundle: ModelBundle, index: int) -> str:
    categories = bundle.categories
    return categories[index] if 0 <= index < len(categories) else f"class {index}"


def _prepare_classification(
    bundle: ModelBundle, inputs: Tensor, target: int | None
) -> Prepared:
    """The model itself, and the requested class or else the predicted one."""
    with torch.no_grad():
        probabilities = bundle.model(inputs).float().softmax(dim=1)[0].cpu()
    predicted = int(probabilities.argmax())
    explained = predicted if target is None else target
    predicted_probability = round(float(probabilities[predicted]), 6)
    target_probability = round(float(probabilities[explained]), 6)
    return Prepared(
        forward=bundle.model,
        target=explained,
        caption=f"{_label(bundle, explained)} {target_probability:.2f}",
        title=f"predicted: {_label(bundle, predicted)} {predicted_probability:.2f}",
        record={
            "predicted_index": predicted,
            "predicted_label": _label(bundle, predicted),
            "probability": predicted_probability,
            "target_index": explained,
            "target_label": _label(bundle, explained),
            "target_probability": target_probability,
        },
    )


def _prepare_segmentation(
    bundle: ModelBundle,
    inputs: Tensor,
    target: int | None,
    box: tuple[float, ...] | None,
    scale: Tensor,
) -> Prepared:
    """The class's mean logit over the predicted region or the box ``box``
    (photo pixels; ``scale`` turns them into input pixels)."""
    scores = SegmentationScores(bundle.model)
    with torch.no_grad():
        logits = scores.logits(inputs)
    if target is None:
        target = _most_predicted_class(bundle, logits)
    if box is None:
        try:
            region = predicted_region(scores, inputs, target)
        except ValueError as error:  # no pixel of the class
            raise NothingToExplainError(str(error)) from None
    else:
        input_box = torch.tensor([box], device=inputs.device) * scale
        try:
            region = box_region(input_box, logits.shape[-2:])
        except ValueError:  # the box is thinner than an output pixel
            height, width = logits.shape[-2:]
            raise NothingToExplainError(
                f"box: {','.join(f'{v:g}' for v in box)} covers no pixel centre of "
                f"the model's {height} x {width} output on this photo"
            ) from None
    with torch.no_grad():
        score = float(scores(inputs, region)[0, target])
    return Prepared(
        forward=_BoundArguments(scores, region),
        target=target,
        caption=f"{_label(bundle, target)} region (mean logit {score:.2f})",
        title=bundle.task,
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
    box: int | tuple[float, ...] | None,
) -> Prepared:
    """A detection by rank, or the box ``box`` (in photo pixels)."""
    scores = DetectionScore(bundle.model, choice.detection_output, choice.min_iou)
    with torch.no_grad():
        found = scores.detect(inputs)[0]
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
        title=bundle.task,
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
            _outline(axis, prepared.region)


def _outline(axis: Any, region: np.ndarray) -> None:
    """Draw the region's outline, also on a photo a pixel high or wide.

    The region is framed by one pixel outside it, so that it always has the
    two rows and columns a contour needs, and a region that reaches the
    photo's edge is closed along it.
    """
    height, width = region.shape
    limits = axis.get_xlim(), axis.get_ylim()
    axis.contour(
        np.arange(-1, width + 1),
        np.arange(-1, height + 1),
        np.pad(region, 1).astype(float),
        levels=[0.5],
        colors="white",
        linewidths=1,
    )
    axis.set_xlim(limits[0])
    axis.set_ylim(limits[1])


__all__ = ["BACKGROUND", "NothingToExplainError", "Prepared", "draw", "prepare"]
