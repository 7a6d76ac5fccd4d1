"""``captum-igcam explain-dataset``: one process, torchrun, kill and resume.

A tiny random CNN, importable as ``igcam_tinynet:build`` from a temporary
folder, explains a small generated ImageFolder. Every run's maps are checked
against ``IntegratedLayerGradCam`` called directly on each image.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import stat
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
from captum_igcam.app.settings import MethodSettings
from captum_igcam.cli import main
from captum_igcam.dataset_job import index as io
from captum_igcam.dataset_job.explainer import (
    ImageItem,
    JobOptions,
    explain_dataset,
    find_images,
)
from captum_igcam.dataset_job.index import IndexFormatError
from captum_igcam.dataset_job.maps_io import open_maps
from captum_igcam.dataset_job.shard_writer import ShardWriter

MODEL = "igcam_tinynet:build"
KILL_SWITCH = "IGCAM_TINYNET_KILL_WHEN_EXISTS"
INTERRUPT_SWITCH = "IGCAM_TINYNET_INTERRUPT_WHEN_MISSING"
STEPS = 3
CLASSES = ("0", "1", "2")
IMAGES_PER_CLASS = 3

MODEL_SOURCE = f'''
import json
import os
import shutil
import signal

import torch
from torch import nn


class TinyNet(nn.Sequential):
    """Sequential CNN that kills its own process once a given index lists images,
    or raises KeyboardInterrupt (as Ctrl-C would) once another is missing."""

    def forward(self, x):
        trigger = os.environ.get("{KILL_SWITCH}")
        if trigger and os.path.exists(trigger):
            with open(trigger) as index:  # replaced atomically: always whole
                if json.load(index).get("images"):
                    os.kill(os.getpid(), signal.SIGKILL)
        missing = os.environ.get("{INTERRUPT_SWITCH}")
        if missing and not os.path.exists(missing):
            raise KeyboardInterrupt
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


@pytest.fixture(scope="module")
def finished_run(
    image_folder: Path, model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The output folder of one finished run on ``image_folder``."""
    out = tmp_path_factory.mktemp("finished") / "maps"
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(model_dir))
        arguments = _arguments(image_folder, out, "--workers", "0", "--no-progress")
        assert main(arguments) == 0
    return out


@pytest.fixture
def finished_out(finished_run: Path, tmp_path: Path) -> Path:
    """A copy of :func:`finished_run`'s folder, for one test to change."""
    return Path(shutil.copytree(finished_run, tmp_path / "maps", symlinks=True))


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
    maps = open_maps(out)
    assert sorted(maps) == sorted(expected)
    for key, (predicted, direct) in expected.items():
        record = maps.record(key)
        assert record.predicted == record.target == predicted
        _assert_same_map(maps[key], direct)
        assert 0 < record.probability <= 1


def _assert_complete_and_correct(
    out: Path, expected: dict[str, tuple[int, torch.Tensor]]
) -> None:
    """Every image once, in exactly one shard row, with the direct map, and
    no shard file in ``shards/`` that the index does not list."""
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
            for path in (out / io.SHARD_FOLDER).glob(f"*-rank{rank}-*.npz")
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
    # The model kills the process at its first forward pass after an index
    # lists the first shard's images, i.e. in the middle of the second shard.
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
    # Files in shards/ that no index records (what a kill in the middle of
    # writing a temporary file leaves, or the user's) are not the job's to
    # delete: they stay, and are never read.
    strangers = [
        out / io.SHARD_FOLDER / name for name in ("x-rank0-00007.npz", ".x.tmp")
    ]
    for stranger in strangers:
        stranger.write_bytes(b"partial")

    assert main(_arguments(image_folder, out, "--workers", "0")) == 0
    report = capsys.readouterr().out
    assert "explained 7 image(s) " in report
    assert "skipped 2 already" in report
    _assert_maps_correct(out, expected)
    assert all(stranger.read_bytes() == b"partial" for stranger in strangers)


