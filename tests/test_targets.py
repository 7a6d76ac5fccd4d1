"""Segmentation and detection targets against the naive float64 reference."""

from __future__ import annotations

import pytest
import torch
from captum.attr import LayerGradCam, LayerIntegratedGradients, NoiseTunnel
from reference import naive_integrated_grad_cam
from reference_targets import iou, naive_detection_score, naive_region_scores
from task_models import TinySegmenter, tiny_faster_rcnn, tiny_one_stage
from tolerances import assert_close_to

from captum_igcam import IntegratedLayerGradCam
from captum_igcam.targets import (
    DetectionScore,
    SegmentationScores,
    box_region,
    predicted_region,
)

METHODS = [
    "riemann_right",
    "riemann_left",
    "riemann_middle",
    "riemann_trapezoid",
    "gausslegendre",
]
STEPS = 4


# -- semantic segmentation ---------------------------------------------------


@pytest.fixture
def segmenter() -> TinySegmenter:
    return TinySegmenter().double().eval()


@pytest.fixture
def seg_case(segmenter):
    """Three images, each with its own class and region (two boxes, one mask)."""
    inputs = torch.rand(3, 3, 8, 8, dtype=torch.float64)
    scores = SegmentationScores(segmenter)
    region = box_region(
        torch.tensor([[0, 0, 5, 4], [2, 3, 8, 8], [0, 0, 8, 8]]), (8, 8)
    )
    region = region.double()
    region[2] = torch.rand(8, 8, dtype=torch.float64)  # a weighted region
    targets = [0, 2, 1]
    return scores, inputs, region, targets


def _reference(forward, layer, inputs, extra, targets, method, n_steps=STEPS, **kw):
    return naive_integrated_grad_cam(
        forward,
        layer,
        [inputs],
        [torch.zeros_like(inputs)],
        targets,
        method,
        n_steps,
        extra_args=extra,
        **kw,
    )


def test_region_scores_are_each_class_mean_over_the_region(seg_case, segmenter):
    scores, inputs, region, _ = seg_case
    naive = naive_region_scores(segmenter)
    expected = torch.cat(
        [naive(inputs[n : n + 1], region[n : n + 1]) for n in range(3)]
    )
    assert_close_to(scores(inputs, region), expected)


@pytest.mark.parametrize("method", METHODS)
def test_segmentation_matches_reference_in_batch_chunks_and_alone(
    seg_case, segmenter, method
):
    scores, inputs, region, targets = seg_case
    layer = segmenter.backbone[2]
    expected = _reference(
        naive_region_scores(segmenter), layer, inputs, (region,), targets, method
    )
    explainer = IntegratedLayerGradCam(scores, layer)
    options = dict(target=targets, additional_forward_args=(region,))
    batch = explainer.attribute(inputs, n_steps=STEPS, method=method, **options)
    chunks = explainer.attribute(
        inputs, n_steps=STEPS, method=method, internal_batch_size=5, **options
    )
    alone = torch.cat(
        [
            explainer.attribute(
                inputs[n : n + 1],
                target=targets[n],
                additional_forward_args=(region[n : n + 1],),
                n_steps=STEPS,
                method=method,
            )
            for n in range(3)
        ]
    )
    assert expected.abs().max() > 0
    for actual in (batch, chunks, alone):
        assert_close_to(actual, expected)


def test_segmentation_grad_cam_is_the_one_step_reference(seg_case, segmenter):
    scores, inputs, region, targets = seg_case
    layer = segmenter.backbone[2]
    expected = _reference(
        naive_region_scores(segmenter),
        layer,
        inputs,
        (region,),
        targets,
        "riemann_right",
        n_steps=1,
        per_step_relu=False,
    )
    actual = LayerGradCam(scores, layer).attribute(
        inputs, target=targets, additional_forward_args=(region,)
    )
    assert_close_to(actual, expected)


