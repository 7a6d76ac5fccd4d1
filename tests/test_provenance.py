"""Every map bound to the exact bytes of the image it was computed from.

Hostile inputs a user can make: a photo replaced by another of the same
name, size and modification time (``cp -p``, ``rsync -a``), two source
folders that share file names, a folder explained again from another source
with ``--overwrite``, a photo removed after the run. The job, the reader and
the report must compare content digests, never names or file stamps.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import TinyCNN, sha256_of
from PIL import Image
from report_data import read_report_data

from captum_igcam.app.images import read_image
from captum_igcam.app.model_bundle import ModelBundle
from captum_igcam.app.settings import MethodSettings
from captum_igcam.cli import main
from captum_igcam.dataset_job import open_maps
from captum_igcam.dataset_job.explainer import JobOptions, explain_dataset
from captum_igcam.report import thumbnails

NAMES = ("a.png", "b.png", "c.png")
SHAPE = (40, 60, 3)


def _bundle(name: str = "tiny") -> ModelBundle:
    torch.manual_seed(0)
    return ModelBundle(
        name,
        TinyCNN(classes=5).eval(),
        "conv2",
        32,
        (0.0, 0.0, 0.0),
        (1.0, 1.0, 1.0),
        [f"class {i}" for i in range(5)],
    )


def _save(path: Path, seed: int) -> None:
    """Random pixels as an uncompressed PNG: every such file has the same size."""
    pixels = np.random.default_rng(seed).integers(0, 256, SHAPE, dtype=np.uint8)
    Image.fromarray(pixels).save(path, compress_level=0)


def _folder(root: Path, seed: int) -> Path:
    root.mkdir(parents=True)
    for offset, name in enumerate(NAMES):
        _save(root / name, seed + offset)
    return root


def _replace_keeping_stamp(path: Path, replacement: Path) -> None:
    """Put ``replacement``'s bytes at ``path`` with ``path``'s size and times."""
    status = os.stat(path)
    shutil.copy2(replacement, path)
    os.utime(path, ns=(status.st_atime_ns, status.st_mtime_ns))
    after = os.stat(path)
    assert (after.st_size, after.st_mtime_ns) == (status.st_size, status.st_mtime_ns)


def _explain(source: Path, out: Path, **options: object) -> object:
    return explain_dataset(
        _bundle(),
        source,
        out,
        MethodSettings(n_steps=3),
        options=JobOptions(progress=False, **options),
    )


def _report(*folders: Path, out: Path) -> int:
    return main(["report", *map(str, folders), "--out", str(out), "--no-progress"])


def test_resume_explains_again_a_photo_replaced_with_the_same_size_and_time(
    tmp_path: Path,
) -> None:
    source = _folder(tmp_path / "photos", seed=0)
    out = tmp_path / "maps"
    assert _explain(source, out).explained == 3
    before = open_maps(out)["b.png"]
    _save(tmp_path / "other.png", seed=10)
    _replace_keeping_stamp(source / "b.png", tmp_path / "other.png")

    summary = _explain(source, out)
    assert (summary.explained, summary.skipped) == (1, 2)
    maps = open_maps(out)
    assert maps.record("b.png").file_sha256 == sha256_of(source / "b.png")
    fresh = tmp_path / "fresh"
    _explain(source, fresh)
    torch.testing.assert_close(maps["b.png"], open_maps(fresh)["b.png"])
    assert not torch.equal(maps["b.png"], before)
    assert all(maps.source_matches(name) for name in NAMES)


def _explained_then_changed(tmp_path: Path) -> tuple[Path, Path]:
    """Photos a, b, c explained; then a replaced by other bytes of the same
    size and time, c removed. Returns (source folder, maps folder)."""
    source = _folder(tmp_path / "photos", seed=0)
    out = tmp_path / "maps"
    _explain(source, out)
    _save(tmp_path / "other.png", seed=10)
    _replace_keeping_stamp(source / "a.png", tmp_path / "other.png")
    (source / "c.png").unlink()
    return source, out


def test_the_reader_says_whether_a_photo_still_has_its_maps_bytes(
    tmp_path: Path,
) -> None:
    source, out = _explained_then_changed(tmp_path)
    maps = open_maps(out)
    assert [maps.source_matches(name) for name in NAMES] == [False, True, False]
    assert maps.digests["b.png"] == read_image(source / "b.png").sha256


def test_report_marks_a_photo_replaced_or_removed_after_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    source, out = _explained_then_changed(tmp_path)
    capsys.readouterr()
    assert _report(out, out=tmp_path / "report") == 0
    assert "2 image file(s) changed or gone" in capsys.readouterr().err
    data = read_report_data(tmp_path / "report")
    column = {name: i for i, name in enumerate(data["columns"])}
    rows = {row[column["key"]]: row for row in data["rows"]}
    assert [rows[name][column["source"]] for name in NAMES] == [
        "changed",
        "same",
        "missing",
    ]
    for name in ("a.png", "c.png"):  # nothing drawn from other bytes
        assert rows[name][column["photo"]] is None
        assert rows[name][column["overlays"]] == [None]
    b_digest = sha256_of(source / "b.png")
    assert rows["b.png"][column["photo"]] == f"thumbs/photo-{b_digest}.jpg"
    assert rows["b.png"][column["overlays"]][0] is not None
    pictures = sorted(path.name for path in (tmp_path / "report/thumbs").iterdir())
    assert pictures == sorted(
        [f"photo-{b_digest}.jpg", Path(rows["b.png"][column["overlays"]][0]).name]
    )


def test_a_folder_explained_again_from_another_source_shows_the_new_photos(
    tmp_path: Path,
) -> None:
    """explain-dataset SRC_A, report, explain-dataset SRC_B --overwrite with
    files of the same names, sizes and times, report: only SRC_B's pictures."""
    source_a = _folder(tmp_path / "a", seed=0)
    source_b = _folder(tmp_path / "b", seed=20)
    for name in NAMES:
        status = os.stat(source_a / name)
        os.utime(source_b / name, ns=(status.st_atime_ns, status.st_mtime_ns))
        assert os.stat(source_b / name).st_size == status.st_size
    out, report = tmp_path / "maps", tmp_path / "maps" / "report"
    _explain(source_a, out)
    assert _report(out, out=report) == 0
    first = read_report_data(report)
    _explain(source_b, out, overwrite=True)
    assert _report(out, out=report) == 0
    data = read_report_data(report)
    column = {name: i for i, name in enumerate(data["columns"])}
    for old, row in zip(first["rows"], data["rows"]):
        name = row[column["key"]]
        digest = sha256_of(source_b / name)
        assert row[column["source"]] == "same"
        assert row[column["photo"]] == f"thumbs/photo-{digest}.jpg"
        assert row[column["photo"]] != old[column["photo"]]
        assert row[column["overlays"]] != old[column["overlays"]]
        with Image.open(report / row[column["photo"]]) as shown:
            expected = thumbnails.resized(read_image(source_b / name).image)
            difference = np.abs(
                np.asarray(shown, float) - np.asarray(expected, float)
            ).mean()
            wrong = thumbnails.resized(read_image(source_a / name).image)
            other = np.abs(np.asarray(shown, float) - np.asarray(wrong, float)).mean()
        assert difference < other / 2, (difference, other)  # JPEG loss vs another photo


