"""docs/peers.md is generated from the committed peer-study results."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GENERATOR = ROOT / "benchmarks" / "studies" / "make_peers_doc.py"


def _generator():
    spec = importlib.util.spec_from_file_location("make_peers_doc", GENERATOR)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_page_is_the_generators_output():
    text = (ROOT / "docs" / "peers.md").read_text(encoding="utf-8")
    assert text == _generator().render(), "run benchmarks/studies/make_peers_doc.py"


def test_the_page_has_a_table_for_each_committed_result():
    generator = _generator()
    text = generator.render()
    results = sorted((ROOT / "benchmarks" / "studies").glob("peers_*.json"))
    assert results, "no committed peer-study result"
    for path in results:
        assert f"benchmarks/studies/{path.name}" in text
    assert text.count("| method - gradcam |") == len(results)


def test_a_difference_is_bold_only_when_its_interval_excludes_zero():
    generator = _generator()
    assert generator._verdict("auroc", {"mean": 0.1, "ci95": [0.01, 0.2]}) == "better"
    assert generator._verdict("avg_drop", {"mean": 2, "ci95": [1, 3]}) == "worse"
    assert generator._verdict("ebpg", {"mean": 0.1, "ci95": [-0.01, 0.2]}) is None
    assert generator._verdict("ebpg", {"mean": 0.0, "ci95": [None, None]}) is None
