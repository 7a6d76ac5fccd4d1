"""The benchmark's result file: strict JSON, provenance, cost, maps, the reader."""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import io
import json
import math
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_report import TINY_MODEL

from captum_igcam import evaluation
from captum_igcam.cli import main
from captum_igcam.evaluation import results
from captum_igcam.evaluation.results import ResultFileError

METHODS = ("gradcam", "igcam", "ig")


def _no_constants(token: str) -> None:
    raise AssertionError(f"non-strict JSON token {token}")


def strict_load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"), parse_constant=_no_constants)


def run_benchmark(folder: Path, *extra: str) -> tuple[int, Path]:
    """``captum-igcam benchmark`` of a tiny model; its exit code and JSON path."""
    (folder / "igcam_results_tiny.py").write_text(textwrap.dedent(TINY_MODEL))
    out = folder / "bench.json"
    argv = ["benchmark", "--model", "igcam_results_tiny:build", "--steps", "2"]
    argv += ["--curve-steps", "2", "--methods", ",".join(METHODS), "--no-progress"]
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(folder))
        code = main([*argv, "--json", str(out), *extra])
    sys.modules.pop("igcam_results_tiny", None)
    return code, out


@pytest.fixture(scope="module")
def one_image(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The result of ``benchmark --n 1`` (no interval has two values) and its table."""
    folder = tmp_path_factory.mktemp("one")
    capture = io.StringIO()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("sys.stdout", capture)
        code, out = run_benchmark(folder, "--n", "1")
    assert code == 0
    return out, capture.getvalue()


def test_one_image_result_is_strict_json_with_null_intervals(
    one_image: tuple[Path, str],
) -> None:
    path, _ = one_image
    assert "NaN" not in path.read_text() and "Infinity" not in path.read_text()
    result = strict_load(path)
    assert result["format_version"] == results.FORMAT_VERSION == 2
    row = result["methods"]["igcam"]
    assert row["ci95"]["ebpg"] == [None, None]
    assert isinstance(row["ebpg"], float)
    assert results.read_result(path)["methods"].keys() == set(METHODS)


def test_result_records_exact_library_versions(one_image: tuple[Path, str]) -> None:
    versions = strict_load(one_image[0])["versions"]
    for name in ("torch", "captum", "numpy", "captum-igcam"):
        assert versions[name] == importlib.metadata.version(name)
    assert versions["python"] == ".".join(map(str, sys.version_info[:3]))


def test_cost_of_every_method_is_stored_and_printed(
    one_image: tuple[Path, str],
) -> None:
    path, table = one_image
    result = strict_load(path)
    for name in METHODS:
        cost = result["methods"][name]["cost"]
        assert cost["seconds_per_image"] == result["methods"][name]["seconds_per_image"]
        assert cost["seconds_per_image"] > 0
        # Linux: the resident set's peak growth, a number of MiB.
        assert isinstance(cost["peak_memory_mb"], float) and cost["peak_memory_mb"] >= 0
    assert "| s / image | peak memory MiB |" in table
    igcam_row = next(
        line for line in table.splitlines() if line.startswith("| igcam |")
    )
    assert igcam_row.endswith(
        f"| {result['methods']['igcam']['cost']['peak_memory_mb']:.0f} |"
    )


def test_terminal_table_prints_intervals_not_half_widths(
    one_image: tuple[Path, str],
) -> None:
    _, table = one_image
    assert "±" not in table and "+-" not in table


def test_table_interval_is_the_stored_interval(tmp_path: Path, capsys) -> None:
    code, path = run_benchmark(tmp_path, "--n", "3")
    assert code == 0
    table = capsys.readouterr().out
    row = strict_load(path)["methods"]["gradcam"]
    low, high = row["ci95"]["ebpg"]
    assert f"{row['ebpg']:.3f} [{low:.3f}, {high:.3f}]" in table


def test_example_maps_are_bounded_and_shown_in_the_report(
    one_image: tuple[Path, str], tmp_path: Path
) -> None:
    path, _ = one_image
    result = strict_load(path)
    (example,) = result["examples"]  # one image
    assert example["image"] == 0
    thumbnail = Image.open(io.BytesIO(base64.b64decode(example["thumbnail_png"])))
    assert max(thumbnail.size) <= 64
    for name in METHODS:
        grid = np.array(example["maps"][name])
        assert grid.ndim == 2 and max(grid.shape) <= 16 and np.isfinite(grid).all()
    out = tmp_path / "report"
    assert main(["report", str(path), "--out", str(out)]) == 0
    page = (out / "index.html").read_text()
    section = page.split('id="example-maps"')[1]
    assert section.count("<img") == 1 + len(METHODS)
    assert "peak memory MiB" in page


def test_images_from_files_carry_their_digest(tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    for name, colour in (("a", (200, 10, 10)), ("b", (10, 10, 200))):
        Image.new("RGB", (40, 36), colour).save(images / f"{name}.png")
    code, path = run_benchmark(tmp_path, "--dataset", f"folder:{images}")
    assert code == 0
    result = strict_load(path)
    assert result["images"] == ["a", "b"]
    assert result["image_sha256"] == [
        hashlib.sha256((images / f"{n}.png").read_bytes()).hexdigest() for n in "ab"
    ]


def test_composites_have_no_file_digest(one_image: tuple[Path, str]) -> None:
    assert strict_load(one_image[0])["image_sha256"] == [None]


def test_json_in_a_missing_folder_fails_before_any_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    def no_model(*args: object, **kwargs: object) -> None:
        raise AssertionError("the model was loaded before the output was checked")

    monkeypatch.setattr("captum_igcam.app.settings.MethodSettings.load_model", no_model)
    target = tmp_path / "missing" / "f.json"
    assert main(["benchmark", "--json", str(target), "--no-progress"]) == 1
    error = capsys.readouterr().err
    assert "--json:" in error and str(tmp_path / "missing") in error
    assert not (tmp_path / "missing").exists()


def test_write_result_writes_null_for_non_finite_numbers(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    data = {
        "methods": {"a": {"x": math.nan, "ci95": {"x": [-math.inf, math.inf]}}},
        "values": {"a": {"x": np.array([1.5, np.nan], dtype=np.float32)}},
    }
    results.write_result(path, data)
    assert strict_load(path) == {
        "methods": {"a": {"x": None, "ci95": {"x": [None, None]}}},
        "values": {"a": {"x": [1.5, None]}},
    }
    with pytest.raises(FileExistsError):
        results.write_result(path, data)  # a new file only


def _png() -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (2, 2)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


PNG = _png()


def valid() -> dict:
    return {
        "format_version": 2,
        "methods": {"igcam": {"ebpg": 0.5, "ci95": {"ebpg": [0.4, 0.6]}}},
        "images": ["cat"],
        "image_sha256": ["0" * 64],
        "objects": [{"image": 0, "label": "cat", "box_fraction": 0.2}],
    }


def mutated(change) -> dict:
    data = valid()
    change(data)
    return data


@pytest.mark.parametrize(
    ("data", "field", "expected"),
    [
        ([1, 2], "", "not the JSON of captum-igcam benchmark --json"),
        ({"dataset": "x"}, "", "expected an object with 'methods', got no 'methods'"),
        (mutated(lambda d: d["methods"].update(igcam=3)), "methods.igcam", "an object"),
        (
            mutated(lambda d: d["methods"]["igcam"]["ci95"].update(ebpg=[0.4])),
            "methods.igcam.ci95.ebpg",
            "expected 2 numbers",
        ),
        (
            mutated(lambda d: d["methods"]["igcam"].update(ebpg="high")),
            "methods.igcam.ebpg",
            "a number or null",
        ),
        (
            mutated(lambda d: d["methods"]["igcam"].update(ebpg=True)),
            "methods.igcam.ebpg",
            "a number or null",
        ),
        (mutated(lambda d: d.update(format_version=99)), "format_version", "1 to 2"),
        (
            mutated(lambda d: d["objects"][0].update(image=4)),
            "objects[0].image",
            "an index below 1",
        ),
        (
            mutated(lambda d: d.update(image_sha256=[])),
            "image_sha256",
            "one digest per image",
        ),
        (
            mutated(lambda d: d.update(values={"igcam": {"ebpg": [0.1, "x"]}})),
            "values.igcam.ebpg[1]",
            "a number or null",
        ),
        (
            mutated(lambda d: d.update(examples=[{"image": 0, "thumbnail_png": PNG}])),
            "examples[0].maps",
            "an object",
        ),
        (
            mutated(lambda d: d.update(examples=[{"image": 0, "thumbnail_png": "%"}])),
            "examples[0].thumbnail_png",
            "a base64-encoded PNG",
        ),
        (
            mutated(
                lambda d: d.update(
                    examples=[{"image": 0, "thumbnail_png": "aGVsbG8=", "maps": {}}]
                )
            ),
            "examples[0].thumbnail_png",
            "a base64-encoded PNG",
        ),
    ],
)
def test_a_file_of_another_shape_names_file_and_field(
    tmp_path: Path, data: object, field: str, expected: str
) -> None:
    path = tmp_path / "bench.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ResultFileError) as raised:
        results.read_result(path)
    assert raised.value.path == str(path) and raised.value.field == field
    assert str(raised.value).startswith(f"{path}: {field + ': ' if field else ''}")
    assert expected in str(raised.value)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"[" * 100_000 + b"]" * 100_000, "nesting too deep"),
        (b'{"methods": {"caf\xe9": {}}}', "expected UTF-8 text, got byte 0xe9"),
        (b'{"methods": {', "expected JSON, got an error at line 1"),
    ],
)
def test_unreadable_files_name_the_file(
    tmp_path: Path, content: bytes, expected: str
) -> None:
    path = tmp_path / "bench.json"
    path.write_bytes(content)
    with pytest.raises(ResultFileError, match=expected) as raised:
        results.read_result(path)
    assert str(raised.value).startswith(f"{path}: ")


def test_report_of_another_shape_is_a_one_line_error(tmp_path: Path, capsys) -> None:
    path = tmp_path / "bench.json"
    path.write_text(json.dumps(mutated(lambda d: d["objects"][0].update(image=-1))))
    assert main(["report", str(path), "--out", str(tmp_path / "r")]) == 1
    error = capsys.readouterr().err
    assert f"{path}: objects[0].image: expected an index below 1, got -1" in error
    assert "Traceback" not in error


def test_committed_results_are_read_as_older_versions() -> None:
    root = Path(__file__).resolve().parents[1]
    result = results.read_result(root / "docs" / "benchmark.json")
    assert "format_version" not in result and result["methods"]


@pytest.mark.parametrize(
    ("arguments", "text"),
    [
        ((0.25, -0.125, 0.625), "0.250 [-0.125, 0.625]"),
        ((0.25, math.nan, math.nan), "0.250"),
        ((0.25, None, 0.5), "0.250"),
        ((None, 0.1, 0.5), "n/a"),
        ((math.nan, 0.1, 0.5), "n/a"),
    ],
)
def test_format_interval(arguments: tuple, text: str) -> None:
    assert results.format_interval(*arguments) == text


def test_format_interval_signed_and_spec() -> None:
    assert results.format_interval(0.05, -0.01, 0.11, ".2f", True) == (
        "+0.05 [-0.01, +0.11]"
    )
    assert results.format_interval(12345.0, 1.0, 99999.0, ".3g") == (
        "1.23e+04 [1, 1e+05]"
    )


def test_most_different_images_merge_each_metrics_ranking() -> None:
    values = {
        "a": {"x": [0.0, 0.0, 0.0, 0.0], "y": [1.0, 0.0, 0.0, None], "o": [1.0]},
        "b": {"x": [0.9, 0.1, 0.5, 0.0], "y": [1.0, 0.0, 0.7, 0.2], "o": [0.0]},
    }
    # x ranks 0, 2, 1, 3; y ranks 2, then 0 and 1 (spread 0); image 3 has no
    # spread in y. Merged in turn: x's first, y's first, x's second, ...
    assert results.most_different_images(values, 4) == [0, 2, 1, 3]
    assert results.most_different_images(values, 4, limit=2) == [0, 2]
    single = {"a": values["a"]}
    assert results.most_different_images(single, 4) == []


MEASURED_IN_A_NEW_PROCESS = """
import json
import torch
from captum_igcam.evaluation.cost import measured_call


def allocate() -> float:
    block = torch.ones(64 * 2**20 // 4)  # 64 MiB, touched
    return float(block.sum())


output, seconds, peak_mb = measured_call(allocate, "cpu")
_, _, small_mb = measured_call(lambda: torch.ones(4).sum(), "cpu")
print(json.dumps([output, seconds, peak_mb, small_mb]))
"""


def test_measured_call_sees_a_large_allocation_on_the_cpu() -> None:
    """In a process of its own: a test worker's earlier tests leave memory
    behind that an allocation can reuse without growing the resident set."""
    import subprocess

    root = Path(__file__).resolve().parents[1]
    printed = subprocess.run(
        [sys.executable, "-c", MEASURED_IN_A_NEW_PROCESS],
        capture_output=True,
        text=True,
        check=True,
        cwd=root,
    ).stdout
    output, seconds, peak_mb, small_mb = json.loads(printed.splitlines()[-1])
    assert output == 64 * 2**20 // 4 and seconds > 0
    assert peak_mb is not None and peak_mb >= 60
    assert small_mb is not None and small_mb < 60


def test_evaluation_exposes_the_results_module() -> None:
    assert evaluation.results is results


def test_results_md_states_the_codes_limits_and_messages(tmp_path: Path) -> None:
    from captum_igcam.evaluation import runner

    text = " ".join(
        (Path(__file__).resolve().parents[1] / "docs" / "results.md")
        .read_text()
        .split()
    )
    assert f"| `format_version` | {results.FORMAT_VERSION} |" in text
    assert f"the version `result_json` writes ({results.FORMAT_VERSION})" in text
    assert "at most six images (`MAX_EXAMPLES`)" in text and results.MAX_EXAMPLES == 6
    assert f"at most {runner.THUMBNAIL_SIDE} pixels a side" in text
    cells = runner.SMALL_MAP_CELLS
    assert f"at most {cells} x {cells} cells, rounded to four decimals" in text
    shown = results.format_interval(0.25, -0.125, 0.625)
    assert f"`format_interval(0.25, -0.125, 0.625)` is `{shown}`" in text
    for name in results.RECORDED_DISTRIBUTIONS:
        assert f"`{name}`" in text
    path = tmp_path / "bench.json"
    path.write_text(
        json.dumps(mutated(lambda d: d["methods"]["igcam"]["ci95"].update(ebpg=[0.4])))
    )
    with pytest.raises(ResultFileError) as raised:
        results.read_result(path)
    message = str(raised.value).replace(str(path), "bench.json")
    assert f"```text {message} ```" in text
