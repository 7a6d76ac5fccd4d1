"""The report's page: one HTML file, its style, its script and its data.

Everything a page needs is in the report folder (no network, no server):
``index.html``, ``report.css``, the page's script and ``data.js``, which
sets ``window.IGCAM_REPORT`` (a script, not a JSON file, because browsers do
not let a page opened from disk fetch files beside it).
"""

from __future__ import annotations

import html
import json
from importlib import resources
from pathlib import Path
from typing import Any

from captum_igcam.report import files

DATA_SCRIPT = "data.js"


def asset(name: str) -> str:
    """The text of a file of ``captum_igcam/report/assets``."""
    return (
        resources.files("captum_igcam.report")
        .joinpath("assets", name)
        .read_text(encoding="utf-8")
    )


def write_page(report: Path, script: str, data: dict[str, Any], body: str = "") -> Path:
    """Write ``index.html`` and what it loads into the report folder.

    Args:
        report (Path): The report folder.
        script (str): Name of the page's script in the assets, without
            ``.js`` (``"gallery"`` or ``"benchmark"``).
        data (dict): JSON-ready data, readable by the script as
            ``window.IGCAM_REPORT``; its ``title`` titles the page.
        body (str, optional): HTML put in the page's ``<main>`` before the
            script runs.
            Default: ""

    Returns:
        Path: ``index.html``.
    """
    # "</" would end the <script> element early.
    payload = json.dumps(data, separators=(",", ":"), allow_nan=False)
    payload = payload.replace("</", "<\\/")
    files.replace_page(report, DATA_SCRIPT, f"window.IGCAM_REPORT = {payload};\n")
    files.replace_page(report, "report.css", asset("report.css"))
    files.replace_page(report, f"{script}.js", asset(f"{script}.js"))
    text = (
        asset("page.html")
        .replace("{{title}}", html.escape(data["title"]))
        .replace("{{script}}", f"{script}.js")
        .replace("{{body}}", body)
    )
    files.replace_page(report, "index.html", text)
    return report / "index.html"
