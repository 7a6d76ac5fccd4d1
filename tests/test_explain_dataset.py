"""``captum-igcam explain-dataset``: one process, torchrun, kill and resume.

A tiny random CNN, importable as ``igcam_tinynet:build`` from a temporary
folder, explains a small generated ImageFolder. Every run's maps are checked
against ``IntegratedLayerGradCam`` called directly on each image.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from captum_igcam import IntegratedLayerGradCam
from captum_igcam.app import models
from captum_igcam.cli import main
from captum_igcam.dataset_job import maps_io as io
from captum_igcam.dataset_job.explainer import find_images

MODEL = "igcam_tinynet:build"
KILL_SWITCH = "IGCAM_TINYNET_KILL_WHEN_EXISTS"
STEPS = 3
CLASSES = ("0", "1", "2")
IMAGES_PER_CLASS = 3

MODEL_SOURCE = f'''
import os
import shutil
import signal

import torch
from torch import nn


class TinyNet(nn.Sequential):
    """Sequential CNN that kills its own process once a given file exists."""

    def forward(self, x):
        trigger = os.environ.get("{KILL_SWITCH}")
        if trigger and os.path.exists(trigger):
            os.kill(os.getpid(), signal.SIGKILL)
        return super().forward(x)


def build():
    torch.manual_seed(0)
    return TinyNet(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(4, 4, 3, stride=8, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, {len(CLASSES)}),
    )
'''


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("model")
    (folder / "igcam_tinynet.py").write_text(textwrap.dedent(MODEL_SOURCE))
    return folder


@pytest.fixture(autouse=True)
def _importable_model(model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(model_dir))


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ImageFolder layout: ``<class>/img<i>.png``, random pixels, varied sizes."""
    root = tmp_path_factory.mktemp("images")
    _write_images(root, seed=0)
    return root


def _write_images(root: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    for name in CLASSES:
        (root / name).mkdir(parents=True, exist_ok=True)
        for index in range(IMAGES_PER_CLASS):
            height, width = rng.integers(12, 40, size=2)
            pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"img{index}.png")


@pytest.fixture(scope="module")
def expected(
    image_folder: Path, model_dir: Path
) -> dict[str, tuple[int, torch.Tensor]]:
    """Image key -> (top-1 class, map from IntegratedLayerGradCam per image)."""
    sys.path.insert(0, str(model_dir))
    try:
        return _direct_maps(image_folder)
    finally:
        sys.path.remove(str(model_dir))


def _direct_maps(folder: Path) -> dict[str, tuple[int, torch.Tensor]]:
    """Each image of ``folder`` explained alone by ``IntegratedLayerGradCam``."""
    bundle = models.load_model(MODEL)
    explainer = IntegratedLayerGradCam(bundle.model, bundle.layer())
    results = {}
    for path in sorted(folder.rglob("*.png")):
        inputs = bundle.preprocess(np.asarray(Image.open(path))).unsqueeze(0)
        with torch.no_grad():
            predicted = int(bundle.model(inputs).argmax())
        layer_map = explainer.attribute(
            inputs,
            target=predicted,
            baselines=_black_baseline(bundle, inputs),
            n_steps=STEPS,
        )
        results[path.relative_to(folder).as_posix()] = (predicted, layer_map[0])
    return results


def _black_baseline(bundle: models.ModelBundle, inputs: torch.Tensor) -> torch.Tensor:
    """A black image after the bundle's normalisation, computed independently."""
    black = -torch.tensor(bundle.mean) / torch.tensor(bundle.std)
    return black.view(1, 3, 1, 1).expand_as(inputs)


def _arguments(source: Path, out: Path, *extra: str) -> list[str]:
    return [
        "explain-dataset",
        str(source),
        "--out",
        str(out),
        "--model",
        MODEL,
        "--steps",
        str(STEPS),
        "--shard-size",
        "2",
        "--images-per-batch",
        "3",
        *extra,
    ]


