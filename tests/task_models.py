"""Tiny segmentation and detection models for the task-target tests."""

from __future__ import annotations

import torch
from torch import nn


class TinySegmenter(nn.Module):
    """conv -> relu -> conv -> relu -> 1x1 conv to class logits, upsampled x2.

    Returns ``{"out": N x classes x H x W}`` like torchvision's segmenters.
    """

    def __init__(self, classes: int = 3, channels: int = 4) -> None:
        super().__init__()
        self.backbone = nn.Sequential(
            nn.Conv2d(3, channels, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, stride=2, padding=1),
            nn.ReLU(),
        )
        self.classifier = nn.Conv2d(channels, classes, 1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        logits = self.classifier(self.backbone(x))
        return {"out": nn.functional.interpolate(logits, size=x.shape[-2:])}


def tiny_faster_rcnn(size: int = 48, classes: int = 4) -> nn.Module:
    """torchvision's Faster R-CNN on a two-convolution backbone, ``size`` px.

    ``box_score_thresh=0`` keeps low-scoring detections, so that the random
    weights give detections to explain; ``backbone[2]`` is the layer tests
    explain.
    """
    from torchvision.models.detection import FasterRCNN
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.ops import MultiScaleRoIAlign

    backbone = nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, stride=2, padding=1),
        nn.ReLU(),
    )
    backbone.out_channels = 8
    return FasterRCNN(
        backbone,
        num_classes=classes,
        rpn_anchor_generator=AnchorGenerator(((16, 32),), ((0.5, 1.0, 2.0),)),
        box_roi_pool=MultiScaleRoIAlign(["0"], output_size=4, sampling_ratio=2),
        min_size=size,
        max_size=size,
        representation_size=16,
        box_score_thresh=0.0,
        rpn_pre_nms_top_n_test=50,
        rpn_post_nms_top_n_test=20,
        box_detections_per_img=10,
    )


def tiny_one_stage(kind: str, size: int = 48, classes: int = 4) -> nn.Module:
    """torchvision's RetinaNet or FCOS on a one-convolution backbone, ``size`` px.

    ``score_thresh=0`` keeps the random weights' low scores; ``backbone[0]``
    is the layer tests explain.
    """
    from torchvision.models.detection import FCOS, RetinaNet
    from torchvision.models.detection.anchor_utils import AnchorGenerator

    # 32 channels: FCOS's head normalises with GroupNorm(32, channels).
    backbone = nn.Sequential(nn.Conv2d(3, 32, 3, stride=4, padding=1), nn.ReLU())
    backbone.out_channels = 32
    options = dict(
        min_size=size,
        max_size=size,
        score_thresh=0.0,
        topk_candidates=20,
        detections_per_img=10,
    )
    if kind == "retinanet":
        anchors = AnchorGenerator(((16, 24),), ((1.0, 2.0),))
        return RetinaNet(backbone, classes, anchor_generator=anchors, **options)
    anchors = AnchorGenerator(((16,),), ((1.0,),))
    return FCOS(backbone, classes, anchor_generator=anchors, **options)


def _bundle(model: nn.Module, layer: str, task: str, categories: list[str]):
    from captum_igcam.app.model_bundle import ModelBundle

    return ModelBundle(
        name=f"tiny-{task}",
        model=model.eval(),
        layer_name=layer,
        input_size=48,
        mean=(0.0,) * 3,
        std=(1.0,) * 3,
        categories=categories,
        task=task,
    )


def segmenter_bundle():
    """:class:`TinySegmenter` (seed 1: its maps of photos are not 0) as a model
    the command line loads (``--model task_models:segmenter_bundle``),
    explaining ``backbone.2``."""
    torch.manual_seed(1)
    return _bundle(
        TinySegmenter(), "backbone.2", "segmentation", ["__background__", "cat", "dog"]
    )


def detector_bundle():
    """:func:`tiny_faster_rcnn` (seed 0) as a model the command line loads
    (``--model task_models:detector_bundle``), explaining ``backbone.2``."""
    torch.manual_seed(0)
    return _bundle(
        tiny_faster_rcnn(),
        "backbone.2",
        "detection",
        ["__background__", "cat", "dog", "bird"],
    )
