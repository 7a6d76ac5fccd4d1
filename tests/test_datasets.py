"""Data sources: a generated VOC-format fixture, a folder, stub-filtered composites."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from captum_igcam.app.models import IMAGENET_MEAN, IMAGENET_STD, ModelBundle
from captum_igcam.evaluation import datasets

VOC_OBJECT = """
  <object><name>{name}</name><difficult>{difficult}</difficult>
    <bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox>
  </object>"""


def write_voc_image(root: Path, stem: str, objects: list[tuple]) -> None:
    Image.new("RGB", (80, 60), (stem.__hash__() % 255, 10, 10)).save(
        root / "JPEGImages" / f"{stem}.jpg"
    )
    body = "".join(
        VOC_OBJECT.format(name=n, difficult=d, x0=a, y0=b, x1=c, y1=e)
        for n, d, a, b, c, e in objects
    )
    (root / "Annotations" / f"{stem}.xml").write_text(
        f"<annotation><filename>{stem}.jpg</filename>"
        f"<size><width>80</width><height>60</height><depth>3</depth></size>"
        f"{body}</annotation>"
    )


@pytest.fixture
def voc_root(tmp_path: Path) -> Path:
    (tmp_path / "JPEGImages").mkdir()
    (tmp_path / "Annotations").mkdir()
    write_voc_image(
        tmp_path,
        "000001",
        [
            ("cat", 0, 11, 21, 40, 60),
            ("person", 0, 1, 1, 5, 5),
            ("dog", 1, 50, 5, 80, 30),
        ],
    )
    write_voc_image(tmp_path, "000002", [("person", 0, 1, 1, 80, 60)])
    write_voc_image(
        tmp_path, "000003", [("cat", 0, 1, 1, 10, 10), ("cat", 1, 20, 20, 30, 30)]
    )
    return tmp_path


CLASS_MAP = {"cat": [281, 285], "dog": 151}


def test_voc_converts_boxes_and_skips_unmapped(voc_root: Path) -> None:
    dataset = datasets.load_dataset(
        f"voc:{voc_root}", bundle=None, n=10, class_map=CLASS_MAP
    )
    assert dataset.has_boxes and len(dataset) == 2  # 000002 has only a person
    first, third = list(dataset)
    assert first.name == "000001" and first.image.shape == (60, 80, 3)
    by_label = {a.label: a for a in first.annotations}
    assert set(by_label) == {"cat", "dog"}
    # VOC pixels are 1-based and inclusive: 11..40 -> half-open [10, 40).
    assert by_label["cat"].boxes.tolist() == [[10, 20, 40, 60]]
    assert by_label["cat"].classes == {281, 285}
    assert by_label["dog"].classes == {151}  # difficult objects count
    (cats,) = third.annotations
    assert cats.boxes.tolist() == [[0, 0, 10, 10], [19, 19, 30, 30]]


def test_voc_n_limits_images(voc_root: Path) -> None:
    dataset = datasets.load_dataset(f"voc:{voc_root}", None, n=1, class_map=CLASS_MAP)
    assert [sample.name for sample in dataset] == ["000001"]


def test_voc_errors(voc_root: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="^class_map:"):
        datasets.load_dataset(f"voc:{voc_root}", None, n=1)
    with pytest.raises(ValueError, match="^dataset: .* is not a VOC directory"):
        datasets.load_dataset(
            f"voc:{tmp_path / 'nowhere'}", None, 1, class_map=CLASS_MAP
        )
    (voc_root / "Annotations" / "000000.xml").write_text("<annotation><object>")
    with pytest.raises(ValueError, match="^dataset: cannot parse"):
        datasets.load_dataset(f"voc:{voc_root}", None, 1, class_map=CLASS_MAP)


def test_read_class_map(tmp_path: Path) -> None:
    path = tmp_path / "map.json"
    path.write_text(json.dumps({"cat": [285, 281], "dog": 151}))
    assert datasets.read_class_map(path) == {"cat": [281, 285], "dog": [151]}
    for bad in ('{"cat": "281"}', '{"cat": []}', "[1, 2]", "{}", "not json"):
        path.write_text(bad)
        with pytest.raises(ValueError, match="^class_map:"):
            datasets.read_class_map(path)


def test_folder_lists_images_only(tmp_path: Path) -> None:
    for stem, colour in (("b", (0, 0, 255)), ("a", (255, 0, 0)), ("c", (0, 255, 0))):
        Image.new("RGB", (6, 4), colour).save(tmp_path / f"{stem}.png")
    (tmp_path / "notes.txt").write_text("not an image")
    dataset = datasets.load_dataset(f"folder:{tmp_path}", None, n=2)
    samples = list(dataset)
    assert not dataset.has_boxes
    assert [s.name for s in samples] == ["a", "b"]
    assert samples[0].image[0, 0].tolist() == [255, 0, 0]
    assert samples[0].annotations == ()


def test_folder_and_spec_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="^dataset: no images"):
        datasets.load_dataset(f"folder:{tmp_path}", None, n=1)
    with pytest.raises(ValueError, match="^dataset: expected one of"):
        datasets.load_dataset("imagenet", None, n=1)
    with pytest.raises(ValueError, match="^n:"):
        datasets.load_dataset("composites", None, n=0)


class ConstantPrediction(torch.nn.Module):
    """Predicts the same class for every image."""

    def __init__(self, predicted: int) -> None:
        super().__init__()
        self.predicted = predicted

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        logits = torch.zeros(len(inputs), 1000)
        logits[:, self.predicted] = 1.0
        return logits


def stub_bundle(predicted: int) -> ModelBundle:
    return ModelBundle(
        name="stub",
        model=ConstantPrediction(predicted),
        layer_name="",
        input_size=32,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        categories=[str(i) for i in range(1000)],
    )


def test_composites_keep_only_recognised_objects_deterministically() -> None:
    bundle = stub_bundle(predicted=282)  # tiger cat: accepts cats only
    dataset = datasets.composites(bundle, n=3, seed=5)
    samples = list(dataset)
    assert len(samples) == 3
    assert all(s.annotations[0].label == "cat" for s in samples)
    assert dataset.notes[0].startswith("generated ") and "kept 3 " in dataset.notes[0]
    again = list(datasets.composites(bundle, n=3, seed=5))
    assert [s.name for s in again] == [s.name for s in samples]
    assert all(np.array_equal(a.image, b.image) for a, b in zip(again, samples))
    cat = datasets.COMPOSITE_OBJECTS[0].pixels()
    for sample in samples:
        assert sample.image.shape == (320, 320, 3) and sample.image.dtype == np.uint8
        ((x0, y0, x1, y1),) = sample.annotations[0].boxes.astype(int).tolist()
        assert 0 <= x0 < x1 <= 320 and 0 <= y0 < y1 <= 320
        low, high = datasets.COMPOSITE_SCALE
        assert low * 320 - 1 <= max(x1 - x0, y1 - y0) <= high * 320 + 1
        # The box holds the resized cat photo: compare mean colours.
        pasted = sample.image[y0:y1, x0:x1].reshape(-1, 3).mean(0)
        assert np.abs(pasted - cat.reshape(-1, 3).mean(0)).max() < 3


def test_composites_report_when_nothing_is_recognised() -> None:
    dataset = datasets.composites(stub_bundle(predicted=0), n=2, seed=0)
    assert len(dataset) == 0
    generated = datasets.COMPOSITE_MAX_ATTEMPTS_PER_SAMPLE * 2
    assert "kept 0 " in dataset.notes[0]
    assert int(dataset.notes[0].split()[1]) >= generated
