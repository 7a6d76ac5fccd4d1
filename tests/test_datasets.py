"""Data sources: a generated VOC-format fixture, a folder, stub-filtered composites."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

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
    dataset = datasets.load_dataset(f"voc:{voc_root}", n=10, class_map=CLASS_MAP)
    assert dataset.has_boxes and len(dataset) == 2  # 000002 has only a person
    first, third = list(dataset)
    assert first.name == "000001" and first.image.shape == (60, 80, 3)
    by_label = {a.label: a for a in first.annotations}
    assert set(by_label) == {"cat"}  # the only dog is difficult: left out
    # VOC pixels are 1-based and inclusive: 11..40 -> half-open [10, 40).
    assert by_label["cat"].boxes.tolist() == [[10, 20, 40, 60]]
    assert by_label["cat"].classes == {281, 285}
    (cats,) = third.annotations
    assert cats.boxes.tolist() == [[0, 0, 10, 10]]  # its difficult cat is left out


def test_voc_n_limits_images(voc_root: Path) -> None:
    dataset = datasets.load_dataset(f"voc:{voc_root}", n=1, class_map=CLASS_MAP)
    assert [sample.name for sample in dataset] == ["000001"]


def test_voc_errors(voc_root: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="^class_map:"):
        datasets.load_dataset(f"voc:{voc_root}", n=1)
    with pytest.raises(ValueError, match="^dataset: .* is not a VOC directory"):
        datasets.load_dataset(f"voc:{tmp_path / 'nowhere'}", 1, class_map=CLASS_MAP)
    (voc_root / "Annotations" / "000000.xml").write_text("<annotation><object>")
    with pytest.raises(ValueError, match="^dataset: cannot parse"):
        datasets.load_dataset(f"voc:{voc_root}", 1, class_map=CLASS_MAP)


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
    dataset = datasets.load_dataset(f"folder:{tmp_path}", n=2)
    samples = list(dataset)
    assert not dataset.has_boxes
    assert [s.name for s in samples] == ["a", "b"]
    assert samples[0].image[0, 0].tolist() == [255, 0, 0]
    assert samples[0].annotations == ()


def test_folder_and_spec_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="^dataset: no images"):
        datasets.load_dataset(f"folder:{tmp_path}", n=1)
    with pytest.raises(ValueError, match="^dataset: expected one of"):
        datasets.load_dataset("imagenet", n=1)
    with pytest.raises(ValueError, match="^dataset: expected one of"):
        datasets.load_dataset("imagenet-loc", n=1)  # no PATH
    with pytest.raises(ValueError, match="^n:"):
        datasets.load_dataset("composites", n=0)


def test_composites_take_the_four_objects_in_turn_deterministically() -> None:
    dataset = datasets.composites(n=6, seed=5)
    samples = list(dataset)
    labels = [s.annotations[0].label for s in samples]
    assert labels == ["cat", "cup", "rocket", "motorcycle", "cat", "cup"]
    assert dataset.notes[0].startswith("6 composites (seed 5)")
    again = list(datasets.load_dataset("composites", n=6, seed=5))
    assert [s.name for s in again] == [s.name for s in samples]
    assert all(np.array_equal(a.image, b.image) for a, b in zip(again, samples))
    other = list(datasets.composites(n=6, seed=6))
    assert not all(np.array_equal(a.image, b.image) for a, b in zip(other, samples))
    low, high = datasets.COMPOSITE_SCALE
    for sample, spec in zip(samples, datasets.COMPOSITE_OBJECTS * 2):
        assert sample.image.shape == (320, 320, 3) and sample.image.dtype == np.uint8
        ((x0, y0, x1, y1),) = sample.annotations[0].boxes.astype(int).tolist()
        assert 0 <= x0 < x1 <= 320 and 0 <= y0 < y1 <= 320
        assert low * 320 - 1 <= max(x1 - x0, y1 - y0) <= high * 320 + 1
        # The box holds the resized object photo: compare mean colours.
        photo = spec.pixels().reshape(-1, 3).mean(0)
        pasted = sample.image[y0:y1, x0:x1].reshape(-1, 3).mean(0)
        assert np.abs(pasted - photo).max() < 4


def test_voc_boxes_are_clipped_to_the_image_or_left_out_and_named(
    voc_root: Path,
) -> None:
    write_voc_image(
        voc_root,
        "000004",
        [
            ("cat", 0, 61, 41, 100, 90),  # reaches past the 80x60 image: clipped
            ("cat", 0, 85, 5, 120, 30),  # wholly right of the image
            ("dog", 0, 30, 10, 29, 20),  # xmax before xmin: no area
        ],
    )
    # Only a box without ymax: the image has nothing usable left.
    (voc_root / "JPEGImages" / "000005.jpg").write_bytes(
        (voc_root / "JPEGImages" / "000001.jpg").read_bytes()
    )
    (voc_root / "Annotations" / "000005.xml").write_text(
        "<annotation><filename>000005.jpg</filename><object><name>cat</name>"
        "<bndbox><xmin>1</xmin><ymin>1</ymin><xmax>9</xmax></bndbox>"
        "</object></annotation>"
    )
    dataset = datasets.load_dataset(f"voc:{voc_root}", n=10, class_map=CLASS_MAP)
    samples = {sample.name: sample for sample in dataset}
    assert set(samples) == {"000001", "000003", "000004"}
    (cats,) = samples["000004"].annotations
    assert cats.boxes.tolist() == [[60, 40, 80, 60]]
    assert len(dataset.skipped) == 3
    outside, no_area, missing = dataset.skipped
    assert "000004.xml'" in outside and "object 2 (cat)" in outside
    assert "no area inside the 80x60 image" in outside
    assert "000004.xml'" in no_area and "object 3 (dog)" in no_area
    assert "000005.xml'" in missing and "missing or non-finite ymax" in missing
    assert "1 boxes reaching outside their image clipped" in dataset.notes
    assert any(
        note.startswith("3 annotated objects left out") for note in dataset.notes
    )


def test_voc_corner_that_is_not_a_number_names_file_and_object(voc_root: Path) -> None:
    (voc_root / "Annotations" / "000001.xml").write_text(
        "<annotation><object><name>cat</name><bndbox><xmin>1</xmin><ymin>1</ymin>"
        "<xmax>abc</xmax><ymax>9</ymax></bndbox></object></annotation>"
    )
    with pytest.raises(ValueError) as raised:
        datasets.load_dataset(f"voc:{voc_root}", n=10, class_map=CLASS_MAP)
    message = str(raised.value)
    assert "000001.xml', object 1: expected a number for a box corner" in message
    assert "'abc'" in message


@pytest.mark.parametrize("value", ["true", "281.0", "-1", "[281, 2.5]", '{"a": 1}'])
def test_class_map_values_must_be_integer_indices(tmp_path: Path, value: str) -> None:
    path = tmp_path / "map.json"
    path.write_text(f'{{"cat": 281, "dog": {value}}}')
    with pytest.raises(ValueError) as raised:
        datasets.read_class_map(path)
    assert str(raised.value).startswith(f"class_map: {str(path)!r}, key 'dog': ")
    with pytest.raises(ValueError, match="^class_map: key 'dog': "):
        datasets.check_class_map(json.loads(f'{{"dog": {value}}}'))


def test_class_map_file_with_byte_order_mark_is_read(tmp_path: Path) -> None:
    path = tmp_path / "map.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps({"cat": 7}).encode())
    assert datasets.read_class_map(path) == {"cat": [7]}
