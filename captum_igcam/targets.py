"""Scores of segmentation and detection models, in the shape Captum explains.

Captum's attribution methods explain a forward function that returns one
score per example (or scores from which ``target`` picks one). A semantic
segmentation model returns a score per class and pixel, and a detector a list
of detections per image; the wrappers here turn both into that shape, so that
:class:`~captum_igcam.IntegratedLayerGradCam`, ``LayerGradCam``,
``LayerIntegratedGradients`` and ``NoiseTunnel`` explain them unchanged:

- :class:`SegmentationScores`: for a model returning ``N x C x H x W``
  logits (or torchvision's ``fcn_*``, ``deeplabv3_*``, ``lraspp_*``, which
  return them under ``"out"``), the ``N x C`` mean logit of each class over a
  region given per example; ``target`` picks the class. Regions come from
  :func:`box_region`, :func:`predicted_region` or any mask.
- :class:`DetectionScore`: for torchvision's ``fasterrcnn_*``,
  ``retinanet_*``, ``fcos_*`` and ``ssd*`` detectors (a list of images in, a
  list of ``{"boxes", "labels", "scores"}`` out), the score of the detection
  matched to an explained box at every evaluation.

What is explained is passed as ``additional_forward_args`` (the region, or
the box and label), never stored in the wrapper: Captum repeats those
tensors along with the inputs for path points, noise samples and internal
batches, so every example keeps its own region or box in every method.

Example::

    >>> scores = SegmentationScores(deeplab)
    >>> region = predicted_region(scores, images, target=15)  # fixed at the input
    >>> maps = IntegratedLayerGradCam(scores, deeplab.backbone["16"]).attribute(
    ...     images, target=15, additional_forward_args=(region,), n_steps=32)
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from captum_igcam._checks import bad_type, bad_value

#: What :class:`DetectionScore` explains: the matched detection's score, or
#: its score plus the IoU of its box with the explained box.
DETECTION_OUTPUTS = ("score", "score+iou")


def _first(flags: Tensor) -> int | None:
    """The index of the first true element of ``flags``, or None."""
    return int(flags.nonzero()[0]) if bool(flags.any()) else None


def _shape(value: object) -> object:
    """A tensor's shape, or the type name of anything else (for messages)."""
    return tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__


class SegmentationScores(nn.Module):
    r"""The mean logit of every class over a region, per example.

    ``forward(inputs, region)`` runs the model and returns
    ``scores[n, c] = mean over the pixels of region[n] of logits[n, c]``, an
    ``N x C`` tensor like a classifier's, so Captum's ``target`` picks the
    class (one for all examples or one per example). For a region of ``R``
    pixels this is the region's summed logit divided by ``R``: a fixed
    scale, which normalised maps do not show.

    The region is an input of ``forward``, passed through
    ``additional_forward_args``: it is the same at every path point, so the
    integral explains one fixed function of the input. A region "where the
    model predicts the class" is fixed once from the unscaled input by
    :func:`predicted_region`, not recomputed per path point (where the model
    predicts little or nothing of the class near the baseline).

    Args:
        model (nn.Module): A segmentation model returning ``N x C x H x W``
            logits, or a mapping holding them under ``"out"`` (torchvision's
            ``fcn_*``, ``deeplabv3_*``, ``lraspp_*``; the auxiliary output is
            ignored).

    Example::

        >>> scores = SegmentationScores(deeplab).eval()
        >>> region = box_region(torch.tensor([[40, 30, 120, 100]]), (224, 224))
        >>> LayerGradCam(scores, deeplab.backbone["16"]).attribute(
        ...     images, target=15, additional_forward_args=(region,))
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        if not isinstance(model, nn.Module):
            raise bad_type("model", "an nn.Module", model)
        self.model = model
        self.training = model.training  # the model's flag, the model untouched

    def logits(self, inputs: Tensor) -> Tensor:
        """The model's ``N x C x H x W`` logits (its ``"out"`` for a mapping)."""
        output = self.model(inputs)
        logits = output.get("out") if isinstance(output, Mapping) else output
        if not isinstance(logits, Tensor) or logits.dim() != 4:
            got = list(output) if isinstance(output, Mapping) else _shape(output)
            expected = "N x C x H x W logits, or a mapping holding them under 'out'"
            raise bad_value("model", expected, got)
        return logits

    def forward(self, inputs: Tensor, region: Tensor) -> Tensor:
        """Scores ``N x C``: each class's mean logit over each example's region.

        Args:
            inputs (Tensor): The model's input, ``N x ...``.
            region (Tensor): ``N x H x W`` (or ``N x 1 x H x W``) mask at the
                logits' resolution, boolean or weights >= 0 (a weighted mean),
                not empty for any example.

        Returns:
            Tensor: ``N x C`` region scores.
        """
        logits = self.logits(inputs)
        weights = _check_region(region, logits).to(logits.dtype)
        summed = torch.einsum("nchw,nhw->nc", logits, weights)
        return summed / weights.sum(dim=(1, 2)).unsqueeze(1)


