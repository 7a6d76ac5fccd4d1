"""The report's page: one HTML file, its style, its script and its data.

Everything a page needs is in the report folder (no network, no server):
``index.html``, ``report.css``, the page's script and ``data.js``, which
sets ``window.IGCAM_REPORT`` (a script, not a JSON file, because browsers do
not let a page opened from disk fetch files beside it).

``index.html`` is rendered from ``assets/page.html`` by Jinja2 in one pass
with autoescaping: every value (a model or folder name in the title, say)
is escaped, and no value is ever read as part of the template, so a name
holding ``{{body}}``, ``<b>`` or ``</script>`` is shown as text.
"""

from __future__ import annotations

import functools
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


@functools.cache
def _template() -> Any:
    """``assets/page.html`` as a Jinja2 template with autoescaping."""
    import jinja2

    environment = jinja2.Environment(
        autoescape=True, undefined=jinja2.StrictUndefined, keep_trailing_newline=True
    )
    return environment.from_string(asset("page.html"))


def write_page(report: Path, script: str, data: dict[str, Any], body: str = "") -> Path:
    """Write ``index.html`` and what it loads into the report folder.

    Args:
        report (Path): The report folder.
        script (str): Name of the page's script in the assets, without
            ``.js`` (``"gallery"`` or ``"benchmark"``).
        data (dict): JSON-ready data, readable by the script as
            ``window.IGCAM_REPORT``; its ``title`` titles the page.
        body (str, optional): HTML put in the page's ``<main>`` before the
            script runs, as it is: markup built by the report's own code,
            each of its values escaped there (see
            :func:`captum_igcam.report.svg.element`).
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
    from markupsafe import Markup

    text = _template().render(
        title=data["title"], script=f"{script}.js", body=Markup(body)
    )
    files.replace_page(report, "index.html", text)
    return report / "index.html"
