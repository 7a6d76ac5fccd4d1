"""The results page and the evaluation table are their result files, rendered.

``benchmarks/RESULTS.md`` and ``docs/evaluation.md`` hold generated blocks
that ``benchmarks/tools/render_results.py`` rebuilds from the committed
result files; the README's performance summary quotes the same files.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import re
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def renderer() -> ModuleType:
    path = ROOT / "benchmarks" / "tools" / "render_results.py"
    spec = importlib.util.spec_from_file_location("render_results", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_committed_pages_are_their_result_files_rendered(
    renderer: ModuleType,
) -> None:
    assert renderer.stale_pages() == []
    for page in renderer.PAGES:
        text = page.read_text()
        assert renderer.names(text), page  # the blocks are found
        assert "(not run)" not in text, page


def test_a_changed_result_is_reported(
    renderer: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    read = renderer.read

    def changed(path: Path) -> object:
        data = copy.deepcopy(read(path))
        if path.name == "call_memory.json":
            data["resnet50.layer4/batch1"]["igcam_over_floor"] = 1.1
        return data

    monkeypatch.setattr(renderer, "read", changed)
    assert renderer.stale_pages() == ["RESULTS.md: differs from its result files"]


def test_a_block_without_a_result_is_reported(
    renderer: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    build = renderer.PAGES[renderer.EVALUATION_PAGE]
    pages = dict(renderer.PAGES)
    pages[renderer.EVALUATION_PAGE] = lambda: {
        name: body for name, body in build().items() if name != "benchmark-means"
    }
    monkeypatch.setattr(renderer, "PAGES", pages)
    assert "evaluation.md: no result for block 'benchmark-means'" in (
        renderer.stale_pages()
    )


def test_the_evaluation_json_makes_a_report(tmp_path: Path) -> None:
    """docs/benchmark.json has every field ``captum-igcam report`` reads."""
    from captum_igcam.cli import main

    data = json.loads((ROOT / "docs" / "benchmark.json").read_text())
    assert data["n_images"] == len(data["images"]) == 100
    copy_ = tmp_path / "benchmark.json"
    copy_.write_text(json.dumps(data))
    assert main(["report", str(copy_)]) == 0
    page = (tmp_path / "benchmark-report" / "index.html").read_text()
    for name in data["methods"]:
        assert name in page


def span(values: list[float], digits: int, suffix: str = "") -> str:
    """``low to high`` of ``values`` as the README writes it."""
    return f"{min(values):.{digits}f}{suffix} to {max(values):.{digits}f}{suffix}"


def test_readme_performance_figures_are_the_speed_results() -> None:
    section = (ROOT / "README.md").read_text().split("## Performance")[1]
    section = " ".join(section.split("\n## ")[0].split())
    speed = json.loads(
        (ROOT / "benchmarks" / "measurements" / "speed_results.json").read_text()
    )
    cases = speed["cases"].values()
    time = span([c["igcam_over_floor"] for c in cases], 2)
    memory = span([c["peak_mem_igcam_over_layer_ig"] for c in cases], 2)
    low = min(c["layer_path_speedup"] for c in cases)
    high = max(c["layer_path_speedup"] for c in cases)
    assert f"({time} times them" in section
    assert f"({memory})" in section
    assert f"{int(low)} to {int(high)} times faster" in section
    # Each figure of the section is one of these: none is unsourced.
    quoted = re.findall(r"\d+\.\d+|\b\d+ to \d+\b", section)
    assert sorted(quoted) == sorted(
        [*time.split(" to "), *memory.split(" to "), f"{int(low)} to {int(high)}"]
    )