def _check_region(region: Tensor, logits: Tensor) -> Tensor:
    if isinstance(region, Tensor) and region.dim() == 4 and region.shape[1] == 1:
        region = region[:, 0]
    expected = (logits.shape[0], *logits.shape[2:])
    if _shape(region) != expected:
        expected = (
            f"a mask of shape {expected} (examples x the logits' height x width) "
            "passed as additional_forward_args=(region,)"
        )
        raise bad_value("region", expected, _shape(region))
    valid = torch.isfinite(region) & (region >= 0)
    if (first := _first(~valid.flatten(1).all(dim=1))) is not None:
        expected = "finite weights >= 0 in every example's region"
        raise bad_value("region", expected, f"others for example {first}")
    if (first := _first((region.flatten(1) <= 0).all(dim=1))) is not None:
        expected = "a pixel > 0 in every example's region (an empty one has no score)"
        raise bad_value("region", expected, f"an empty region for example {first}")
    return region


def box_region(boxes: Tensor, size: Sequence[int]) -> Tensor:
    """Masks of axis-aligned boxes: the pixels whose centres lie inside.

    Args:
        boxes (Tensor): ``N x 4`` boxes ``(x1, y1, x2, y2)`` in pixels of the
            logits (``x`` is the column); one box per example.
        size (Sequence[int]): ``(H, W)`` of the logits.

    Returns:
        Tensor: Boolean ``N x H x W`` masks, on the boxes' device.

    Raises:
        ValueError: A box is not ``N x 4`` or covers no pixel centre.

    Example::

        >>> box_region(torch.tensor([[1.0, 0.0, 3.0, 2.0]]), (3, 4)).int()
        tensor([[[0, 1, 1, 0],
                 [0, 1, 1, 0],
                 [0, 0, 0, 0]]], dtype=torch.int32)
    """
    boxes = torch.as_tensor(boxes)
    if boxes.dim() != 2 or boxes.shape[1] != 4:
        expected = "N x 4 (x1, y1, x2, y2)"
        raise bad_value("boxes", expected, f"shape {tuple(boxes.shape)}")
    height, width = (int(side) for side in size)
    x1, y1, x2, y2 = boxes[:, :, None, None].unbind(1)  # each N x 1 x 1
    rows = torch.arange(height, device=boxes.device)[:, None] + 0.5  # pixel centres
    columns = torch.arange(width, device=boxes.device) + 0.5
    masks = (rows >= y1) & (rows < y2) & (columns >= x1) & (columns < x2)
    if (first := _first(~masks.flatten(1).any(dim=1))) is not None:
        expected = f"boxes covering a pixel centre of the {height} x {width} output"
        raise bad_value("boxes", expected, f"box {first} {boxes[first].tolist()}")
    return masks


@torch.no_grad()
def predicted_region(
    scores: SegmentationScores, inputs: Tensor, target: int | Sequence[int] | Tensor
) -> Tensor:
    """The pixels the model assigns to the target class at the input.

    The arg-max class of every pixel, computed once on the unscaled inputs
    (no gradients) and kept fixed for the whole explanation.

    Args:
        scores (SegmentationScores): The wrapped model.
        inputs (Tensor): ``N x ...`` inputs to explain.
        target (int, sequence of int, or Tensor): The class, one for all
            examples or one per example.

    Returns:
        Tensor: Boolean ``N x H x W`` masks at the logits' resolution.

    Raises:
        ValueError: An example has no pixel of its class.

    Example::

        >>> region = predicted_region(scores, images, target=15)  # "person"
    """
    labels = scores.logits(inputs).argmax(dim=1)
    classes = torch.as_tensor(target, device=labels.device).reshape(-1, 1, 1)
    if classes.shape[0] not in (1, labels.shape[0]):
        expected = f"one class or one per example ({labels.shape[0]})"
        raise bad_value("target", expected, classes.shape[0])
    region = labels == classes
    if (first := _first(~region.flatten(1).any(dim=1))) is not None:
        label = int(classes[min(first, classes.shape[0] - 1)])
        raise bad_value(
            "target",
            "a class the model assigns pixels to in every example",
            f"class {label}: the model assigns no pixel of example {first} to it",
            "give a box or a mask as the region instead",
        )
    return region


