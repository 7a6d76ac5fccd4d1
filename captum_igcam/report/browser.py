"""Open a report in headless Chromium: its DOM after the scripts ran, a
screenshot, and what the page wrote to the console.

Used by the tests (a report must render without console errors) and by
``docs/make_figures.py`` (the screenshots in the docs). Needs Debian's
``chromium`` package (``apt-get install chromium``); nothing is downloaded.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

#: Flags for a quiet, offline, one-shot headless run as root or in a container.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
    "--enable-logging=stderr",
    "--v=0",
)


@dataclass(frozen=True)
class Rendered:
    """What Chromium made of a page.

    Args:
        dom (str): The serialised DOM after the page's scripts ran.
        console (list[str]): Chromium's log lines of the page's console
            messages (errors, uncaught exceptions, resources that failed to
            load, ``console.*`` calls).
    """

    dom: str
    console: list[str]


def find_chromium() -> str:
    """The ``chromium`` executable.

    Raises:
        FileNotFoundError: Saying how to install it.
    """
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    raise FileNotFoundError(
        "chromium: not found; install Debian's package (apt-get install chromium)"
    )


def render(
    page: str | Path,
    screenshot: str | Path | None = None,
    window: tuple[int, int] = (1280, 900),
) -> Rendered:
    """Load a page from disk in headless Chromium.

    Args:
        page (str or Path): The HTML file.
        screenshot (str or Path, optional): Where to save a PNG of the window.
            Default: None (no screenshot)
        window (tuple[int, int], optional): Window width and height in pixels.
            Default: (1280, 900)

    Returns:
        Rendered: The DOM and the console lines (of both loads, when a
        screenshot is taken too).

    Example::

        >>> render("igcam-maps/report/index.html").console
        []
    """
    url = Path(page).resolve().as_uri()
    with tempfile.TemporaryDirectory() as profile:
        command = [
            find_chromium(),
            *CHROMIUM_FLAGS,
            f"--window-size={window[0]},{window[1]}",
            f"--user-data-dir={profile}",
        ]
        runs = [
            subprocess.run(
                [*command, "--dump-dom", url],
                capture_output=True,
                text=True,
                check=True,
            )
        ]
        if screenshot is not None:
            shot = f"--screenshot={Path(screenshot).resolve()}"
            runs.append(
                subprocess.run(
                    [*command, shot, url], capture_output=True, text=True, check=True
                )
            )
    console = [
        line for run in runs for line in run.stderr.splitlines() if ":CONSOLE" in line
    ]
    return Rendered(runs[0].stdout, console)
