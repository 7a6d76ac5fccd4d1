"""End-to-end tests of ``captum-igcam explain`` on the embedded EfficientNet-Lite0."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data

import captum_igcam
from captum_igcam import cli
from captum_igcam.app import maps
from captum_igcam.app.settings import MethodSettings

FAST = ["--steps", "4"]


@pytest.fixture
def run_cli(monkeypatch, capsys):
    """Run the real dispatcher with only the explain subcommand registered."""
    monkeypatch.setattr(cli, "SUBCOMMAND_MODULES", ("captum_igcam.cli.explain",))

    def run(*argv: str) -> tuple[int, str, str]:
        status = cli.main(list(argv))
        captured = capsys.readouterr()
        return status, captured.out, captured.err

    return run


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("photos")
    paths = {"chelsea": folder / "chelsea.png", "coffee": folder / "coffee.jpg"}
    Image.fromarray(data.chelsea()).save(paths["chelsea"])
    Image.fromarray(data.coffee()).save(paths["coffee"], quality=90)
    paths["corrupt"] = folder / "corrupt.jpg"
    paths["corrupt"].write_bytes(b"\xff\xd8 this is not really a jpeg")
    return paths


def _summary(folder: Path) -> dict:
    return json.loads((folder / "summary.json").read_text(encoding="utf-8"))


def _error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("captum-igcam")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.slow
def test_two_images_and_a_bad_path(run_cli, photos, tmp_path):
    out = tmp_path / "out"
    missing = tmp_path / "missing.png"
    status, stdout, stderr = run_cli(
        "explain",
        str(photos["chelsea"]),
        str(missing),
        str(photos["coffee"]),
        *FAST,
        "--out",
        str(out),
    )
    assert status == 1
    assert stderr.count(f"image '{missing}' does not exist") == 1
    assert "Traceback" not in stderr
    assert "explained 2 of 3 image(s) with 2 method(s) in" in stdout

    summary = _summary(out)
    assert summary["model"] == "efficientnet-lite0"
    assert summary["random_weights"] is False
    assert summary["layer"] == "_head_activation"  # docs/variants.md
    assert summary["methods"] == ["gradcam", "igcam"]
    assert summary["errors"] == [
        {"image": str(missing), "error": f"image '{missing}' does not exist"}
    ]
    chelsea, coffee = summary["images"]
    assert (chelsea["predicted_label"], coffee["predicted_label"]) == (
        "Egyptian cat",
        "espresso",
    )
    assert chelsea["predicted_index"] == chelsea["target_index"] == 285
    assert chelsea["probability"] == pytest.approx(0.80, abs=0.02)
    assert chelsea["target_label"] == "Egyptian cat"

    expected = ["chelsea.png"] + [
        f"chelsea_{method}_{kind}.npy"
        for method in ("gradcam", "igcam")
        for kind in ("layer", "upsampled")
    ]
    assert chelsea["files"] == expected
    assert sorted(p.name for p in out.iterdir()) == sorted(
        expected
        + [name.replace("chelsea", "coffee") for name in coffee["files"]]
        + ["summary.json"]
    )
    igcam = np.load(out / "chelsea_igcam_layer.npy")
    assert igcam.shape == (7, 7)
    assert igcam.min() >= 0 and igcam.max() > 0  # per-step ReLU keeps it >= 0
    assert np.load(out / "chelsea_igcam_upsampled.npy").shape == (300, 451)
    gradcam = np.load(out / "chelsea_gradcam_layer.npy")
    assert not np.allclose(gradcam / gradcam.max(), igcam / igcam.max())
    with Image.open(out / "coffee.png") as figure:
        assert figure.format == "PNG" and figure.width > 2 * figure.height


@pytest.mark.slow
def test_rerun_into_same_folder_replaces_nothing(run_cli, photos, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "chelsea.png").write_bytes(b"stale")
    (out / "summary.json").write_text("{not json")
    arguments = ("explain", str(photos["chelsea"]), "--methods", "gradcam")
    status, _, stderr = run_cli(*arguments, "--target", "Tabby", "--out", str(out))
    assert status == 0
    assert "the files of" in stderr and "are named chelsea-2* instead" in stderr
    summary = json.loads((out / "summary-2.json").read_text(encoding="utf-8"))
    record = summary["images"][0]
    assert (record["target_index"], record["target_label"]) == (281, "tabby")
    assert record["predicted_label"] == "Egyptian cat"
    assert 0 < record["target_probability"] < record["probability"]
    assert summary["summary"] == "summary-2.json"
    with Image.open(out / "chelsea-2.png") as figure:
        assert figure.format == "PNG"
    assert (out / "chelsea.png").read_bytes() == b"stale"
    assert (out / "summary.json").read_text() == "{not json"
    # A second run takes the next free names, again replacing nothing.
    assert run_cli(*arguments, "--out", str(out))[0] == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["chelsea.png", "summary.json", "summary-2.json", "summary-3.json"]
        + [
            f"chelsea-{n}{suffix}"
            for n in (2, 3)
            for suffix in (".png", "_gradcam_layer.npy", "_gradcam_upsampled.npy")
        ]
    )


def test_out_in_the_photos_folder_never_overwrites_the_photo(run_cli, photos, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    photo = folder / "chelsea.png"
    photo.write_bytes(photos["chelsea"].read_bytes())
    (folder / "summary.json").symlink_to(tmp_path / "nowhere")  # dangling link
    (folder / "chelsea-2_gradcam_layer.npy").mkdir()  # a folder in the way
    status, stdout, stderr = run_cli(
        "explain",
        str(photo),
        "--methods",
        "gradcam",
        "--no-upsampled-maps",
        "--out",
        str(folder),
    )
    assert status == 0
    assert photo.read_bytes() == photos["chelsea"].read_bytes()
    assert (folder / "summary.json").is_symlink()
    assert not (tmp_path / "nowhere").exists()
    assert "chelsea-3*" in stderr
    summary = json.loads((folder / "summary-2.json").read_text(encoding="utf-8"))
    assert summary["images"][0]["files"] == [
        "chelsea-3.png",
        "chelsea-3_gradcam_layer.npy",
    ]
    assert "summary: summary-2.json" in stdout
    with Image.open(folder / "chelsea-3.png") as figure:
        assert figure.format == "PNG"


def test_corrupt_image_is_named_and_fails_the_run(run_cli, photos, tmp_path):
    status, _, stderr = run_cli(
        "explain", str(photos["corrupt"]), *FAST, "--out", str(tmp_path)
    )
    assert status == 1
    assert str(photos["corrupt"]) in _error_line(stderr)
    summary = _summary(tmp_path)
    assert summary["images"] == []
    assert summary["errors"][0]["image"] == str(photos["corrupt"])


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--layer", "_blocks.16"], "closest names: .*_blocks.15"),
        (["--target", "1000"], r"--target: expected a class index in 0\.\.999"),
        (["--target", "egyptian kat"], "closest labels: Egyptian cat"),
        (
            ["--target", "cardigan"],
            r"'cardigan' is the label of several classes: 264 \(Cardigan\), "
            r"474 \(cardigan\); give the class index",
        ),
        (["--model", "resnet18"], "not in the torch hub cache.*--random-weights"),
    ],
)
def test_bad_values_give_one_line_errors(run_cli, photos, tmp_path, options, message):
    status, _, stderr = run_cli(
        "explain", str(photos["chelsea"]), *options, "--out", str(tmp_path)
    )
    assert status == 1
    assert re.search(message, _error_line(stderr).removeprefix("captum-igcam: error: "))
    assert not (tmp_path / "summary.json").exists()


def test_a_mistyped_model_gets_a_short_wrapped_message(run_cli, photos, tmp_path):
    status, _, stderr = run_cli(
        "explain", str(photos["chelsea"]), "--model", "resnet5", "--out", str(tmp_path)
    )
    assert status == 1
    lines = stderr.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("captum-igcam"))
    message = lines[start:]
    assert all(len(line) <= 79 for line in message), message
    assert all(line.startswith("  ") for line in message[1:]), message
    text = " ".join(line.strip() for line in message)
    assert len(text) < 400
    assert re.search(r"--model: unknown model 'resnet5'.*did you mean resnet50", text)
    assert "--list-models lists them" in text
    assert "alexnet" not in text  # the known names are not all printed


def test_list_models_prints_the_known_names(run_cli, capsys):
    from captum_igcam.app.models import known_models

    with pytest.raises(SystemExit) as raised:
        run_cli("explain", "--list-models")
    assert raised.value.code == 0
    printed = capsys.readouterr().out
    assert " ".join(printed.split()) == ", ".join(known_models())
    assert max(len(line) for line in printed.splitlines()) <= 79


def test_unwritable_output_folder(run_cli, photos, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    status, _, stderr = run_cli(
        "explain", str(photos["chelsea"]), "--out", str(blocker / "sub")
    )
    assert status == 1
    assert "--out: cannot write to output folder" in _error_line(stderr)
    assert str(blocker / "sub") in stderr


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--steps", "0"], "argument --steps: expected a positive integer, got '0'"),
        (["--batch-size", "many"], "argument --batch-size: expected a positive"),
        (["--methods", "gradcam,nope"], "argument --methods: expected a comma-sep"),
        (["--baseline", "white"], "invalid choice: 'white'"),
        (["--method", "simpson"], "invalid choice: 'simpson'"),
        (
            ["--random-weights", "--weights", "w.pt"],
            "argument --weights: not allowed with argument --random-weights",
        ),
    ],
)
def test_bad_option_values_are_usage_errors(run_cli, capsys, options, message):
    with pytest.raises(SystemExit) as raised:
        run_cli("explain", *options)
    assert raised.value.code == 2
    stderr = capsys.readouterr().err
    assert message in stderr.splitlines()[-1]
    assert "Traceback" not in stderr
    option = options[0]
    assert f"{option}: {option}" not in stderr  # the option is named once


def test_version(run_cli, capsys):
    with pytest.raises(SystemExit) as raised:
        run_cli("--version")
    assert raised.value.code == 0
    assert capsys.readouterr().out.strip() == f"captum-igcam {captum_igcam.__version__}"


def test_help_argument_errors_and_missing_files_do_not_import_torch(tmp_path):
    script = textwrap.dedent(
        """
        import sys
        from captum_igcam.cli import main

        missing = ["explain", sys.argv[1] + "/missing.png", "--out", sys.argv[1]]
        for argv in (["--help"], ["benchmark", "--n", "0"], missing):
            try:
                print("status", main(argv))
            except SystemExit:
                pass
        heavy = ("torch", "captum", "torchvision")
        print(sorted(name for name in heavy if name in sys.modules))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.splitlines()[-2:] == ["status 1", "[]"]
    assert "usage: captum-igcam [-h] [--version]" in done.stdout
    assert "missing.png' does not exist" in done.stderr


