"""The ImageNet CLS-LOC source on generated fixtures in both distributed layouts.

The fixtures follow the files as ImageNet ships them: validation images
``ILSVRC2012_val_XXXXXXXX.JPEG``; either the per-image bounding-box files
``ILSVRC2012_val_XXXXXXXX.xml`` (PASCAL VOC format, as in
``ILSVRC2012_bbox_val_v3.tgz``), or Kaggle's ``LOC_val_solution.csv``
(``ImageId,PredictionString`` with ``synset xmin ymin xmax ymax`` groups) with
``LOC_synset_mapping.txt`` (``n01440764 tench, Tinca tinca``, one synset per
line in class-index order).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from captum_igcam.evaluation import datasets

# 1000 made-up synset ids in sorted order; index i is class i.
SYNSETS = [f"n{1440764 + 7 * index:08d}" for index in range(1000)]
# image id -> (width, height, [(synset index, xmin, ymin, xmax, ymax, difficult)])
IMAGES = {
    "ILSVRC2012_val_00000001": (50, 40, [(65, 5, 6, 30, 20, 0)]),
    "ILSVRC2012_val_00000002": (
        60,
        30,
        [(970, 1, 1, 10, 10, 0), (970, 20, 5, 60, 30, 0)],
    ),
    "ILSVRC2012_val_00000003": (
        40,
        40,
        [(230, 3, 3, 9, 9, 1), (230, 11, 11, 40, 40, 0)],
    ),
    "ILSVRC2012_val_00000004": (40, 40, [(0, 1, 1, 5, 5, 1)]),  # only difficult
}
XML_OBJECT = (
    "<object><name>{name}</name><pose>Unspecified</pose><truncated>0</truncated>"
    "<difficult>{difficult}</difficult><bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin>"
    "<xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>"
)


def write_images(root: Path, subfolder: str = "val") -> None:
    folder = root / subfolder
    folder.mkdir(parents=True)
    for number, (stem, (width, height, _)) in enumerate(IMAGES.items()):
        Image.new("RGB", (width, height), (number * 40, 0, 0)).save(
            folder / f"{stem}.JPEG", format="JPEG"
        )
    (folder / "README.txt").write_text("not an image")


def write_xml(root: Path, synsets: list[str] = SYNSETS) -> None:
    folder = root / "bbox" / "val"
    folder.mkdir(parents=True)
    for stem, (width, height, objects) in IMAGES.items():
        body = "".join(
            XML_OBJECT.format(
                name=synsets[index], difficult=d, x0=x0, y0=y0, x1=x1, y1=y1
            )
            for index, x0, y0, x1, y1, d in objects
        )
        (folder / f"{stem}.xml").write_text(
            f"<annotation><folder>val</folder><filename>{stem}</filename>"
            f"<source><database>ILSVRC_2012</database></source><size>"
            f"<width>{width}</width><height>{height}</height><depth>3</depth>"
            f"</size><segmented>0</segmented>{body}</annotation>"
        )


def write_mapping(root: Path) -> None:
    (root / "LOC_synset_mapping.txt").write_text(
        "".join(
            f"{synset} class number {i}, a name\n" for i, synset in enumerate(SYNSETS)
        )
    )


def write_solution(root: Path) -> None:
    # Kaggle's file has no difficult flag; rows come in arbitrary order.
    rows = ["ImageId,PredictionString"]
    for stem, (_, _, objects) in reversed(IMAGES.items()):
        groups = " ".join(
            f"{SYNSETS[index]} {x0} {y0} {x1} {y1}"
            for index, x0, y0, x1, y1, _ in objects
        )
        rows.append(f"{stem},{groups} ")
    (root / "LOC_val_solution.csv").write_text("\n".join(rows) + "\n")


def check_common(dataset: datasets.Dataset) -> list[datasets.Sample]:
    samples = list(dataset)
    assert dataset.has_boxes
    assert samples[0].name == "ILSVRC2012_val_00000001"
    assert samples[0].image.shape == (40, 50, 3)
    (first,) = samples[0].annotations
    assert first.label == SYNSETS[65] and first.classes == {65}
    # 1-based inclusive corners 5..30 -> half-open 0-based [4, 30).
    assert first.boxes.tolist() == [[4, 5, 30, 20]]
    (second,) = samples[1].annotations
    assert second.classes == {970}
    assert second.boxes.tolist() == [[0, 0, 10, 10], [19, 4, 60, 30]]
    return samples


def test_xml_layout_with_synset_mapping(tmp_path: Path) -> None:
    write_images(tmp_path)
    write_xml(tmp_path)
    write_mapping(tmp_path)
    dataset = datasets.load_dataset(f"imagenet-loc:{tmp_path}", n=10)
    samples = check_common(dataset)
    # Difficult objects are left out; an image with only difficult ones too.
    assert len(samples) == 3
    (third,) = samples[2].annotations
    assert third.classes == {230} and third.boxes.tolist() == [[10, 10, 40, 40]]
    assert (
        "bounding-box XML" in dataset.notes[0] and "4 images found" in dataset.notes[0]
    )


def test_csv_layout(tmp_path: Path) -> None:
    write_images(tmp_path, subfolder="ILSVRC/Data/CLS-LOC/val")
    write_mapping(tmp_path)
    write_solution(tmp_path)
    dataset = datasets.load_dataset(f"imagenet-loc:{tmp_path}", n=10)
    samples = check_common(dataset)
    assert len(samples) == 4  # the CSV has no difficult flag
    assert samples[2].annotations[0].boxes.tolist() == [[2, 2, 9, 9], [10, 10, 40, 40]]
    assert "LOC_val_solution.csv" in dataset.notes[0]
    assert [s.name for s in datasets.load_dataset(f"imagenet-loc:{tmp_path}", n=2)] == [
        "ILSVRC2012_val_00000001",
        "ILSVRC2012_val_00000002",
    ]


def test_xml_without_mapping_needs_all_1000_synsets(tmp_path: Path) -> None:
    write_images(tmp_path)
    write_xml(tmp_path)
    with pytest.raises(ValueError, match="name 4 synsets, not all 1000"):
        datasets.load_dataset(f"imagenet-loc:{tmp_path}", n=10)
    # With every synset named somewhere, their sorted order is the index order.
    extra = tmp_path / "bbox" / "val" / "ILSVRC2012_val_00000099.xml"
    extra.write_text(
        "<annotation>"
        + "".join(
            XML_OBJECT.format(name=s, difficult=1, x0=1, y0=1, x1=2, y1=2)
            for s in reversed(SYNSETS)
        )
        + "</annotation>"
    )
    check_common(datasets.load_dataset(f"imagenet-loc:{tmp_path}", n=10))


def test_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no ILSVRC2012_val_XXXXXXXX.JPEG images"):
        datasets.load_dataset(f"imagenet-loc:{tmp_path}", n=1)
    write_images(tmp_path)
    with pytest.raises(ValueError, match="neither LOC_val_solution.csv nor"):
        datasets.load_dataset(f"imagenet-loc:{tmp_path}", n=1)
    write_solution(tmp_path)
    with pytest.raises(ValueError, match="needs LOC_synset_mapping.txt"):
        datasets.load_dataset(f"imagenet-loc:{tmp_path}", n=1)
    (tmp_path / "LOC_synset_mapping.txt").write_text("n01440764 tench\nnot a synset\n")
    with pytest.raises(ValueError, match="line 2: expected 'nXXXXXXXX class name'"):
        datasets.load_dataset(f"imagenet-loc:{tmp_path}", n=1)
    (tmp_path / "LOC_synset_mapping.txt").write_text("n01440764 tench\n")
    with pytest.raises(ValueError, match="lists 1 synsets, expected 1000"):
        datasets.load_dataset(f"imagenet-loc:{tmp_path}", n=1)
    write_mapping(tmp_path)
    (tmp_path / "LOC_val_solution.csv").write_text(
        "ImageId,PredictionString\nILSVRC2012_val_00000001,n01440764 1 2 3\n"
    )
    with pytest.raises(ValueError, match="groups of 'synset xmin ymin xmax ymax'"):
        datasets.load_dataset(f"imagenet-loc:{tmp_path}", n=1)
    (tmp_path / "LOC_val_solution.csv").write_text(
        "ImageId,PredictionString\nILSVRC2012_val_00000001,n99999999 1 2 3 4\n"
    )
    with pytest.raises(ValueError, match="'n99999999' is not in LOC_synset_mapping"):
        datasets.load_dataset(f"imagenet-loc:{tmp_path}", n=1)


def test_benchmark_reports_top1_accuracy_on_imagenet_fixture(tmp_path: Path) -> None:
    """The loop marks an image correct when the prediction is its class."""
    import torch

    from captum_igcam import evaluation
    from captum_igcam.app.models import IMAGENET_MEAN, IMAGENET_STD, ModelBundle

    write_images(tmp_path)
    write_mapping(tmp_path)
    write_solution(tmp_path)

    class RednessClassifier(torch.nn.Module):
        """Predicts class 65 for dark images and 970 for the others."""

        def __init__(self) -> None:
            super().__init__()
            self.features = torch.nn.Conv2d(3, 2, 3, padding=1)

        def forward(self, inputs: torch.Tensor) -> torch.Tensor:
            red = self.features(inputs).mean(dim=(1, 2, 3))
            logits = torch.zeros(len(inputs), 1000)
            dark = inputs[:, 0].mean(dim=(1, 2)) < -1.5
            logits[:, 65] = torch.where(dark, 1.0, 0.0) + 0 * red
            logits[:, 970] = torch.where(dark, 0.0, 1.0) + 0 * red
            return logits

    bundle = ModelBundle(
        "redness",
        RednessClassifier().eval(),
        "features",
        16,
        IMAGENET_MEAN,
        IMAGENET_STD,
        [str(i) for i in range(1000)],
    )
    dataset = datasets.load_dataset(f"imagenet-loc:{tmp_path}", n=10)
    result = evaluation.evaluate(
        bundle, dataset, ["gradcam"], curve_steps=2, batch_size=3, progress=False
    )
    # Images 1 (black: class 65, right) and 2 (red 40: class 970, right);
    # 3 and 4 (class 230 and 0) are wrong.
    assert result.top1_correct == [True, True, False, False]
    accuracy = evaluation.top1_accuracy(result)
    assert accuracy.mean == pytest.approx(0.5)
    assert np.isfinite(accuracy.low) and accuracy.low < 0.5 < accuracy.high


def solution_layout(root: Path, rows: list[str]) -> Path:
    write_images(root)
    write_mapping(root)
    path = root / "LOC_val_solution.csv"
    path.write_text("\n".join(["ImageId,PredictionString", *rows]) + "\n")
    return path


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (
            f"ILSVRC2012_val_00000001,{SYNSETS[65]} 5 abc 30 20",
            "line 2 (ILSVRC2012_val_00000001): expected numbers for "
            "'synset xmin ymin xmax ymax'",
        ),
        ("ILSVRC2012_val_00000001", "line 2: expected 2 fields"),
        (
            f"ILSVRC2012_val_00000001,{SYNSETS[65]} 5 6 30 20,extra",
            "line 2: expected 2 fields",
        ),
    ],
)
def test_solution_rows_that_cannot_be_read_name_file_and_line(
    tmp_path: Path, row: str, message: str
) -> None:
    path = solution_layout(tmp_path, [row])
    with pytest.raises(ValueError) as raised:
        datasets.load_dataset(f"imagenet-loc:{tmp_path}", n=10)
    assert str(raised.value).startswith(f"dataset: {str(path)!r} {message}")


def test_solution_with_byte_order_mark_is_read(tmp_path: Path) -> None:
    write_images(tmp_path)
    write_mapping(tmp_path)
    write_solution(tmp_path)
    path = tmp_path / "LOC_val_solution.csv"
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    check_common(datasets.load_dataset(f"imagenet-loc:{tmp_path}", n=10))


def test_solution_boxes_are_clipped_or_left_out(tmp_path: Path) -> None:
    # Image 1 is 50x40, image 2 60x30: one box reaches out, one lies outside,
    # one has no area, one is "nan".
    solution_layout(
        tmp_path,
        [
            f"ILSVRC2012_val_00000001,{SYNSETS[65]} 5 6 90 20",
            f"ILSVRC2012_val_00000002,{SYNSETS[970]} 70 1 90 10 {SYNSETS[970]} 5 5 4 9",
            f"ILSVRC2012_val_00000003,{SYNSETS[230]} 1 1 nan 9",
        ],
    )
    dataset = datasets.load_dataset(f"imagenet-loc:{tmp_path}", n=10)
    (sample,) = list(dataset)
    assert sample.name == "ILSVRC2012_val_00000001"
    assert sample.annotations[0].boxes.tolist() == [[4, 5, 50, 20]]
    assert len(dataset.skipped) == 3
    assert "line 3 (ILSVRC2012_val_00000002), object 1" in dataset.skipped[0]
    assert "no area inside the 60x30 image" in dataset.skipped[0]
    assert "line 3 (ILSVRC2012_val_00000002), object 2" in dataset.skipped[1]
    assert "line 4 (ILSVRC2012_val_00000003), object 1" in dataset.skipped[2]
    assert "missing or non-finite xmax" in dataset.skipped[2]


def test_solution_rows_of_one_image_add_up(tmp_path: Path) -> None:
    # Two rows for image 2, the second with another class and a second box of
    # the first: every box of both rows is kept, by class.
    solution_layout(
        tmp_path,
        [
            f"ILSVRC2012_val_00000002,{SYNSETS[970]} 1 1 10 10",
            f"ILSVRC2012_val_00000002,{SYNSETS[971]} 5 5 9 9 {SYNSETS[970]} 20 5 60 30",
        ],
    )
    (sample,) = list(datasets.load_dataset(f"imagenet-loc:{tmp_path}", n=10))
    boxes = {a.label: a.boxes.tolist() for a in sample.annotations}
    assert boxes == {
        SYNSETS[970]: [[0, 0, 10, 10], [19, 4, 60, 30]],
        SYNSETS[971]: [[4, 4, 9, 9]],
    }


def test_samples_carry_the_digest_of_their_file(tmp_path: Path) -> None:
    write_images(tmp_path)
    write_mapping(tmp_path)
    write_solution(tmp_path)
    samples = list(datasets.load_dataset(f"imagenet-loc:{tmp_path}", n=2))
    for sample in samples:
        path = tmp_path / "val" / f"{sample.name}.JPEG"
        assert sample.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert samples[0].sha256 != samples[1].sha256
