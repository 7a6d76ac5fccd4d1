"""app.tasks: the class, region and box one photo's explanation is about."""

from __future__ import annotations

import pytest
import torch
from task_models import TinySegmenter

from captum_igcam.app.model_bundle import ModelBundle
from captum_igcam.app.task_settings import TaskTarget, parse_box
from captum_igcam.app.tasks import NothingToExplainError, prepare


class FixedLogits(torch.nn.Module):
    """A segmenter whose logits are given (the input only sets the batch)."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = logits
        self.conv = torch.nn.Conv2d(3, 3, 1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"out": self.logits.expand(len(x), -1, -1, -1) + 0 * self.conv(x)}


def _bundle(model: torch.nn.Module) -> ModelBundle:
    return ModelBundle(
        name="fixed", model=model.eval(), layer_name="conv", input_size=4,
        mean=(0.0,) * 3, std=(1.0,) * 3,
        categories=["__background__", "cat", "dog"], task="segmentation",
    )  # fmt: skip


def _logits(labels: list[list[int]]) -> torch.Tensor:
    return (
        torch.nn.functional.one_hot(torch.tensor(labels), 3)
        .permute(2, 0, 1)[None]
        .float()
    )


def test_top1_is_the_class_on_most_pixels_background_last():
    labels = [[0, 0, 0, 0], [0, 0, 0, 2], [0, 0, 1, 2], [0, 0, 0, 2]]
    bundle = _bundle(FixedLogits(_logits(labels)))
    prepared = prepare(bundle, torch.zeros(1, 3, 4, 4), (8, 8), None, TaskTarget())
    assert prepared.target == 2 and prepared.record["region_pixels"] == 3
    assert prepared.region.shape == (8, 8) and prepared.region.sum() == 3 * 4
    only_background = _bundle(FixedLogits(_logits([[0] * 4] * 4)))
    chosen = prepare(
        only_background, torch.zeros(1, 3, 4, 4), (4, 4), None, TaskTarget()
    )
    assert chosen.target == 0 and chosen.record["region_fraction"] == 1.0


def test_a_class_predicted_nowhere_is_nothing_to_explain():
    bundle = _bundle(FixedLogits(_logits([[0, 2, 2, 2]] * 4)))
    with pytest.raises(
        NothingToExplainError, match="class 1: the model assigns no pixel of example 0"
    ):
        prepare(bundle, torch.zeros(1, 3, 4, 4), (4, 4), 1, TaskTarget())


def test_a_box_region_is_scaled_from_photo_to_input_pixels():
    bundle = _bundle(TinySegmenter())
    prepared = prepare(
        bundle, torch.rand(1, 3, 4, 4), (40, 80), 1, TaskTarget(box="0,0,40,20")
    )
    # The photo's left half, top half -> 2 x 2 of the 4 x 4 input.
    assert prepared.record["region_pixels"] == 4
    with pytest.raises(ValueError, match="box: a segmentation region is a box"):
        prepare(bundle, torch.rand(1, 3, 4, 4), (40, 80), 1, TaskTarget(box="0"))


def test_parse_box():
    assert parse_box("2") == 2
    assert parse_box(" 1.5,2,3,4 ") == (1.5, 2.0, 3.0, 4.0)
    with pytest.raises(ValueError, match="box: expected a detection index"):
        parse_box("1,2,3")