def test_report_of_folders_from_different_sources_sharing_names_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    source_a = _folder(tmp_path / "a", seed=0)
    source_b = _folder(tmp_path / "b", seed=0)
    _save(source_b / "b.png", seed=30)  # one photo differs, by content only
    maps_a, maps_b = tmp_path / "maps-a", tmp_path / "maps-b"
    _explain(source_a, maps_a)
    _explain(source_b, maps_b)
    capsys.readouterr()
    assert _report(maps_a, maps_b, out=tmp_path / "report") == 1
    error = capsys.readouterr().err
    assert "'b.png' is not the same image" in error
    assert str(maps_a) in error and str(maps_b) in error
    assert not (tmp_path / "report").exists()
    # The same bytes under the same names in two source folders compare.
    shutil.copy2(source_a / "b.png", source_b / "b.png")
    _explain(source_b, tmp_path / "maps-c")
    assert _report(maps_a, tmp_path / "maps-c", out=tmp_path / "report") == 0


def test_a_fifo_in_place_of_an_explained_photo_is_explained_again_not_waited_on(
    tmp_path: Path,
) -> None:
    source = _folder(tmp_path / "photos", seed=0)
    out = tmp_path / "maps"
    _explain(source, out)
    (source / "a.png").unlink()
    os.mkfifo(source / "a.png")
    summary = _explain(source, out)  # the record is dropped; no image to read
    assert (summary.explained, summary.skipped) == (0, 2)
    assert sorted(open_maps(out)) == ["b.png", "c.png"]
    assert not open_maps(out).source_matches("a.png")
