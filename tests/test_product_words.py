"""The product speaks of the product alone.

Docs, code, tests, scripts and notebooks state facts about the library: what
was measured, on what hardware, with which command. Words about how the
project was made (who measured a figure, issue numbers, roles, development
goals, the machines it was built on) mean nothing to a user and are kept out
of every tracked file.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: Phrase -> what it stands for. Case-insensitive, whole words.
PROCESS_WORDS = {
    r"sessions?": "who worked on the project",
    r"issue \d+|issue's|(project's|the) tracker": "an issue of the tracker",
    r"the lead|integrator|helper (session|engineer)s?|the team": "a role",
    r"build machines?|lent (GPU|machine)s?|a lent": "the machines it was built on",
    r"goals?|(this|last|next|previous|earlier) round": "a development goal",
    r"measured by (an|the)|earlier (session|measurement)s?": "who measured it",
}
#: pytest's fixture scope ``scope="session"`` is a word of the test runner.
PATTERN = re.compile(
    "|".join(rf"(?<!scope=\")\b(?:{words})\b" for words in PROCESS_WORDS),
    re.IGNORECASE,
)
#: This file names the words it keeps out.
EXEMPT = {Path(__file__).resolve()}
#: Files that are not text.
BINARY_SUFFIXES = {".png", ".gz", ".jpg", ".jpeg", ".whl", ".pt"}


def product_files() -> list[Path]:
    """Every tracked file of the checkout (every file outside .git without git)."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
        ).stdout.decode()
        paths = [ROOT / name for name in listed.split("\0") if name]
    except (OSError, subprocess.CalledProcessError):
        paths = [p for p in ROOT.rglob("*") if ".git" not in p.parts]
    return [p for p in paths if p.is_file() and p.suffix not in BINARY_SUFFIXES]


def process_words(text: str) -> list[str]:
    """The process phrases in ``text``, with their line numbers."""
    return [
        f"line {text.count(chr(10), 0, match.start()) + 1}: {match.group(0)!r}"
        for match in PATTERN.finditer(text)
    ]


@pytest.fixture(scope="session")
def product() -> dict[Path, str]:
    texts = {}
    for path in product_files():
        if path.resolve() in EXEMPT:
            continue
        try:
            texts[path] = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
    return texts


def test_the_scan_sees_the_docs_the_code_and_the_notebooks(
    product: dict[Path, str],
) -> None:
    names = {path.relative_to(ROOT).as_posix() for path in product}
    assert {"README.md", "docs/guarantees.md", "captum_igcam/__init__.py"} <= names
    assert any(name.endswith(".ipynb") for name in names)
    assert any(name.startswith("benchmarks/") for name in names)


def test_no_file_speaks_of_the_development_process(product: dict[Path, str]) -> None:
    found = {
        path.relative_to(ROOT).as_posix(): words
        for path, text in product.items()
        if (words := process_words(text))
    }
    assert found == {}


@pytest.mark.parametrize(
    "sentence",
    [
        "Measured by an earlier session on an H100.",
        "Both are open in issue 13.",
        "The lead runs it on the build machine.",
        "Above the 1.10 goal for bf16.",
        "One call for a lent GPU.",
        "Cached for the session of the next user.",
    ],
)
def test_each_kind_of_process_phrase_is_found(sentence: str) -> None:
    assert process_words(sentence)


@pytest.mark.parametrize(
    "sentence",
    [
        "Files of an earlier run are never replaced.",
        "The metrics round corners to pixel edges.",
        "The guarded helper shows the photo alone.",
        "Measured on 2 cores of an AMD EPYC with torch 2.14.",
        '@pytest.fixture(scope="session")',
    ],
)
def test_product_sentences_pass(sentence: str) -> None:
    assert process_words(sentence) == []