@dataclass(frozen=True)
class DetectionMatch:
    """The detections matched to the explained boxes, one per example.

    Args:
        score (Tensor): ``(N,)`` what :class:`DetectionScore` explains (zero
            where nothing matched), differentiable.
        iou (Tensor): ``(N,)`` IoU of the matched box with the explained box
            (zero where nothing matched), detached.
        index (Tensor): ``(N,)`` index of the matched detection in the
            detector's output, ``-1`` where nothing matched.
    """

    score: Tensor
    iou: Tensor
    index: Tensor

    @property
    def matched(self) -> Tensor:
        """``(N,)`` booleans: whether a detection matched."""
        return self.index >= 0


class DetectionScore(nn.Module):
    r"""The score of one detected object, matched at every evaluation.

    ``forward(inputs, boxes, labels)`` runs the detector on the ``N`` images
    of ``inputs`` and returns an ``(N,)`` score: for example ``n``, among the
    detections with label ``labels[n]``, the one whose box has the largest
    IoU with ``boxes[n]``; its score (``output="score"``), or its score plus
    that IoU (``output="score+iou"``, which also explains the box's
    position through the box regression). The explained box and label are
    usually a detection of the model on the unscaled input.

    **Matching along a path.** At every path point the detector runs again,
    and its detections appear, move and vanish. The rule: same label, the
    largest IoU with the explained box, and at least ``min_iou``; ties go
    to the first detection in the detector's order (highest score first).
    Where no detection qualifies (typically near a black baseline, where no
    score passes the detector's ``score_thresh``), the score is 0 with zero
    gradient: that path point adds nothing to the integral. The fraction of
    such points is measured by :meth:`match` (see ``docs/tasks.md``).

    **Gradients.** A detector's non-maximum suppression, score threshold and
    top-k choose *which* detections are kept; that choice is piecewise
    constant and has no gradient. The kept detections' scores (and boxes)
    are computed from the features by differentiable operations (softmax or
    sigmoid of the class logits; the box regression decoded onto anchors or
    proposals), so the gradient of the matched score flows back through the
    head to the explained layer, with the selection held fixed.

    Args:
        detector (nn.Module): A detector in eval mode that takes a list of
            ``3 x H x W`` images and returns one dict with ``"boxes"``
            (``K x 4``, ``x1, y1, x2, y2`` in input pixels), ``"labels"`` and
            ``"scores"`` per image, as torchvision's detectors do (their
            internal resizing and normalisation are part of the model).
        output (str, optional): ``"score"`` or ``"score+iou"``.
            Default: "score"
        min_iou (float, optional): The smallest IoU that counts as a match, in
            ``[0, 1]``.
            Default: 0.5

    Raises:
        ValueError: The detector is in training mode (it would return losses
            and need targets), or an option is out of range.

    Example::

        >>> target = DetectionScore(fasterrcnn)
        >>> with torch.no_grad():
        ...     found = fasterrcnn(list(images))
        >>> boxes = torch.stack([d["boxes"][0] for d in found])
        >>> labels = torch.stack([d["labels"][0] for d in found])
        >>> IntegratedLayerGradCam(target, fasterrcnn.backbone.body).attribute(
        ...     images, additional_forward_args=(boxes, labels), n_steps=32)
    """

    def __init__(
        self, detector: nn.Module, output: str = "score", min_iou: float = 0.5
    ) -> None:
        super().__init__()
        if not isinstance(detector, nn.Module):
            raise bad_type("detector", "an nn.Module", detector)
        if output not in DETECTION_OUTPUTS:
            raise bad_value("output", f"one of {DETECTION_OUTPUTS}", repr(output))
        if isinstance(min_iou, bool) or not isinstance(min_iou, numbers.Real):
            raise bad_type("min_iou", "a number in [0, 1]", min_iou)
        if not 0.0 <= min_iou <= 1.0:
            raise bad_value("min_iou", "a number in [0, 1]", repr(min_iou))
        self.detector = detector
        self.output = output
        self.min_iou = float(min_iou)
        _check_eval(detector)
        self.training = False

    def detect(self, inputs: Tensor) -> list[dict[str, Tensor]]:
        """The detector's output for the ``N`` images of ``inputs``."""
        _check_eval(self.detector)
        if not isinstance(inputs, Tensor) or inputs.dim() != 4:
            raise bad_value("inputs", "images N x 3 x H x W", _shape(inputs))
        detections = self.detector(list(inputs))
        keys = {"boxes", "labels", "scores"}
        if not (
            isinstance(detections, (list, tuple))
            and len(detections) == len(inputs)
            and all(isinstance(d, Mapping) and keys <= d.keys() for d in detections)
        ):
            expected = (
                "a list of one dict with 'boxes', 'labels' and 'scores' per image"
            )
            raise bad_value("detector", expected, f"{detections!r:.200}")
        return list(detections)

    def match(self, inputs: Tensor, boxes: Tensor, labels: Tensor) -> DetectionMatch:
        """Run the detector and match each example's explained box.

        Args:
            inputs (Tensor): ``N x 3 x H x W`` images.
            boxes (Tensor): ``N x 4`` explained boxes ``(x1, y1, x2, y2)``.
            labels (Tensor): ``(N,)`` explained labels.

        Returns:
            DetectionMatch: Scores, IoUs and matched indices.
        """
        from torchvision.ops import box_iou

        detections = self.detect(inputs)
        boxes, labels = _check_explained(boxes, labels, len(detections))
        scores, ious, indices = [], [], []
        for detection, box, label in zip(detections, boxes, labels):
            found = detection["scores"]
            overlap = box_iou(detection["boxes"], box[None].to(found.dtype))[:, 0]
            # A detection of another label has candidate value -1 < min_iou.
            same_label = detection["labels"] == label
            candidates = torch.where(same_label, overlap.detach(), -1.0)
            best = int(candidates.argmax()) if len(candidates) else -1
            if best >= 0 and float(candidates[best]) >= self.min_iou:
                iou, score = overlap[best], found[best]
                scores.append(score + iou if self.output == "score+iou" else score)
            else:  # zero, still part of the graph where the detector output is
                best, iou = -1, found.new_zeros(())
                scores.append(found.sum() * 0.0)
            ious.append(iou.detach())
            indices.append(best)
        return DetectionMatch(
            torch.stack(scores),
            torch.stack(ious),
            torch.tensor(indices, device=boxes.device),
        )

    def forward(self, inputs: Tensor, boxes: Tensor, labels: Tensor) -> Tensor:
        """``(N,)`` scores of the detections matched to ``boxes`` and ``labels``.

        Args:
            inputs (Tensor): ``N x 3 x H x W`` images.
            boxes (Tensor): ``N x 4`` explained boxes in input pixels.
            labels (Tensor): ``(N,)`` explained labels.

        Returns:
            Tensor: ``(N,)`` scores; 0 where no detection matched.
        """
        return self.match(inputs, boxes, labels).score