def test_missing_images_are_reported_before_the_model_loads(
    run_cli, tmp_path, monkeypatch
):
    def no_model(self):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(MethodSettings, "load_model", no_model)
    status, _, stderr = run_cli(
        "explain", str(tmp_path / "a.png"), str(tmp_path), "--out", str(tmp_path / "o")
    )
    assert status == 1
    lines = stderr.splitlines()
    assert (
        lines[0] == f"captum-igcam: error: image '{tmp_path / 'a.png'}' does not exist"
    )
    assert lines[1] == (
        f"captum-igcam: error: image '{tmp_path}' is a directory; explain takes "
        f"image files (for a folder use: captum-igcam explain-dataset {tmp_path} "
        "--out DIR)"
    )
    assert lines[2] == "captum-igcam: error: no image to explain"


def test_image_over_the_decompression_bomb_limit_is_skipped(
    run_cli, photos, tmp_path, monkeypatch
):
    from PIL import Image as PILImage

    small = tmp_path / "small.png"
    PILImage.fromarray(data.chelsea()[::10, ::10]).save(small)  # 30 x 46
    # chelsea.png has 135,300 pixels: over twice a limit of 5,000, refused.
    monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", 5000)
    status, _, stderr = run_cli(
        "explain",
        str(photos["chelsea"]),
        str(small),
        "--methods",
        "gradcam",
        "--out",
        str(tmp_path / "out"),
    )
    assert status == 1
    assert f"image '{photos['chelsea']}' is over Pillow's decompression-bomb" in stderr
    assert "Traceback" not in stderr
    summary = _summary(tmp_path / "out")
    assert [record["image"] for record in summary["images"]] == [str(small)]
    assert [error["image"] for error in summary["errors"]] == [str(photos["chelsea"])]