def test_a_shard_left_complete_but_unlisted_by_a_kill_is_deleted(
    finished_out: Path, image_folder: Path, tmp_path: Path, expected: dict
) -> None:
    out = finished_out
    # What a kill between writing a shard and listing it leaves: the shard,
    # recorded (name, size, SHA-256) under "pending" in its rank's index.
    path = out / io.rank_index_name(0)
    index = io.read_index(path)
    name, entry = next(iter(index["shards"].items()))
    orphan = out / name.replace("-00000", "-00077")
    orphan.write_bytes((out / name).read_bytes())
    changed = out / io.SHARD_FOLDER / "x-rank0-00078.npz"  # recorded, then changed
    changed.write_bytes((out / name).read_bytes() + b"!")
    index["pending"] = {
        orphan.relative_to(out).as_posix(): entry,
        changed.relative_to(out).as_posix(): entry,
    }
    path.write_text(json.dumps(index))

    assert main(_arguments(image_folder, out, "--workers", "0")) == 0
    assert not orphan.exists()  # proven the job's by name, size and SHA-256
    assert changed.exists()  # not what the job wrote under that name
    assert io.read_index(path)["pending"] == {}
    _assert_maps_correct(out, expected)


def test_rerun_skips_written_images_and_rewrites_no_shard(
    finished_out: Path,
    image_folder: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
) -> None:
    out = finished_out
    shards = {p: p.stat().st_mtime_ns for p in (out / io.SHARD_FOLDER).iterdir()}
    capsys.readouterr()
    assert main(_arguments(image_folder, out, "--workers", "0")) == 0
    assert "explained 0 image(s)" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in (out / io.SHARD_FOLDER).iterdir()} == (
        shards
    )


def test_changed_settings_are_refused_unless_overwrite(
    finished_out: Path,
    image_folder: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
) -> None:
    out = finished_out
    capsys.readouterr()
    changed = _arguments(
        image_folder, out, "--workers", "0", "--method", "riemann_left"
    )
    assert main(changed) == 1
    error = capsys.readouterr().err
    assert "method: 'gausslegendre' there, 'riemann_left' now" in error
    assert "--overwrite" in error
    assert open_maps(out).settings["method"] == "gausslegendre"

    assert main([*changed, "--overwrite"]) == 0
    maps = open_maps(out)
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
    maps = open_maps(out)
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
    assert sorted(open_maps(out)) == ["1/img0.png", "2/img1.png"]


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
    maps = open_maps(out)
    absolute = image_folder / "1" / "img2.png"
    assert absolute in maps
    torch.testing.assert_close(maps[absolute], maps["1/img2.png"])
    _assert_same_map(maps[str(absolute)], expected["1/img2.png"][1])
    with pytest.raises(KeyError, match="no map for '1/missing.png'"):
        maps["1/missing.png"]
    (out / io.MERGED_INDEX_NAME).unlink()
    with pytest.raises(ValueError, match="run has not finished"):
        open_maps(out)


def test_another_source_with_the_same_names_is_refused_unless_overwrite(
    finished_out: Path,
    image_folder: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
) -> None:
    out = finished_out
    other = tmp_path / "other-images"
    _write_images(other, seed=1)  # the same keys, other pixels
    capsys.readouterr()
    assert main(_arguments(other, out, "--workers", "0")) == 1
    error = capsys.readouterr().err
    assert f"source: {str(image_folder.resolve())!r} there" in error
    assert "--overwrite" in error

    assert main(_arguments(other, out, "--workers", "0", "--overwrite")) == 0
    _assert_complete_and_correct(out, _direct_maps(other))
    assert open_maps(out).source == other.resolve()


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
    assert "2/img0.png" not in open_maps(out)  # a vanished file's map goes too


def test_a_run_on_a_folder_another_run_writes_is_refused_and_deletes_nothing(
    finished_out: Path,
    image_folder: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
) -> None:
    out = finished_out
    before = _snapshot(out)
    capsys.readouterr()
    # Another process holds the documented lock, as a concurrent run does.
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(out / io.LOCK_NAME)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline() == "locked\n"
        assert main(_arguments(image_folder, out, "--workers", "0")) == 1
    finally:
        holder.communicate("")  # closing stdin ends it, releasing the lock
    assert "being written by another explain-dataset run" in capsys.readouterr().err
    assert _snapshot(out) == before
    assert main(_arguments(image_folder, out, "--workers", "0")) == 0  # released


HOLD_LOCK = """
import fcntl, os, sys
descriptor = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
fcntl.lockf(descriptor, fcntl.LOCK_EX)
print("locked", flush=True)
sys.stdin.read()
"""


def test_a_second_run_in_the_same_process_is_refused(
    image_folder: Path, tmp_path: Path
) -> None:
    from captum_igcam.dataset_job.output_folder import OutputLockedError, lock_output

    out = tmp_path / "maps"
    out.mkdir()
    with lock_output(out):
        with pytest.raises(OutputLockedError, match="being written by another"):
            with lock_output(out):
                pass
        with pytest.raises(OutputLockedError):  # the first lock is still held
            with lock_output(out):
                pass
    with lock_output(out):  # released when the block ended
        pass