def _check_eval(detector: nn.Module) -> None:
    if detector.training:
        raise bad_value(
            "detector",
            "a model in eval mode (in training mode a torchvision detector needs "
            "targets and returns losses)",
            "one in training mode",
            "call detector.eval() first",
        )


def _check_explained(
    boxes: Tensor, labels: Tensor, examples: int
) -> tuple[Tensor, Tensor]:
    if _shape(boxes) != (examples, 4):
        expected = (
            f"a tensor of shape ({examples}, 4) with one box (x1, y1, x2, y2) per "
            "example, passed as additional_forward_args=(boxes, labels)"
        )
        raise bad_value("boxes", expected, _shape(boxes))
    if _shape(labels) != (examples,):
        expected = f"a tensor of shape ({examples},) with one label per example"
        raise bad_value("labels", expected, _shape(labels))
    flat = (boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1])
    if (first := _first(flat)) is not None:
        expected = "boxes with x1 < x2 and y1 < y2 (a box without area has no IoU)"
        raise bad_value("boxes", expected, f"box {first} {boxes[first].tolist()}")
    return boxes, labels


__all__ = [
    "DETECTION_OUTPUTS",
    "DetectionMatch",
    "DetectionScore",
    "SegmentationScores",
    "box_region",
    "predicted_region",
]
