"""The commands' start-up: counted in the total they report, announced at once."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from captum_igcam.cli import _clock

ROOT = Path(__file__).resolve().parents[1]


def test_seconds_since_start_counts_from_the_process_start() -> None:
    """Time spent before the module is imported is counted too."""
    code = (
        "import time; time.sleep(1.5)\n"
        "from captum_igcam.cli._clock import seconds_since_start\n"
        "print(seconds_since_start())"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    assert float(result.stdout) >= 1.5


def test_seconds_since_start_grows() -> None:
    first = _clock.seconds_since_start()
    assert 0 < first <= _clock.seconds_since_start()


@pytest.mark.parametrize(("rank", "printed"), [(None, True), ("0", True), ("1", False)])
def test_start_up_is_announced_once_per_job(
    rank: str | None,
    printed: bool,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    if rank is None:
        monkeypatch.delenv("RANK", raising=False)
    else:
        monkeypatch.setenv("RANK", rank)
    _clock.announce_start_up("resnet18")
    captured = capsys.readouterr()
    assert captured.out == ""
    assert ("loading torch and resnet18" in captured.err) is printed