def test_layer_integrated_gradients_on_regions_is_complete_and_per_example(
    seg_case, segmenter
):
    scores, inputs, region, targets = seg_case
    explainer = LayerIntegratedGradients(scores, segmenter.backbone[2])
    attributions, delta = explainer.attribute(
        inputs,
        target=targets,
        additional_forward_args=(region,),
        n_steps=64,
        internal_batch_size=40,
        return_convergence_delta=True,
    )
    with torch.no_grad():
        gap = scores(inputs, region) - scores(torch.zeros_like(inputs), region)
    gap = gap[torch.arange(3), targets]
    assert (delta.abs() < 1e-2 * gap.abs().max()).all(), (delta, gap)
    alone = explainer.attribute(
        inputs[2:], target=targets[2], additional_forward_args=(region[2:],)
    )
    assert_close_to(
        alone,
        explainer.attribute(inputs, target=targets, additional_forward_args=(region,))[
            2:
        ],
    )


def test_noise_tunnel_keeps_each_example_with_its_region(seg_case, segmenter):
    scores, inputs, region, targets = seg_case
    explainer = IntegratedLayerGradCam(scores, segmenter.backbone[2])
    options = dict(target=targets, additional_forward_args=(region,), n_steps=STEPS)
    plain = explainer.attribute(inputs, **options)
    tunnel = NoiseTunnel(explainer).attribute(
        inputs, nt_samples=3, stdevs=0.0, nt_type="smoothgrad", **options
    )
    assert_close_to(tunnel, plain)


def test_predicted_region_is_the_argmax_at_the_input(segmenter):
    inputs = torch.rand(2, 3, 8, 8, dtype=torch.float64)
    scores = SegmentationScores(segmenter)
    with torch.no_grad():
        labels = segmenter(inputs)["out"].argmax(1)
    present = [int(labels[0, 0, 0]), int(labels[1, 4, 4])]
    region = predicted_region(scores, inputs, present)
    assert torch.equal(region, labels == torch.tensor(present).reshape(2, 1, 1))
    absent = [c for c in range(3) if not (labels == c).any()]
    if absent:
        with pytest.raises(
            ValueError,
            match="^target: expected a class the model assigns pixels to in every",
        ):
            predicted_region(scores, inputs, absent[0])


def test_box_region_covers_the_pixel_centres_inside():
    region = box_region(torch.tensor([[1.0, 0.0, 3.0, 2.0]]), (3, 4))
    assert region.int().tolist() == [[[0, 1, 1, 0], [0, 1, 1, 0], [0, 0, 0, 0]]]
    with pytest.raises(
        ValueError,
        match=r"^boxes: expected boxes covering a pixel centre .*, got box 0",
    ):
        box_region(torch.tensor([[1.0, 1.0, 1.2, 1.2]]), (3, 4))
    with pytest.raises(ValueError, match="boxes: expected N x 4"):
        box_region(torch.zeros(2, 3), (3, 4))


def test_bad_regions_and_outputs_are_named(segmenter):
    scores = SegmentationScores(segmenter)
    inputs = torch.rand(2, 3, 8, 8, dtype=torch.float64)
    with pytest.raises(
        ValueError, match=r"region: expected a mask of shape \(2, 8, 8\)"
    ):
        scores(inputs, torch.ones(2, 4, 4))
    empty = torch.ones(2, 8, 8)
    empty[1] = 0
    with pytest.raises(
        ValueError,
        match="^region: expected a pixel > 0 .*, got an empty region for example 1",
    ):
        scores(inputs, empty)
    for value in (-1.0, float("nan"), float("inf")):
        weights = torch.ones(2, 8, 8)
        weights[1, 2, 3] = value
        with pytest.raises(
            ValueError,
            match="^region: expected finite weights >= 0 in every example's "
            "region, got others for example 1",
        ):
            scores(inputs, weights)
    cancelling = torch.ones(2, 8, 8)
    cancelling[0, :4] = -1.0  # sums to zero
    with pytest.raises(ValueError, match="^region: expected finite weights >= 0"):
        scores(inputs, cancelling)
    flat = SegmentationScores(torch.nn.Flatten())
    with pytest.raises(ValueError, match="model: expected N x C x H x W logits"):
        flat(inputs, torch.ones(2, 8, 8))


