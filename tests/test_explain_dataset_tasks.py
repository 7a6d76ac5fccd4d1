"""``captum-igcam explain-dataset --task segmentation|detection`` end to end.

The tiny segmenter and detector of ``task_models`` explain three photos; the
stored maps and records are compared with what ``captum-igcam explain``
writes for the same photos, and with the plugin's public API.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from report_data import read_report_data
from skimage import data
from task_models import segmenter_bundle

from captum_igcam import IntegratedLayerGradCam
from captum_igcam.cli import main
from captum_igcam.dataset_job import index as io
from captum_igcam.dataset_job.maps_io import open_maps
from captum_igcam.targets import SegmentationScores, box_region

SEGMENTER = "task_models:segmenter_bundle"
DETECTOR = "task_models:detector_bundle"
STEPS = 3
#: The photos, of three sizes; on chelsea alone the tiny detector finds a
#: "bird" (label 3).
PHOTOS = {
    "chelsea.png": data.chelsea(),  # 300 x 451
    "astronaut.png": data.astronaut()[:200, :300],
    "black.png": np.zeros((30, 40, 3), np.uint8),
}


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("photos")
    for name, pixels in PHOTOS.items():
        Image.fromarray(pixels).save(folder / name)
    return folder


def _write_same_size(path: Path, pixels: np.ndarray) -> None:
    """Save ``pixels`` as an uncompressed PNG: the same size for the same shape."""
    Image.fromarray(pixels).save(path, compress_level=0)


def _dataset(source: Path, out: Path, *options: str) -> int:
    return main(
        [
            "explain-dataset", str(source), "--out", str(out), "--steps", str(STEPS),
            "--workers", "0", "--images-per-batch", "2", "--shard-size", "2",
            "--no-progress", *options,
        ]
    )  # fmt: skip


def _explain(source: Path, out: Path, method: str, *options: str) -> dict:
    """``captum-igcam explain`` on the photos: name -> (record, layer map)."""
    paths = [str(source / name) for name in PHOTOS]
    argv = ["explain", *paths, "--out", str(out), "--methods", method]
    assert main([*argv, "--steps", str(STEPS), *options]) == 0
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    results = {}
    for record in summary["images"]:
        layer_map = np.load(out / f"{record['name']}_{method}_layer.npy")
        explained = {
            key: value
            for key, value in record.items()
            if key not in ("image", "name", "files")
        }
        results[Path(record["image"]).name] = (explained, layer_map)
    return results


def _assert_same_map(stored: torch.Tensor, expected: torch.Tensor) -> float:
    """Equal up to float32 rounding; returns the largest absolute value."""
    scale = float(expected.abs().max())
    torch.testing.assert_close(stored, expected, rtol=1e-5, atol=1e-6 * scale)
    return scale


def _assert_same_as_explain(out: Path, explained: dict) -> None:
    maps = open_maps(out)
    assert sorted(maps) == sorted(PHOTOS)
    for key, (record, layer_map) in explained.items():
        stored = maps.record(key)
        expected = dict(record)
        assert stored.file_sha256 == expected.pop("sha256")  # the same photo
        assert stored.explained == expected
        assert stored.target == record["target_index"]
        assert stored.predicted is None and stored.probability is None
        scale = _assert_same_map(maps[key], torch.from_numpy(layer_map)[None])
        assert scale > 0 or key == "black.png"  # black: the baseline itself


@pytest.mark.parametrize(
    "model, options, path",
    [
        (SEGMENTER, [], "input"),
        (SEGMENTER, ["--target", "dog", "--box", "10,5,30,25"], "input"),
        (DETECTOR, ["--box", "1", "--detection-output", "score+iou"], "input"),
        (DETECTOR, ["--target", "cat", "--min-iou", "0.3"], "input"),
    ],
)
def test_maps_and_records_equal_those_of_explain(
    photos: Path, tmp_path: Path, model: str, options: list[str], path: str
) -> None:
    out = tmp_path / "maps"
    assert _dataset(photos, out, "--model", model, "--path", path, *options) == 0
    method = {"input": "igcam", "layer": "igcam-layer"}[path]
    explained = _explain(
        photos, tmp_path / "explain", method, "--model", model, *options
    )
    _assert_same_as_explain(out, explained)
    stored = open_maps(out).settings
    assert stored["task"] == ("segmentation" if model == SEGMENTER else "detection")
    given = dict(zip(options[::2], options[1::2]))
    assert stored["task_target"]["box"] == given.get("--box")


def test_segmentation_box_region_equals_the_public_api(
    photos: Path, tmp_path: Path
) -> None:
    out = tmp_path / "maps"
    box = (10.0, 5.0, 30.0, 25.0)  # photo pixels
    assert _dataset(
        photos, out, "--model", SEGMENTER, "--target", "dog",
        "--box", ",".join(map(str, box)),
    ) == 0  # fmt: skip
    maps = open_maps(out)
    bundle = segmenter_bundle()
    scores = SegmentationScores(bundle.model)
    explainer = IntegratedLayerGradCam(scores, bundle.model.backbone[2])
    for key, pixels in PHOTOS.items():
        inputs = bundle.preprocess(pixels).unsqueeze(0)  # 48 x 48
        height, width = pixels.shape[:2]
        scale = torch.tensor([48 / width, 48 / height] * 2)
        region = box_region(torch.tensor([box]) * scale, (48, 48))
        direct = explainer.attribute(
            inputs,
            target=2,  # dog
            additional_forward_args=(region,),
            baselines=torch.zeros_like(inputs),  # black, with mean 0 and std 1
            n_steps=STEPS,
        )
        scale = _assert_same_map(maps[key], direct[0])
        assert scale > 0 or key == "black.png"
        record = maps.record(key)
        assert (record.target, record.requested) == (2, 2)
        assert record.explained["region_pixels"] == int(region.sum())
        assert record.explained["box"] == list(box)


def test_nothing_to_explain_is_recorded_and_not_tried_again(
    photos: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    source = tmp_path / "photos"
    source.mkdir()
    for name in PHOTOS:
        (source / name).write_bytes((photos / name).read_bytes())
    _write_same_size(source / "black.png", PHOTOS["black.png"])
    out = tmp_path / "maps"
    arguments = ("--model", DETECTOR, "--target", "bird")
    assert _dataset(source, out, *arguments) == 0
    captured = capsys.readouterr()
    maps = open_maps(out)
    assert list(maps) == ["chelsea.png"]
    assert maps.record("chelsea.png").explained["target_label"] == "bird"
    assert sorted(maps.unexplained) == ["astronaut.png", "black.png"]
    for key in maps.unexplained:
        assert "0 detection(s) of class bird" in maps.unexplained[key]
        assert captured.err.count(f"{key}: nothing to explain") == 1
    assert "2 with nothing to explain" in captured.out
    with pytest.raises(KeyError, match="nothing to explain"):
        maps["black.png"]
    shards = sorted((out / io.SHARD_FOLDER).iterdir())

    # A re-run explains nothing again, and writes no shard.
    assert _dataset(source, out, *arguments) == 0
    captured = capsys.readouterr()
    assert "explained 0 image(s)" in captured.out and "skipped 3" in captured.out
    assert "nothing to explain" not in captured.err
    assert sorted((out / io.SHARD_FOLDER).iterdir()) == shards

    # A file touched but not changed is still skipped: its bytes are the same.
    status = os.stat(source / "black.png")
    os.utime(source / "black.png", ns=(status.st_atime_ns, status.st_mtime_ns + 10**9))
    assert _dataset(source, out, *arguments) == 0
    assert "skipped 3" in capsys.readouterr().out

    # A file whose bytes changed is tried again, even with its old size and
    # time; the others are still skipped.
    status = os.stat(source / "black.png")
    bytes_before = (source / "black.png").read_bytes()
    _write_same_size(source / "black.png", np.full((30, 40, 3), 1, np.uint8))
    os.utime(source / "black.png", ns=(status.st_atime_ns, status.st_mtime_ns))
    assert (source / "black.png").read_bytes() != bytes_before
    assert os.stat(source / "black.png").st_size == status.st_size
    assert _dataset(source, out, *arguments) == 0
    captured = capsys.readouterr()
    assert "skipped 2" in captured.out
    assert captured.err.count("nothing to explain") == 1
    assert "black.png: nothing to explain" in captured.err
    assert sorted(open_maps(out).unexplained) == ["astronaut.png", "black.png"]

    # Another class asked for is refused (the index records --target).
    assert _dataset(source, out, "--model", DETECTOR, "--target", "cat") == 1
    assert "(target: 'bird' there, 'cat' now)" in capsys.readouterr().err


@pytest.mark.parametrize(
    "options, status, message",
    [
        (
            ["--model", SEGMENTER, "--box", "0"],
            2,
            "box: a segmentation region is a box",
        ),
        (
            ["--random-weights", "--model", "resnet18", "--box", "1"],
            2,
            "argument --box: a region or box is for a segmentation model or a "
            "detector; the model is a classifier",
        ),
        (["--model", DETECTOR, "--box", "3,3,1,1"], 2, "--box: expected x1 < x2"),
        (
            ["--model", SEGMENTER, "--path", "layer"],
            1,
            "--path layer is for classifiers",
        ),
    ],
)
def test_task_options_that_do_not_fit_are_refused_before_any_write(
    photos: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
    options: list[str],
    status: int,
    message: str,
) -> None:
    """Invalid option values exit 2 (argparse's usage error), a value that
    does not fit the loaded model exits 1; neither writes an index."""
    out = tmp_path / "maps"
    try:
        code = _dataset(photos, out, *options)
    except SystemExit as exit_:
        code = exit_.code
    assert code == status
    assert message in capsys.readouterr().err
    assert not list(out.glob("index*.json"))


def test_a_hand_edited_task_record_names_the_field(
    photos: Path, tmp_path: Path
) -> None:
    out = tmp_path / "maps"
    assert _dataset(photos, out, "--model", SEGMENTER) == 0
    path = out / io.MERGED_INDEX_NAME
    index = json.loads(path.read_text(encoding="utf-8"))
    index["images"]["black.png"]["explained"]["target_index"] = 0
    path.write_text(json.dumps(index), encoding="utf-8")
    with pytest.raises(
        io.IndexFormatError, match=r"images\['black.png'\].explained.target_index"
    ):
        open_maps(out)


def test_a_box_that_fits_one_photo_but_not_another_is_nothing_to_explain(
    photos: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """The box lies inside chelsea (451 x 300) and outside black (40 x 30)."""
    out = tmp_path / "maps"
    arguments = ("--model", SEGMENTER, "--target", "dog", "--box", "100,50,200,150")
    assert _dataset(photos, out, *arguments) == 0
    captured = capsys.readouterr()
    maps = open_maps(out)
    assert sorted(maps) == ["astronaut.png", "chelsea.png"]
    assert list(maps.unexplained) == ["black.png"]
    assert "outside this photo" in maps.unexplained["black.png"]
    assert captured.err.count("black.png: nothing to explain") == 1
    assert "1 with nothing to explain" in captured.out
    # A re-run does not stop at it, nor try it again.
    assert _dataset(photos, out, *arguments) == 0
    captured = capsys.readouterr()
    assert "skipped 3" in captured.out and "nothing to explain" not in captured.err


def test_report_of_a_segmentation_folder_shows_each_explained_class(
    photos: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "maps"
    assert _dataset(photos, out, "--model", SEGMENTER) == 0
    capsys.readouterr()
    assert main(["report", str(out)]) == 0
    captured = capsys.readouterr()
    # A first line at once, before the progress bar, then one step per image.
    assert captured.err.startswith("captum-igcam report: reading")
    assert "3/3" in captured.err
    data = read_report_data(out / "report")
    column = {name: i for i, name in enumerate(data["columns"])}
    maps = open_maps(out)
    assert data["methods"] == ["Integrated Grad-CAM"]
    for row in data["rows"]:
        record = maps.record(row[column["key"]])
        assert row[column["predicted"]] is None
        assert row[column["probability"]] is None
        assert row[column["target"]] == record.target
        assert data["classes"][str(record.target)] == record.explained["target_label"]
        assert row[column["source"]] == "same"
        assert (out / "report" / row[column["overlays"]][0]).is_file()


def test_progress_shows_a_first_line_at_once_and_each_image(
    photos: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The bar is on the screen before the first image is explained, and it
    advances image by image."""
    from task_models import TinySegmenter

    seen: list[str] = []
    forward = TinySegmenter.forward

    def watched(self: TinySegmenter, inputs: torch.Tensor) -> torch.Tensor:
        if not seen:
            seen.append(capsys.readouterr().err)
        return forward(self, inputs)

    monkeypatch.setattr(TinySegmenter, "forward", watched)
    assert main(
        [
            "explain-dataset", str(photos), "--out", str(tmp_path / "maps"),
            "--model", SEGMENTER, "--steps", str(STEPS), "--workers", "0",
            "--images-per-batch", "3",
        ]
    ) == 0  # fmt: skip
    assert "explaining:   0%" in seen[0] and "0/3" in seen[0]
    later = capsys.readouterr().err
    assert later.index("1/3") < later.index("2/3") < later.index("3/3")
