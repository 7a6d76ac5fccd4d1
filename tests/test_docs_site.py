"""The documentation site's index lists every guide, and the README links them."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def toctree_entries(markdown: str) -> set[str]:
    """The documents the MyST toctrees of ``markdown`` list."""
    blocks = re.findall(r"^```\{toctree\}\n(.*?)^```", markdown, re.M | re.S)
    return {
        line.strip()
        for block in blocks
        for line in block.splitlines()
        if line.strip() and not line.startswith(":")
    }


def test_the_index_lists_every_guide() -> None:
    guides = {path.stem for path in DOCS.glob("*.md")} - {"index"}
    entries = toctree_entries((DOCS / "index.md").read_text())
    assert guides <= entries, guides - entries


def test_the_readme_links_every_guide() -> None:
    readme = (ROOT / "README.md").read_text()
    guides = {path.name for path in DOCS.glob("*.md")} - {"index.md", "api.md"}
    linked = set(re.findall(r"\(docs/([\w-]+\.md)", readme))
    assert guides <= linked, guides - linked


def test_a_missing_guide_is_found() -> None:
    entries = toctree_entries("```{toctree}\n:maxdepth: 1\n\ncli\nfaq\n```\n")
    assert entries == {"cli", "faq"}