def test_random_weights_are_marked_and_upsampled_maps_optional(
    run_cli, photos, tmp_path, monkeypatch
):
    titles = []
    real_figure = maps.explanation_figure

    def recording_figure(*args, **kwargs):
        titles.append(kwargs["image_title"])
        return real_figure(*args, **kwargs)

    monkeypatch.setattr(maps, "explanation_figure", recording_figure)
    options = "--model resnet18 --random-weights --methods gradcam --no-upsampled-maps"
    status, _, _ = run_cli(
        "explain", str(photos["coffee"]), *options.split(), "--out", str(tmp_path)
    )
    assert status == 0
    summary = _summary(tmp_path)
    assert (summary["model"], summary["random_weights"]) == ("resnet18", True)
    assert summary["images"][0]["files"] == ["coffee.png", "coffee_gradcam_layer.npy"]
    assert not list(tmp_path.glob("*upsampled*"))
    assert len(titles) == 1 and titles[0].endswith("(random weights)")


def test_debug_shows_the_traceback(run_cli, tmp_path):
    with pytest.raises(ValueError, match="unknown model"):
        run_cli("--debug", "explain", "--model", "nope", "--out", str(tmp_path))


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_cuda_without_cuda_is_a_one_line_error(run_cli, tmp_path):
    status, _, stderr = run_cli("explain", "--device", "cuda", "--out", str(tmp_path))
    assert status == 1
    assert "--device: 'cuda' was asked for but CUDA is not available" in stderr
    assert "Traceback" not in stderr


