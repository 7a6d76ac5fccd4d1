"""``captum-igcam explain --task segmentation|detection`` end to end."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data

from captum_igcam import cli

FAST = ["--steps", "3"]
TINY_MODELS = textwrap.dedent(
    """
    import torch
    from task_models import TinySegmenter, tiny_faster_rcnn
    from captum_igcam.app.model_bundle import ModelBundle

    def bundle(model, layer, task, categories):
        return ModelBundle(
            name=f"tiny-{task}", model=model.eval(), layer_name=layer,
            input_size=48, mean=(0.0,) * 3, std=(1.0,) * 3,
            categories=categories, task=task,
        )

    def segmenter():
        torch.manual_seed(0)
        return bundle(TinySegmenter(), "backbone.2", "segmentation",
                      ["__background__", "cat", "dog"])

    def detector():
        torch.manual_seed(0)
        return bundle(tiny_faster_rcnn(), "backbone.2", "detection",
                      ["__background__", "cat", "dog", "bird"])
    """
)


@pytest.fixture
def run_cli(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(cli, "SUBCOMMAND_MODULES", ("captum_igcam.cli.explain",))
    (tmp_path / "tiny_task_models.py").write_text(TINY_MODELS)
    monkeypatch.syspath_prepend(str(tmp_path))

    def run(*argv: str) -> tuple[int, str, str]:
        try:
            status = cli.main(list(argv))
        except SystemExit as exit:  # argparse's own errors
            status = exit.code
        captured = capsys.readouterr()
        return status, captured.out, captured.err

    return run


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("photos") / "chelsea.png"
    Image.fromarray(data.chelsea()).save(path)  # 300 x 451
    return path


def _summary(folder: Path) -> dict:
    return json.loads((folder / "summary.json").read_text(encoding="utf-8"))


def test_segmentation_box_region_is_recorded_and_drawn(run_cli, photo, tmp_path):
    out = tmp_path / "out"
    status, _, err = run_cli(
        "explain", str(photo), "--model", "tiny_task_models:segmenter",
        "--target", "dog", "--box", "0,0,225.5,150", "--out", str(out), *FAST,
    )  # fmt: skip
    assert status == 0, err
    summary = _summary(out)
    record = summary["images"][0]
    assert summary["task"] == "segmentation"
    assert (record["target_label"], record["region"]) == ("dog", "box")
    # The box is the photo's top-left quarter: a quarter of the 48 x 48 input.
    assert record["region_pixels"] == 24 * 24
    gradcam = np.load(out / "chelsea_gradcam_upsampled.npy")
    assert gradcam.shape == (300, 451)
    assert Image.open(out / "chelsea.png").size[0] > 3 * 200


def test_segmentation_default_region_is_the_predicted_class(run_cli, photo, tmp_path):
    out = tmp_path / "out"
    status, _, err = run_cli(
        "explain", str(photo), "--model", "tiny_task_models:segmenter",
        "--out", str(out), *FAST,
    )  # fmt: skip
    assert status == 0, err
    record = _summary(out)["images"][0]
    assert record["region"] == "predicted" and record["region_pixels"] > 0
    assert record["target_label"] != "__background__" or record["region_fraction"] == 1


def test_detection_by_rank_records_the_box_in_photo_pixels(run_cli, photo, tmp_path):
    import tiny_task_models  # written by run_cli

    out = tmp_path / "out"
    status, _, err = run_cli(
        "explain", str(photo), "--model", "tiny_task_models:detector",
        "--box", "1", "--detection-output", "score+iou", "--out", str(out), *FAST,
    )  # fmt: skip
    assert status == 0, err
    record = _summary(out)["images"][0]
    bundle = tiny_task_models.detector()
    with torch.no_grad():
        found = bundle.model([bundle.preprocess(data.chelsea())])[0]
    scale = np.array([451 / 48, 300 / 48] * 2)
    expected = found["boxes"][1].numpy() * scale
    assert np.allclose(record["box"], expected, atol=0.01)
    assert record["detection_index"] == 1 and record["matched_at_input"]
    assert record["target_index"] == int(found["labels"][1])
    # score+iou: the detection matches itself with IoU 1.
    assert record["score_at_input"] == pytest.approx(float(found["scores"][1]) + 1)
    # The detector pads its 48 px input to 64 (a multiple of 32); stride 4.
    assert np.load(out / "chelsea_igcam_layer.npy").shape == (16, 16)


def test_detection_rank_beyond_the_detections_is_reported(run_cli, photo, tmp_path):
    status, _, err = run_cli(
        "explain", str(photo), "--model", "tiny_task_models:detector",
        "--box", "99", "--out", str(tmp_path / "out"), *FAST,
    )  # fmt: skip
    assert status == 1
    assert "box: the model found 10 detection(s) on this photo" in err
    assert _summary(tmp_path / "out")["errors"][0]["image"] == str(photo)


@pytest.mark.parametrize(
    "options, message",
    [
        (["--box", "3,3,1,1"], "--box: expected x1 < x2 and y1 < y2"),
        (["--box", "a,b"], "--box: expected a detection index"),
        (["--min-iou", "2"], "--min-iou: expected a number in [0, 1]"),
        (["--task", "detection", "--model", "resnet18"], "task: 'resnet18' is a"),
    ],
)
def test_bad_task_options_are_named(run_cli, photo, tmp_path, options, message):
    status, _, err = run_cli(
        "explain", str(photo), "--random-weights", "--out", str(tmp_path), *options
    )
    assert status != 0
    assert message in err


@pytest.mark.slow
@pytest.mark.parametrize(
    "model, options, task",
    [
        ("deeplabv3_mobilenet_v3_large", ["--target", "1"], "segmentation"),
        ("fasterrcnn_mobilenet_v3_large_320_fpn", ["--box", "0"], "detection"),
    ],
)
def test_torchvision_task_models_end_to_end(
    run_cli, photo, tmp_path, model, options, task
):
    out = tmp_path / "out"
    status, _, err = run_cli(
        "explain", str(photo), "--model", model, "--random-weights",
        "--task", task, "--out", str(out), "--steps", "4", "--batch-size", "2",
        *(options if task == "detection" else ["--box", "0,0,200,150"]),
    )  # fmt: skip
    assert status == 0, err
    summary = _summary(out)
    assert summary["task"] == task and summary["random_weights"]
    record = summary["images"][0]
    assert record["task"] == task
    heat = np.load(out / "chelsea_igcam_upsampled.npy")
    assert heat.shape == (300, 451) and np.isfinite(heat).all() and heat.max() > 0


def test_a_box_outside_one_photo_skips_that_photo_only(run_cli, photo, tmp_path):
    small = tmp_path / "small.png"
    Image.fromarray(data.chelsea()[:80, :100]).save(small)  # 80 x 100
    out = tmp_path / "out"
    status, _, err = run_cli(
        "explain", str(small), str(photo), "--model", "tiny_task_models:segmenter",
        "--target", "dog", "--box", "200,150,400,290", "--out", str(out), *FAST,
    )  # fmt: skip
    assert status == 1
    assert f"{small}: nothing to explain: box: 200,150,400,290 lies outside" in err
    summary = _summary(out)
    assert [record["image"] for record in summary["images"]] == [str(photo)]
    assert summary["images"][0]["box"] == [200.0, 150.0, 400.0, 290.0]
    assert summary["errors"] == [
        {
            "image": str(small),
            "error": "box: 200,150,400,290 lies outside this photo (100 x 80 pixels)",
        }
    ]
    # Every file of the run is one the summary lists.
    listed = {name for record in summary["images"] for name in record["files"]}
    assert {p.name for p in out.iterdir()} == listed | {"summary.json"}


@pytest.mark.parametrize("size", [(1, 40), (2, 2), (40, 1)])
def test_a_very_small_photo_gets_its_segmentation_figure(run_cli, tmp_path, size):
    tiny = tmp_path / "tiny.png"
    Image.fromarray(data.chelsea()[: size[0], : size[1]]).save(tiny)
    out = tmp_path / "out"
    status, _, err = run_cli(
        "explain", str(tiny), "--model", "tiny_task_models:segmenter",
        "--out", str(out), *FAST,
    )  # fmt: skip
    assert status == 0, err
    record = _summary(out)["images"][0]
    assert record["region_pixels"] > 0
    with Image.open(out / "tiny.png") as figure:
        assert figure.format == "PNG" and figure.width > 100
    assert np.load(out / "tiny_igcam_upsampled.npy").shape == size


NOT_A_BOX = (
    "expected a detection index (0 is the highest score) or x1,y1,x2,y2 in the "
    "photo's pixels"
)


@pytest.mark.parametrize(
    "box, message",
    [
        ("nan,0,10,10", "expected finite coordinates, got 'nan,0,10,10'"),
        ("0,0,inf,10", "expected finite coordinates, got '0,0,inf,10'"),
        ("²", f"{NOT_A_BOX}, got '²'"),
        ("-1", f"{NOT_A_BOX}, got '-1'"),
        ("1,2,3", f"{NOT_A_BOX}, got '1,2,3'"),
    ],
)
def test_bad_boxes_are_invalid_option_values(run_cli, photo, tmp_path, box, message):
    status, _, err = run_cli(
        "explain", str(photo), "--model", "tiny_task_models:detector",
        "--box", box, "--out", str(tmp_path / "out"), *FAST,
    )  # fmt: skip
    assert status == 2
    assert err.splitlines()[-1].endswith(f"error: argument --box: {message}")
    assert "int()" not in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


@pytest.fixture(params=["explain", "explain-dataset"])
def command_and_source(request, monkeypatch, photo) -> tuple[str, str]:
    """Each of the two commands that explain photos, and the photo (explain)
    or its folder (explain-dataset)."""
    monkeypatch.setattr(
        cli,
        "SUBCOMMAND_MODULES",
        ("captum_igcam.cli.explain", "captum_igcam.cli.explain_dataset"),
    )
    command = request.param
    return command, str(photo if command == "explain" else photo.parent)


def test_a_box_for_a_classifier_is_refused_in_both_commands(
    run_cli, tmp_path, command_and_source
):
    command, source = command_and_source
    status, _, err = run_cli(
        command, source, "--box", "0", "--out", str(tmp_path / "out"),
    )  # fmt: skip
    assert status == 2
    assert err.splitlines()[-1] == (
        f"captum-igcam {command}: error: argument --box: a region or box is for "
        "a segmentation model or a detector; the model is a classifier"
    )
    assert not (tmp_path / "out").exists()


def test_a_box_for_a_users_classifier_is_refused_once_loaded(
    run_cli, tmp_path, command_and_source
):
    command, source = command_and_source
    module = tmp_path / "tiny_classifier.py"
    module.write_text(
        "import torch\n"
        "def build():\n"
        "    return torch.nn.Sequential(torch.nn.Conv2d(3, 2, 3), torch.nn.ReLU(),\n"
        "        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())\n"
    )
    status, _, err = run_cli(
        command, source, "--model", "tiny_classifier:build", "--box", "0",
        "--out", str(tmp_path / "out"),
    )  # fmt: skip
    assert status == 2
    assert "argument --box: a region or box is for" in err.splitlines()[-1]
    assert not (tmp_path / "out").exists()


def test_progress_is_shown_for_a_single_photo(run_cli, photo, tmp_path):
    status, _, err = run_cli(
        "explain", str(photo), "--model", "tiny_task_models:segmenter",
        "--out", str(tmp_path / "out"), *FAST,
    )  # fmt: skip
    assert status == 0, err
    lines = err.replace("\r", "\n").splitlines()
    assert lines[0] == "loading torch and tiny_task_models:segmenter ..."
    assert lines[1].startswith(
        "loaded tiny-segmentation (segmentation, layer backbone.2) in "
    )
    assert lines[1].endswith("s; explaining 1 image(s) with gradcam, igcam")
    bar = [line for line in lines if line.startswith("explaining:")]
    assert "0/2" in bar[0] and "2/2" in bar[-1]
    assert "chelsea" in bar[-1]