# -- detection ---------------------------------------------------------------


@pytest.fixture
def detector() -> torch.nn.Module:
    return tiny_faster_rcnn().double().eval()


def _explained(detector, inputs, rank=(0, 3)):
    """Each image's detection of the given rank among those with an area."""
    with torch.no_grad():
        found = detector(list(inputs))
    boxes, labels = [], []
    for detection, r in zip(found, rank):
        b = detection["boxes"]
        index = torch.nonzero((b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1]))[r, 0]
        boxes.append(b[index])
        labels.append(detection["labels"][index])
    return torch.stack(boxes), torch.stack(labels)


@pytest.fixture
def det_case(detector):
    inputs = torch.rand(2, 3, 48, 48, dtype=torch.float64)
    boxes, labels = _explained(detector, inputs)
    return inputs, boxes, labels


@pytest.mark.parametrize("output", ["score", "score+iou"])
def test_detection_score_is_the_best_matching_detection(detector, det_case, output):
    inputs, boxes, labels = det_case
    target = DetectionScore(detector, output=output)
    naive = naive_detection_score(detector, 0.5, output)
    expected = torch.cat(
        [
            naive(inputs[n : n + 1], boxes[n : n + 1], labels[n : n + 1])
            for n in range(2)
        ]
    )
    assert_close_to(target(inputs, boxes, labels), expected)
    match = target.match(inputs, boxes, labels)
    assert match.matched.all() and (match.iou == 1).all()
    # A box of another label, or far from every detection, matches nothing.
    other = DetectionScore(detector, min_iou=0.99).match(
        inputs, boxes + torch.tensor([5.0, 5.0, 5.0, 5.0]).double(), labels
    )
    assert not other.matched.any() and (other.score == 0).all()


def test_the_path_starts_with_points_that_match_nothing(detector, det_case):
    inputs, boxes, labels = det_case
    target = DetectionScore(detector)
    near_baseline = target.match(0.05 * inputs, boxes, labels)
    at_input = target.match(inputs, boxes, labels)
    assert at_input.matched.all()
    assert not near_baseline.matched.all()


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("output", ["score", "score+iou"])
def test_detection_matches_reference_in_batch_chunks_and_alone(
    detector, det_case, method, output
):
    inputs, boxes, labels = det_case
    layer = detector.backbone[2]
    expected = _reference(
        naive_detection_score(detector, 0.5, output),
        layer,
        inputs,
        (boxes, labels),
        [None, None],
        method,
    )
    explainer = IntegratedLayerGradCam(DetectionScore(detector, output=output), layer)
    options = dict(additional_forward_args=(boxes, labels), n_steps=STEPS)
    batch = explainer.attribute(inputs, method=method, **options)
    chunks = explainer.attribute(
        inputs, method=method, internal_batch_size=3, **options
    )
    alone = torch.cat(
        [
            explainer.attribute(
                inputs[n : n + 1],
                additional_forward_args=(boxes[n : n + 1], labels[n : n + 1]),
                n_steps=STEPS,
                method=method,
            )
            for n in range(2)
        ]
    )
    assert expected.abs().max() > 0
    for actual in (batch, chunks, alone):
        assert_close_to(actual, expected)


@pytest.mark.parametrize("kind", ["retinanet", "fcos"])
def test_one_stage_detectors_match_reference(kind):
    detector = tiny_one_stage(kind).double().eval()
    inputs = torch.rand(2, 3, 48, 48, dtype=torch.float64)
    boxes, labels = _explained(detector, inputs, rank=(0, 1))
    layer = detector.backbone[0]
    expected = _reference(
        naive_detection_score(detector, 0.5, "score"),
        layer,
        inputs,
        (boxes, labels),
        [None, None],
        "gausslegendre",
    )
    explainer = IntegratedLayerGradCam(DetectionScore(detector), layer)
    actual = explainer.attribute(
        inputs,
        additional_forward_args=(boxes, labels),
        n_steps=STEPS,
        internal_batch_size=4,
    )
    assert expected.abs().max() > 0
    assert_close_to(actual, expected)