@pytest.mark.slow
def test_other_methods_and_baselines(run_cli, photos, tmp_path):
    status, _, _ = run_cli(
        "explain",
        str(photos["coffee"]),
        "--steps",
        "2",
        "--methods",
        "igcam-notebook,layer-ig",
        "--baseline",
        "blur",
        "--batch-size",
        "1",
        "--out",
        str(tmp_path),
    )
    assert status == 0
    summary = _summary(tmp_path)
    assert (summary["baseline"], summary["methods"]) == (
        "blur",
        ["igcam-notebook", "layer-ig"],
    )
    assert summary["images"][0]["files"][1:] == [
        f"coffee_{method}_{kind}.npy"
        for method in ("igcam-notebook", "layer-ig")
        for kind in ("layer", "upsampled")
    ]
    assert np.load(tmp_path / "coffee_igcam-notebook_layer.npy").min() >= 0


def test_a_failed_run_removes_only_the_output_folders_it_created_empty(
    run_cli, photos, tmp_path
):
    made = tmp_path / "new" / "out"
    status, _, _ = run_cli("explain", str(photos["chelsea"]), "--model", "resnet5",
                           "--out", str(made))  # fmt: skip
    assert status == 1
    assert not (tmp_path / "new").exists()
    existing = tmp_path / "existing"
    existing.mkdir()
    status, _, _ = run_cli("explain", str(photos["chelsea"]), "--model", "resnet5",
                           "--out", str(existing / "sub"))  # fmt: skip
    assert status == 1
    assert existing.is_dir() and list(existing.iterdir()) == []
    status, _, _ = run_cli("explain", str(tmp_path / "missing.png"),
                           "--out", str(existing))  # fmt: skip
    assert status == 1
    assert existing.is_dir()  # it was there before the run


def test_help_names_every_task_and_lists_the_methods(run_cli, capsys):
    from captum_igcam.app.methods import METHODS

    texts = []
    for argv in (["--help"], ["explain", "--help"]):
        with pytest.raises(SystemExit):
            run_cli(*argv)
        texts.append(" ".join(capsys.readouterr().out.split()))
    for text in texts:
        assert "classifier" in text and "segmentation" in text
        assert "detector" in text
        assert "for image classifiers." not in text
    methods_help = texts[1].split("--methods LIST comma")[1].split("--target")[0]
    listed = methods_help.split("one or more of:")[1].replace("- ", "-")
    assert [name.strip() for name in listed.split(",")] == list(METHODS)
    assert "docs/cli.md" not in methods_help