def test_restart_right_after_kill_9_of_a_run_with_workers(
    image_folder: Path, tmp_path: Path, model_dir: Path, expected: dict
) -> None:
    out = tmp_path / "maps"
    rank_index = out / io.rank_index_name(0)
    # kill -9 of the main process while its two DataLoader workers (forked
    # after the lock was taken) are alive: they outlive it by seconds. Only
    # the main process is waited for (not the pipes the workers also hold).
    with open(tmp_path / "stderr.txt", "w") as stderr:
        killed = subprocess.Popen(
            [sys.executable, "-m", "captum_igcam"]
            + _arguments(image_folder, out, "--workers", "2", "--no-progress"),
            env=_environment(model_dir, **{KILL_SWITCH: str(rank_index)}),
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
        assert killed.wait() == -signal.SIGKILL
    assert main(_arguments(image_folder, out, "--workers", "0")) == 0
    _assert_complete_and_correct(out, expected)


_DIGEST = "0" * 64


def _records(probability: float) -> object:
    """A classifier record of class 0 with ``probability``, as the writer takes it."""
    record = {
        "predicted": 0,
        "probability": probability,
        "target": 0,
        "target_probability": probability,
    }
    return lambda: [record]


def test_shard_writer_error_is_raised_by_close(tmp_path: Path) -> None:
    writer = ShardWriter(tmp_path, 0, "run", {}, tmp_path, shard_size=1)
    # No shards/ folder: the background thread cannot write the first shard.
    writer.add(["a.png"], [_DIGEST], torch.zeros(1, 1, 2, 2), _records(1.0))
    with pytest.raises(FileNotFoundError, match="shards"):
        writer.close()
    # The index records the shard it was about to write, and nothing else.
    index = io.read_index(tmp_path / io.rank_index_name(0))
    assert (list(index["pending"]), index["images"]) == (
        ["shards/run-rank0-00000.npz"],
        {},
    )


def test_non_finite_logits_are_refused_before_any_index_lists_them(
    tmp_path: Path,
) -> None:
    (tmp_path / "shards").mkdir()
    writer = ShardWriter(tmp_path, 0, "run", {}, tmp_path, shard_size=1)
    writer.add(["a.png"], [_DIGEST], torch.zeros(1, 1, 2, 2), _records(float("nan")))
    with pytest.raises(ValueError, match="model: expected finite outputs.*'a.png'"):
        writer.close()
    assert not (tmp_path / io.rank_index_name(0)).exists()


def _snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (links not followed) -> its bytes."""
    return {
        path.relative_to(folder).as_posix(): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file() and not path.is_symlink()
    }


# Output ownership: the job deletes only what an index proves it wrote.


def test_out_equal_to_source_is_refused_and_deletes_nothing(
    image_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    source = tmp_path / "photos"
    shutil.copytree(image_folder, source)
    (source / "shards").mkdir()  # the user's own folder of that name
    shutil.copy(image_folder / "0" / "img0.png", source / "shards" / "mine.png")
    before = _snapshot(source)
    assert main(_arguments(source, source, "--workers", "0")) == 1
    assert "is the source folder" in capsys.readouterr().err
    assert _snapshot(source) == before


def test_out_inside_source_at_depth_is_never_scanned(
    image_folder: Path, tmp_path: Path, expected: dict
) -> None:
    source = tmp_path / "photos"
    shutil.copytree(image_folder, source)
    out = source / "2" / "deeper" / "maps"
    (out / "shards").mkdir(parents=True)
    mine = out / "shards" / "preview.png"  # an image in the output folder
    shutil.copy(image_folder / "1" / "img1.png", mine)
    for _ in range(2):  # the second run resumes, and again skips the folder
        assert main(_arguments(source, out, "--workers", "0")) == 0
        assert sorted(open_maps(out)) == sorted(expected)
    assert mine.read_bytes() == (image_folder / "1" / "img1.png").read_bytes()


def test_out_inside_source_under_another_name_is_never_scanned(
    image_folder: Path, tmp_path: Path, expected: dict
) -> None:
    source = tmp_path / "photos"
    shutil.copytree(image_folder, source)
    (source / "maps").mkdir()
    shutil.copy(image_folder / "1" / "img1.png", source / "maps" / "preview.png")
    alias = tmp_path / "alias"  # --out names the folder through a link
    alias.symlink_to(source / "maps")
    assert main(_arguments(source, alias, "--workers", "0")) == 0
    assert sorted(open_maps(alias)) == sorted(expected)


def test_a_linked_shards_folder_keeps_everything_the_job_did_not_write(
    image_folder: Path, tmp_path: Path, expected: dict
) -> None:
    disk = tmp_path / "bigger-disk"
    (disk / "a-folder").mkdir(parents=True)
    (disk / "unrelated.npz").write_bytes(b"someone else's")
    (disk / "a-folder" / "notes.txt").write_text("keep")
    out = tmp_path / "maps"
    out.mkdir()
    (out / io.SHARD_FOLDER).symlink_to(disk)
    before = _snapshot(disk)
    assert main(_arguments(image_folder, out, "--workers", "0")) == 0
    _assert_maps_correct(out, expected)
    after = _snapshot(disk)
    assert {name: after[name] for name in before} == before
    changed = _arguments(image_folder, out, "--workers", "0", "--steps", "2")
    assert main([*changed, "--overwrite"]) == 0  # deletes its own shards only
    after = _snapshot(disk)
    assert {name: after[name] for name in before} == before
    assert len(after) == len(before) + 5


def test_overwrite_deletes_only_files_proven_to_be_the_jobs(
    finished_out: Path,
    image_folder: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
) -> None:
    out = finished_out
    first, second, *rest = sorted((out / io.SHARD_FOLDER).glob("*.npz"))
    first.write_bytes(first.read_bytes() + b"edited")  # no longer the job's
    second.unlink()
    second.symlink_to(tmp_path / "elsewhere")  # a link under a listed name
    (out / io.SHARD_FOLDER / "mine.npz").write_bytes(b"user data")
    capsys.readouterr()
    changed = _arguments(image_folder, out, "--workers", "0", "--steps", "2")
    assert main([*changed, "--overwrite"]) == 0
    assert first.read_bytes().endswith(b"edited")
    assert second.is_symlink()
    assert (out / io.SHARD_FOLDER / "mine.npz").read_bytes() == b"user data"
    assert not any(path.exists() for path in rest)  # the job's, deleted
    assert "left" in capsys.readouterr().err


def test_a_user_file_named_like_the_index_is_refused_not_replaced(
    image_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "site"
    out.mkdir()
    (out / "index.json").write_text('{"title": "my web page"}')
    assert main(_arguments(image_folder, out, "--workers", "0")) == 1
    error = capsys.readouterr().err
    assert f"{str(out / 'index.json')!r}" in error and "field format" in error
    assert (out / "index.json").read_text() == '{"title": "my web page"}'


def test_an_older_format_folder_is_refused_with_what_to_do(
    image_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "maps"
    out.mkdir()
    old = {"format": "captum-igcam-maps/2", "settings": {}, "source": "/", "images": {}}
    (out / io.rank_index_name(0)).write_text(json.dumps(old))
    assert main(_arguments(image_folder, out, "--workers", "0", "--overwrite")) == 1
    error = capsys.readouterr().err
    assert "older format 'captum-igcam-maps/2'" in error
    assert "new folder" in error


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        (["0/img0.png", "0/img0.png"], "the key '0/img0.png' appears twice"),
        (["0/../../secret.png"], "without '..', got '0/../../secret.png'"),
        (["/etc/img.png"], "relative to the source folder"),
    ],
)
def test_keys_that_are_repeated_or_leave_the_source_are_refused(
    image_folder: Path, tmp_path: Path, keys: list[str], message: str
) -> None:
    bundle = models.load_model(MODEL)
    items = [ImageItem(key) for key in keys]
    with pytest.raises(ValueError, match=f"items: .*{re.escape(message)}"):
        explain_dataset(bundle, image_folder, tmp_path / "maps", items=items)
    assert not (tmp_path / "maps").exists()


def test_out_that_is_a_file_is_refused(
    image_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "photo.png"
    out.write_bytes(b"a user's file")
    assert main(_arguments(image_folder, out)) == 1
    assert f"--out: cannot write to output folder '{out}'" in capsys.readouterr().err
    assert out.read_bytes() == b"a user's file"


# Never a map for another image.


def test_a_resumed_run_never_rewrites_a_shard_an_index_may_list(
    image_folder: Path, tmp_path: Path, expected: dict
) -> None:
    source = tmp_path / "images"
    shutil.copytree(image_folder, source)
    out = tmp_path / "maps"
    assert main(_arguments(source, out, "--workers", "0")) == 0
    written = _snapshot(out / io.SHARD_FOLDER)
    # The last shard holds 2/img2.png alone; changing it and 0/img0.png
    # makes the resumed run write a new shard of both.
    for key in ("0/img0.png", "2/img2.png"):
        shutil.copy(image_folder / "1" / "img0.png", source / key)
    assert main(_arguments(source, out, "--workers", "0")) == 0
    now = _snapshot(out / io.SHARD_FOLDER)
    assert all(now.get(name, data) == data for name, data in written.items())
    _assert_maps_correct(out, _direct_maps(source))


def test_an_interrupted_resumed_run_leaves_no_stale_index_to_read(
    image_folder: Path,
    tmp_path: Path,
    expected: dict,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    source = tmp_path / "images"
    shutil.copytree(image_folder, source)
    out = tmp_path / "maps"
    assert main(_arguments(source, out, "--workers", "0")) == 0
    shutil.copy(image_folder / "1" / "img0.png", source / "2" / "img2.png")
    # Interrupted as soon as it explains: once index.json is gone.
    monkeypatch.setenv(INTERRUPT_SWITCH, str(out / io.MERGED_INDEX_NAME))
    assert main(_arguments(source, out, "--workers", "0")) == 130  # as Ctrl-C
    # index.json listed the old map of 2/img2.png: it must not be served.
    with pytest.raises(ValueError, match="run has not finished"):
        open_maps(out)
    monkeypatch.delenv(INTERRUPT_SWITCH)
    assert main(_arguments(source, out, "--workers", "0")) == 0
    _assert_maps_correct(out, _direct_maps(source))


def test_the_reader_checks_the_key_stored_in_the_shard(
    finished_out: Path, image_folder: Path, tmp_path: Path
) -> None:
    out = finished_out
    path = out / io.MERGED_INDEX_NAME
    index = json.loads(path.read_text())
    images = index["images"]  # swap where two images' maps are said to be
    for field in ("shard", "row"):
        images["0/img0.png"][field], images["2/img2.png"][field] = (
            images["2/img2.png"][field],
            images["0/img0.png"][field],
        )
    path.write_text(json.dumps(index))
    maps = open_maps(out)
    shard = images["0/img0.png"]["shard"]
    with pytest.raises(IndexFormatError, match=f"{shard}.*holds the map of '2/img2"):
        maps["0/img0.png"]


def test_a_truncated_shard_is_explained_again_on_resume(
    finished_out: Path,
    image_folder: Path,
    tmp_path: Path,
    expected: dict,
    capsys: pytest.CaptureFixture,
) -> None:
    out = finished_out
    shard = sorted((out / io.SHARD_FOLDER).glob("*.npz"))[1]
    shard.write_bytes(shard.read_bytes()[:100])
    with pytest.raises(IndexFormatError, match=f"shard: '{shard}' is missing or"):
        [open_maps(out)[key] for key in expected]
    capsys.readouterr()
    assert main(_arguments(image_folder, out, "--workers", "0")) == 0
    captured = capsys.readouterr()
    assert "explained 2 image(s)" in captured.out
    assert f"'{shard}' is damaged or missing" in captured.err
    _assert_maps_correct(out, expected)


def test_a_shard_that_is_not_an_npz_file_is_named(
    finished_out: Path, image_folder: Path, tmp_path: Path
) -> None:
    out = finished_out
    shard = sorted((out / io.SHARD_FOLDER).glob("*.npz"))[0]
    garbage = b"x" * shard.stat().st_size
    shard.write_bytes(garbage)
    path = out / io.MERGED_INDEX_NAME
    index = json.loads(path.read_text())  # an index that agrees with the garbage
    name = shard.relative_to(out).as_posix()
    index["shards"][name].update(io.content_entry(garbage))
    path.write_text(json.dumps(index))
    key = next(k for k, r in index["images"].items() if r["shard"] == name)
    with pytest.raises(IndexFormatError, match=f"shard: '{shard}' is not a shard"):
        open_maps(out)[key]


def _edit_source_away(index: dict) -> None:
    del index["source"]


def _edit_row_text(index: dict) -> None:
    index["images"]["1/img1.png"]["row"] = "0"


def _edit_shard_outside(index: dict) -> None:
    index["shards"]["shards/../../photo.npz"] = index["shards"].popitem()[1]


def _edit_bool_target(index: dict) -> None:
    index["images"]["0/img0.png"]["target"] = True


def _edit_extra_field(index: dict) -> None:
    index["images"]["0/img0.png"]["note"] = "checked by hand"


def _edit_digest_away(index: dict) -> None:
    del index["images"]["0/img0.png"]["file_sha256"]


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (_edit_source_away, "field source"),
        (_edit_row_text, r"field images\['1/img1.png'\].row"),
        (_edit_shard_outside, r"field shards\['shards/../../photo.npz'\]"),
        (_edit_bool_target, r"field images\['0/img0.png'\].target"),
        (_edit_extra_field, r"field images\['0/img0.png'\].note: expected no such"),
        (_edit_digest_away, r"field images\['0/img0.png'\].file_sha256: expected a"),
        (b'{"format": "\xff\xfe"}', "not valid JSON"),
        ("[" * 100_000 + "]" * 100_000, "not valid JSON"),
        ('{"format": 1, "format": 2}', "'format' appears twice"),
        ("", "not valid JSON"),
    ],
)
def test_a_hand_edited_index_names_the_file_and_the_field(
    finished_out: Path,
    image_folder: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
    edit: object,
    field: str,
) -> None:
    out = finished_out
    for path in (out / io.MERGED_INDEX_NAME, out / io.rank_index_name(0)):
        if callable(edit):
            index = json.loads(path.read_text())
            edit(index)
            path.write_text(json.dumps(index))
        elif isinstance(edit, bytes):
            path.write_bytes(edit)
        else:
            path.write_text(edit)
    with pytest.raises(IndexFormatError, match=f"index: '{out}/index.json'.*{field}"):
        open_maps(out)
    capsys.readouterr()
    assert main(_arguments(image_folder, out, "--workers", "0")) == 1
    error = _one_error_line(capsys.readouterr().err)
    assert re.search(f"index: '{out}/index.json'.*{field}", error)


@pytest.mark.parametrize(
    "name", [io.MERGED_INDEX_NAME, io.rank_index_name(0), io.LOCK_NAME]
)
def test_a_fifo_in_place_of_a_file_of_the_folder_is_refused_not_waited_on(
    finished_out: Path,
    image_folder: Path,
    capsys: pytest.CaptureFixture,
    name: str,
) -> None:
    """A FIFO opened for reading waits for a writer forever: the job and the
    reader check the file's type on a descriptor opened without blocking."""
    out = finished_out
    (out / name).unlink()
    os.mkfifo(out / name)
    if name == io.MERGED_INDEX_NAME:
        with pytest.raises(IndexFormatError, match="not a regular file"):
            open_maps(out)
    capsys.readouterr()
    assert main(_arguments(image_folder, out, "--workers", "0")) == 1
    error = _one_error_line(capsys.readouterr().err)
    assert str(out / name) in error and "not a regular file" in error
    assert stat.S_ISFIFO(os.lstat(out / name).st_mode)  # left as it is


def test_a_key_listed_by_two_rank_indexes_is_refused_before_any_change(
    finished_out: Path,
    image_folder: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
) -> None:
    out = finished_out
    index = io.read_index(out / io.rank_index_name(0))
    (out / io.rank_index_name(1)).write_text(json.dumps(index))  # a copy
    before = _snapshot(out)
    capsys.readouterr()
    assert main(_arguments(image_folder, out, "--workers", "0")) == 1
    assert "both list" in _one_error_line(capsys.readouterr().err)
    assert _snapshot(out) == before


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("captum-igcam")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_the_api_builds_through_the_registry_and_settings(
    image_folder: Path, tmp_path: Path, expected: dict
) -> None:
    bundle = models.load_model(MODEL)
    settings = MethodSettings(model=MODEL, n_steps=STEPS, internal_batch_size=5)
    summary = explain_dataset(
        bundle,
        image_folder,
        tmp_path / "maps",
        settings,
        options=JobOptions(images_per_batch=4, shard_size=3, progress=False),
    )
    assert (summary.explained, summary.skipped) == (9, 0)
    _assert_complete_and_correct(tmp_path / "maps", expected)
    stored = open_maps(tmp_path / "maps").settings
    assert (stored["attribution"], stored["n_steps"], stored["baseline"]) == (
        "igcam",
        STEPS,
        "black",
    )
