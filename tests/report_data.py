"""Reading back what ``captum-igcam report`` wrote, for the tests."""

from __future__ import annotations

import json
from pathlib import Path


def read_report_data(report: Path) -> dict:
    """The JSON of a report's ``data.js`` (``window.IGCAM_REPORT = {...};``)."""
    text = (report / "data.js").read_text(encoding="utf-8")
    prefix = "window.IGCAM_REPORT = "
    assert text.startswith(prefix) and text.rstrip().endswith(";")
    return json.loads(text[len(prefix) :].rstrip().rstrip(";"))
