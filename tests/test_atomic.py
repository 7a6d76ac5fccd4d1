"""Tests for captum_igcam.app.safe_files: interrupted writes leave no partial files."""

from __future__ import annotations

import errno
import json
import os
import stat

import numpy as np
import pytest
from matplotlib.figure import Figure
from PIL import Image

from captum_igcam.app import safe_files


def test_writes_replace_existing_files_when_asked(tmp_path):
    path = tmp_path / "summary.json"
    path.write_text("old")
    safe_files.atomic_write_json(path, {"label": "Égyptian cat"}, replace=True)
    assert json.loads(path.read_text(encoding="utf-8")) == {"label": "Égyptian cat"}
    safe_files.atomic_save_npy(tmp_path / "map.npy", np.arange(6.0).reshape(2, 3))
    np.testing.assert_array_equal(
        np.load(tmp_path / "map.npy"), np.arange(6.0).reshape(2, 3)
    )
    safe_files.atomic_write_bytes(tmp_path / "raw.bin", b"\x00\x01")
    assert (tmp_path / "raw.bin").read_bytes() == b"\x00\x01"
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "map.npy",
        "raw.bin",
        "summary.json",
    ]


def test_interrupted_write_keeps_previous_file(tmp_path):
    path = tmp_path / "figure.png"
    path.write_bytes(b"previous")
    with pytest.raises(KeyboardInterrupt):
        with safe_files.atomic_open(path, replace=True) as handle:
            handle.write(b"half a png")
            raise KeyboardInterrupt
    assert path.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["figure.png"]


def test_failed_figure_save_leaves_no_file(tmp_path):
    figure = Figure()
    figure.add_subplot().plot([0, 1])
    with pytest.raises(ValueError):
        safe_files.atomic_save_figure(figure, tmp_path / "plot.notaformat")
    assert list(tmp_path.iterdir()) == []
    safe_files.atomic_save_figure(figure, tmp_path / "plot.png", dpi=20)
    assert Image.open(tmp_path / "plot.png").format == "PNG"


@pytest.mark.parametrize(("umask", "expected"), [(0o022, 0o644), (0o027, 0o640)])
def test_files_get_the_permissions_of_open(tmp_path, umask, expected):
    previous = os.umask(umask)
    try:
        safe_files.atomic_write_bytes(tmp_path / "out.bin", b"x")
        with open(tmp_path / "reference.bin", "wb") as handle:
            handle.write(b"x")
    finally:
        os.umask(previous)
    # As for open(): 0o666 less the umask, not mkstemp's owner-only 0o600.
    assert stat.S_IMODE((tmp_path / "out.bin").stat().st_mode) == expected
    assert stat.S_IMODE((tmp_path / "reference.bin").stat().st_mode) == expected


def test_disk_full_names_the_file_and_keeps_the_old_one(tmp_path, monkeypatch):
    path = tmp_path / "map.npy"
    path.write_bytes(b"previous")

    def no_space(descriptor):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(OSError, match="No space left on device") as raised:
        safe_files.atomic_save_npy(path, np.zeros(3), replace=True)
    assert raised.value.errno == errno.ENOSPC
    assert repr(str(path)) in str(raised.value)
    assert path.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["map.npy"]


def test_missing_folder_names_the_file(tmp_path):
    path = tmp_path / "gone" / "summary.json"
    with pytest.raises(FileNotFoundError) as raised:
        safe_files.atomic_write_json(path, {})
    assert repr(str(path)) in str(raised.value)


def test_atomic_open_rejects_other_modes(tmp_path):
    with pytest.raises(ValueError, match="mode: expected 'wb' or 'w'"):
        with safe_files.atomic_open(tmp_path / "x", "a"):
            pass


@pytest.mark.parametrize("kind", ["file", "folder", "dangling link", "link to a file"])
def test_exclusive_create_never_replaces_anything(tmp_path, kind):
    path = tmp_path / "cat.png"
    target = tmp_path / "photo.jpg"
    target.write_bytes(b"the user's photo")
    if kind == "file":
        path.write_bytes(b"the user's cat")
    elif kind == "folder":
        path.mkdir()
    elif kind == "dangling link":
        path.symlink_to(tmp_path / "nowhere")
    else:
        path.symlink_to(target)
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(FileExistsError, match=f"cannot write {str(path)!r}"):
        safe_files.atomic_write_bytes(path, b"a figure")
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no temporary
    assert target.read_bytes() == b"the user's photo"
    assert not (tmp_path / "nowhere").exists()
    if kind == "file":
        assert path.read_bytes() == b"the user's cat"


def test_exclusive_create_without_hard_links_copies_into_a_new_file(
    tmp_path, monkeypatch
):
    def no_links(*args, **kwargs):
        raise OSError(errno.EPERM, os.strerror(errno.EPERM))

    monkeypatch.setattr(os, "link", no_links)
    safe_files.atomic_write_json(tmp_path / "summary.json", {"a": 1})
    assert json.loads((tmp_path / "summary.json").read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]
    with pytest.raises(FileExistsError):
        safe_files.atomic_write_json(tmp_path / "summary.json", {"a": 2})
    assert json.loads((tmp_path / "summary.json").read_text()) == {"a": 1}


def test_json_is_strict_non_finite_numbers_are_null(tmp_path):
    path = tmp_path / "values.json"
    values = {"nan": float("nan"), "inf": [float("inf"), -float("inf")], "one": 1.5}
    safe_files.atomic_write_json(path, values)

    def refuse(token):
        raise ValueError(f"not JSON: {token}")

    text = path.read_text(encoding="utf-8")
    assert json.loads(text, parse_constant=refuse) == {
        "nan": None,
        "inf": [None, None],
        "one": 1.5,
    }
    assert safe_files.strict_json((np.float64("nan"), 2)) == "[\n  null,\n  2\n]\n"


def test_created_folders_are_reported_and_only_empty_ones_removed(tmp_path):
    made = safe_files.ensure_writable_folder(tmp_path / "a" / "b" / "c")
    assert made == [tmp_path / "a", tmp_path / "a" / "b", tmp_path / "a" / "b" / "c"]
    assert safe_files.ensure_writable_folder(tmp_path / "a") == []
    (tmp_path / "a" / "kept.txt").write_text("x")
    safe_files.remove_empty_folders(made)
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["kept.txt"]