def _environment(model_dir: Path, **variables: str) -> dict[str, str]:
    path = os.pathsep.join([str(model_dir), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path, **variables}


def _assert_same_map(stored: torch.Tensor, direct: torch.Tensor) -> None:
    """Equal up to float32 rounding of differently batched convolutions."""
    scale = float(direct.abs().max())
    assert scale > 0
    torch.testing.assert_close(stored, direct, rtol=1e-4, atol=1e-5 * scale)


def _assert_maps_correct(
    out: Path, expected: dict[str, tuple[int, torch.Tensor]]
) -> None:
    """The index lists every image, each with the direct map and prediction."""
    maps = io.open_maps(out)
    assert sorted(maps) == sorted(expected)
    for key, (predicted, direct) in expected.items():
        record = maps.record(key)
        assert record.predicted == record.target == predicted
        _assert_same_map(maps[key], direct)
        assert 0 < record.probability <= 1


def _assert_complete_and_correct(
    out: Path, expected: dict[str, tuple[int, torch.Tensor]]
) -> None:
    """Every image once, in exactly one shard row, with the direct map."""
    _assert_maps_correct(out, expected)
    stored_keys = []
    for shard in sorted((out / io.SHARD_FOLDER).glob("*.npz")):
        with np.load(shard) as arrays:
            stored_keys.extend(arrays["keys"].tolist())
    assert sorted(stored_keys) == sorted(expected)  # none twice, none missing


def test_single_process_matches_direct_attribution(
    image_folder: Path, tmp_path: Path, expected: dict, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "maps"
    assert main(_arguments(image_folder, out, "--workers", "1")) == 0
    _assert_complete_and_correct(out, expected)
    assert "explained 9 image(s)" in capsys.readouterr().out
    assert len(list((out / io.SHARD_FOLDER).glob("*.npz"))) == 5  # 2+2+2+2+1


@pytest.mark.slow
def test_torchrun_two_processes_matches_direct_attribution(
    image_folder: Path, tmp_path: Path, model_dir: Path, expected: dict
) -> None:
    out = tmp_path / "maps"
    with socket.socket() as probe:  # a free loopback port for the rendezvous
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        "2",
        "--master-addr",
        "127.0.0.1",
        "--master-port",
        str(port),
        "-m",
        "captum_igcam",
        *_arguments(image_folder, out, "--workers", "1", "--no-progress"),
    ]
    finished = subprocess.run(
        command,
        env=_environment(model_dir, GLOO_SOCKET_IFNAME="lo"),
        capture_output=True,
        text=True,
    )
    assert finished.returncode == 0, finished.stderr
    assert "rank 0 of 2: explained 5 image(s)" in finished.stdout
    assert "rank 1 of 2: explained 4 image(s)" in finished.stdout
    _assert_complete_and_correct(out, expected)
    for rank in (0, 1):
        own = io.read_index(out / io.rank_index_name(rank))["images"]
        assert {record["shard"] for record in own.values()} == {
            path.relative_to(out).as_posix()
            for path in (out / io.SHARD_FOLDER).glob(f"rank{rank}-*.npz")
        }


def test_killed_run_loses_at_most_one_shard_and_resumes(
    image_folder: Path,
    tmp_path: Path,
    model_dir: Path,
    expected: dict,
    capsys: pytest.CaptureFixture,
) -> None:
    out = tmp_path / "maps"
    rank_index = out / io.rank_index_name(0)
    # The model kills the process at its first forward pass after the first
    # shard's index is written, i.e. in the middle of the second shard.
    killed = subprocess.run(
        [sys.executable, "-m", "captum_igcam"]
        + _arguments(image_folder, out, "--workers", "0", "--no-progress"),
        env=_environment(model_dir, **{KILL_SWITCH: str(rank_index)}),
        capture_output=True,
        text=True,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert not (out / io.MERGED_INDEX_NAME).exists()
    assert len(io.read_index(rank_index)["images"]) == 2  # the first shard
    # What a kill during a shard's write leaves: files no index lists.
    orphans = [out / io.SHARD_FOLDER / name for name in ("rank0-00007.npz", ".x.tmp")]
    for orphan in orphans:
        orphan.write_bytes(b"partial")

    assert main(_arguments(image_folder, out, "--workers", "0")) == 0
    report = capsys.readouterr().out
    assert "explained 7 image(s) " in report
    assert "skipped 2 already" in report
    _assert_complete_and_correct(out, expected)
    assert not any(orphan.exists() for orphan in orphans)


def test_rerun_skips_written_images_and_rewrites_no_shard(
    image_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "maps"
    assert main(_arguments(image_folder, out, "--workers", "0")) == 0
    shards = {p: p.stat().st_mtime_ns for p in (out / io.SHARD_FOLDER).iterdir()}
    capsys.readouterr()
    assert main(_arguments(image_folder, out, "--workers", "0")) == 0
    assert "explained 0 image(s)" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in (out / io.SHARD_FOLDER).iterdir()} == (
        shards
    )


def test_changed_settings_are_refused_unless_overwrite(
    image_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "maps"
    assert main(_arguments(image_folder, out, "--workers", "0")) == 0
    capsys.readouterr()
    changed = _arguments(
        image_folder, out, "--workers", "0", "--method", "riemann_left"
    )
    assert main(changed) == 1
    error = capsys.readouterr().err
    assert "method: 'gausslegendre' there, 'riemann_left' now" in error
    assert "--overwrite" in error
    assert io.open_maps(out).settings["method"] == "gausslegendre"

    assert main([*changed, "--overwrite"]) == 0
    maps = io.open_maps(out)
    assert maps.settings["method"] == "riemann_left"
    assert len(maps) == len(CLASSES) * IMAGES_PER_CLASS
    assert len(list((out / io.SHARD_FOLDER).glob("*.npz"))) == 5


def test_folder_target_explains_each_class_folder(
    image_folder: Path, tmp_path: Path
) -> None:
    out = tmp_path / "maps"
    assert (
        main(_arguments(image_folder, out, "--workers", "0", "--target", "folder")) == 0
    )
    maps = io.open_maps(out)
    bundle = models.load_model(MODEL)
    explainer = IntegratedLayerGradCam(bundle.model, bundle.layer())
    for key in maps:
        target = int(key.split("/")[0])
        assert maps.record(key).target == target
        inputs = bundle.preprocess(np.asarray(Image.open(image_folder / key)))[None]
        direct = explainer.attribute(
            inputs,
            target=target,
            baselines=_black_baseline(bundle, inputs),
            n_steps=STEPS,
        )
        _assert_same_map(maps[key], direct[0])


def test_unreadable_image_is_reported_and_the_rest_written(
    image_folder: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    source = tmp_path / "images"
    (source / "0").mkdir(parents=True)
    (source / "0" / "broken.png").write_bytes(b"not a png")
    Image.new("RGB", (100, 100)).save(source / "0" / "huge.png")
    for key in ("1/img0.png", "2/img1.png"):
        (source / key).parent.mkdir(exist_ok=True)
        (source / key).write_bytes((image_folder / key).read_bytes())
    # huge.png (10,000 pixels) is over twice the limit, the others below it.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 2000)
    out = tmp_path / "maps"
    assert main(_arguments(source, out, "--workers", "0")) == 1
    errors = capsys.readouterr().err
    assert errors.count("broken.png") == 1  # reported once
    assert errors.count("huge.png") == 1
    assert "decompression-bomb limit" in errors
    assert sorted(io.open_maps(out)) == ["1/img0.png", "2/img1.png"]


def test_folder_target_needs_class_folders(
    tmp_path: Path, image_folder: Path, capsys: pytest.CaptureFixture
) -> None:
    source = tmp_path / "flat"
    source.mkdir()
    (source / "a.png").write_bytes((image_folder / "0" / "img0.png").read_bytes())
    arguments = _arguments(source, tmp_path / "maps", "--target", "folder")
    assert main(arguments) == 1
    assert "expected every image in a class folder" in capsys.readouterr().err


def test_find_images_of_a_voc_directory_uses_jpegimages_only(tmp_path: Path) -> None:
    for folder in ("JPEGImages", "Annotations", "SegmentationClass"):
        (tmp_path / folder).mkdir()
    pixels = np.zeros((8, 8, 3), dtype=np.uint8)
    for name in ("2007_000002.jpg", "2007_000001.jpg"):
        Image.fromarray(pixels).save(tmp_path / "JPEGImages" / name)
    Image.fromarray(pixels).save(tmp_path / "SegmentationClass" / "2007_000001.png")
    (tmp_path / "Annotations" / "2007_000001.xml").write_text("<annotation/>")
    assert find_images(tmp_path) == [
        "JPEGImages/2007_000001.jpg",
        "JPEGImages/2007_000002.jpg",
    ]


def test_find_images_refuses_a_folder_without_images(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("no images here")
    with pytest.raises(ValueError, match="source: no images"):
        find_images(tmp_path)


def test_reader_finds_maps_by_file_path_and_names_missing_ones(
    image_folder: Path, tmp_path: Path, expected: dict
) -> None:
    out = tmp_path / "maps"
    assert main(_arguments(image_folder, out, "--workers", "0", "--no-progress")) == 0
    maps = io.open_maps(out)
    absolute = image_folder / "1" / "img2.png"
    assert absolute in maps
    torch.testing.assert_close(maps[absolute], maps["1/img2.png"])
    _assert_same_map(maps[str(absolute)], expected["1/img2.png"][1])
    with pytest.raises(KeyError, match="no map for '1/missing.png'"):
        maps["1/missing.png"]
    (out / io.MERGED_INDEX_NAME).unlink()
    with pytest.raises(ValueError, match="run has not finished"):
        io.open_maps(out)


def test_another_source_with_the_same_names_is_refused_unless_overwrite(
    image_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "maps"
    assert main(_arguments(image_folder, out, "--workers", "0")) == 0
    other = tmp_path / "other-images"
    _write_images(other, seed=1)  # the same keys, other pixels
    capsys.readouterr()
    assert main(_arguments(other, out, "--workers", "0")) == 1
    error = capsys.readouterr().err
    assert f"source: {str(image_folder.resolve())!r} there" in error
    assert "--overwrite" in error

    assert main(_arguments(other, out, "--workers", "0", "--overwrite")) == 0
    _assert_complete_and_correct(out, _direct_maps(other))
    assert io.open_maps(out).source == other.resolve()


def test_a_changed_image_file_is_explained_again(
    image_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    source = tmp_path / "images"
    shutil.copytree(image_folder, source)
    out = tmp_path / "maps"
    assert main(_arguments(source, out, "--workers", "0")) == 0
    changed = source / "1" / "img2.png"
    pixels = np.random.default_rng(2).integers(0, 256, (30, 20, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(changed)
    (source / "2" / "img0.png").unlink()
    capsys.readouterr()

    assert main(_arguments(source, out, "--workers", "0")) == 0
    assert "explained 1 image(s)" in capsys.readouterr().out
    # The old rows stay in their shards, but no index lists them.
    _assert_maps_correct(out, _direct_maps(source))
    assert "2/img0.png" not in io.open_maps(out)  # a vanished file's map goes too


def test_a_run_on_a_folder_another_run_writes_is_refused_and_deletes_nothing(
    image_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "maps"
    assert main(_arguments(image_folder, out, "--workers", "0")) == 0
    # What a concurrent run has written before its index lists it.
    newest = out / io.SHARD_FOLDER / "rank0-00099.npz"
    newest.write_bytes(b"being written")
    capsys.readouterr()
    with open(out / ".explain-dataset.lock", "a") as lock:  # the documented lock
        fcntl.flock(lock, fcntl.LOCK_EX)  # held as the concurrent run holds it
        assert main(_arguments(image_folder, out, "--workers", "0")) == 1
    assert "being written by another explain-dataset run" in capsys.readouterr().err
    assert newest.read_bytes() == b"being written"
    assert main(_arguments(image_folder, out, "--workers", "0")) == 0  # released


def test_shard_writer_error_is_raised_by_close(tmp_path: Path) -> None:
    writer = io.ShardWriter(tmp_path, 0, {}, tmp_path, shard_size=1)
    # No shards/ folder: the background thread cannot write the first shard.
    writer.add(
        ["a.png"],
        [io.FileStamp(1, 1)],
        torch.zeros(1, 1, 2, 2),
        torch.tensor([[0, 0]]),
        torch.tensor([[1.0, 1.0]]),
    )
    with pytest.raises(FileNotFoundError, match="shards"):
        writer.close()
    assert not (tmp_path / io.rank_index_name(0)).exists()