def test_detection_grad_cam_and_noise_tunnel(detector, det_case):
    inputs, boxes, labels = det_case
    layer = detector.backbone[2]
    target = DetectionScore(detector)
    expected = _reference(
        naive_detection_score(detector, 0.5, "score"),
        layer,
        inputs,
        (boxes, labels),
        [None, None],
        "riemann_right",
        n_steps=1,
        per_step_relu=False,
    )
    grad_cam = LayerGradCam(target, layer).attribute(
        inputs, additional_forward_args=(boxes, labels)
    )
    assert_close_to(grad_cam, expected)
    explainer = IntegratedLayerGradCam(target, layer)
    options = dict(additional_forward_args=(boxes, labels), n_steps=STEPS)
    tunnel = NoiseTunnel(explainer).attribute(
        inputs, nt_samples=2, stdevs=0.0, nt_type="smoothgrad", **options
    )
    assert_close_to(tunnel, explainer.attribute(inputs, **options))


def test_detection_layer_integrated_gradients_per_example(detector, det_case):
    inputs, boxes, labels = det_case
    explainer = LayerIntegratedGradients(DetectionScore(detector), detector.backbone[2])
    batch = explainer.attribute(
        inputs, additional_forward_args=(boxes, labels), n_steps=STEPS
    )
    alone = explainer.attribute(
        inputs[1:], additional_forward_args=(boxes[1:], labels[1:]), n_steps=STEPS
    )
    assert batch.abs().max() > 0
    assert_close_to(alone, batch[1:])


def test_detector_in_training_mode_is_refused_and_left_as_it_was(detector):
    detector.train()
    with pytest.raises(
        ValueError,
        match="^detector: expected a model in eval mode .*; call detector.eval",
    ):
        DetectionScore(detector)
    target = DetectionScore(detector.eval())
    detector.train()
    with pytest.raises(
        ValueError,
        match="^detector: expected a model in eval mode .*; call detector.eval",
    ):
        target(torch.rand(1, 3, 48, 48).double(), torch.zeros(1, 4), torch.zeros(1))
    assert detector.training


def test_bad_detection_arguments_are_named(detector, det_case):
    inputs, boxes, labels = det_case
    target = DetectionScore(detector)
    with pytest.raises(ValueError, match=r"boxes: expected a tensor of shape \(2, 4\)"):
        target(inputs, boxes[:1], labels)
    with pytest.raises(ValueError, match=r"labels: expected a tensor of shape \(2,\)"):
        target(inputs, boxes, labels[:, None])
    with pytest.raises(
        ValueError, match=r"output: expected one of \('score', 'score\+iou'\)"
    ):
        DetectionScore(detector, output="iou")
    for min_iou in (1.5, float("nan")):
        with pytest.raises(ValueError, match="^min_iou: expected a number in"):
            DetectionScore(detector, min_iou=min_iou)
    for min_iou in (None, "high", True):
        with pytest.raises(
            TypeError, match=r"^min_iou: expected a number in \[0, 1\], got "
        ):
            DetectionScore(detector, min_iou=min_iou)
    with pytest.raises(ValueError, match="inputs: expected images N x 3 x H x W"):
        target(inputs[0], boxes, labels)
    flat = boxes.clone()
    flat[1, 2] = flat[1, 0]
    with pytest.raises(
        ValueError,
        match=r"^boxes: expected boxes with x1 < x2 and y1 < y2 .*, got box 1",
    ):
        target(inputs, flat, labels)


def test_reference_iou_of_known_boxes():
    assert iou([0, 0, 2, 2], [1, 1, 3, 3]) == pytest.approx(1 / 7)
    assert iou([0, 0, 1, 1], [2, 2, 3, 3]) == 0.0
