"""Naive task targets for the float64 reference, independent of the package.

Forward functions for :func:`reference.naive_integrated_grad_cam`, which runs
one example at a time: they return ``(1, C)`` region scores or a ``(1,)``
detection score, with explicit loops over pixels and detections and the IoU
written out from its definition.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


def naive_region_scores(model: nn.Module) -> Callable[..., torch.Tensor]:
    """``forward(x, region) -> (1, C)``: each class's mean logit over the region."""

    def forward(x: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
        logits = model(x)["out"][0]
        total, count = torch.zeros_like(logits[:, 0, 0]), 0.0
        for i in range(logits.shape[1]):
            for j in range(logits.shape[2]):
                weight = float(region[0, i, j])
                if weight > 0:
                    total = total + weight * logits[:, i, j]
                    count += weight
        return (total / count)[None]

    return forward


def iou(a: list[float], b: list[float]) -> float:
    """Intersection over union of two ``(x1, y1, x2, y2)`` boxes."""
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def naive_detection_score(
    detector: nn.Module, min_iou: float, output: str
) -> Callable[..., torch.Tensor]:
    """``forward(x, box, label) -> (1,)``: the matched detection's score.

    Among detections of the label, the first with the largest IoU; nothing
    below ``min_iou``: score 0. ``output="score+iou"`` adds the IoU, computed
    here in torch from the box coordinates so that it carries gradients.
    """

    def forward(x: torch.Tensor, box: torch.Tensor, label: torch.Tensor):
        found = detector([x[0]])[0]
        wanted = box[0].tolist()
        best, best_iou = None, -1.0
        for k in range(len(found["scores"])):
            if int(found["labels"][k]) != int(label[0]):
                continue
            overlap = iou(found["boxes"][k].tolist(), wanted)
            if overlap > best_iou:
                best, best_iou = k, overlap
        if best is None or best_iou < min_iou:
            return found["scores"].sum()[None] * 0.0
        score = found["scores"][best]
        if output == "score+iou":
            b = found["boxes"][best]
            width = (
                torch.minimum(b[2], box[0, 2]) - torch.maximum(b[0], box[0, 0])
            ).clamp(min=0)
            height = (
                torch.minimum(b[3], box[0, 3]) - torch.maximum(b[1], box[0, 1])
            ).clamp(min=0)
            inter = width * height
            union = (
                (b[2] - b[0]) * (b[3] - b[1])
                + (box[0, 2] - box[0, 0]) * (box[0, 3] - box[0, 1])
                - inter
            )
            score = score + inter / union
        return score[None]

    return forward
