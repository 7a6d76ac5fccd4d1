"""Draw the images of the README and docs/ again, from the code that makes them.

Usage::

    python docs/make_figures.py [chelsea] [report_gallery] [report_benchmark]

- ``chelsea``: ``captum-igcam explain`` on scikit-image's chelsea with every
  default -> ``docs/images/chelsea.png``, and the settings it used ->
  ``docs/images/chelsea.json`` (``tests/test_docs_fresh.py`` fails when a
  default no longer matches them: then run this script again);
- ``report_gallery``: ``explain-dataset`` on scikit-image's colour photos,
  with the input-space and the layer-space path, then ``captum-igcam report``
  of both folders -> a headless-Chromium screenshot,
  ``docs/images/report_gallery.png``;
- ``report_benchmark``: ``benchmark --quick`` on composites, then ``captum-igcam
  report`` of its JSON -> ``docs/images/report_benchmark.png``.

Without names it draws all three. Needs the ``demo`` extra and Debian's
``chromium`` for the screenshots; runs offline on a CPU in a few minutes.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

from PIL import Image

from captum_igcam.cli import main
from captum_igcam.report import browser

IMAGES = Path(__file__).resolve().parent / "images"
#: summary.json fields that say how ``chelsea.png`` was made.
CHELSEA_SETTINGS = (
    "model",
    "layer",
    "methods",
    "steps",
    "approximation_method",
    "baseline",
)
#: scikit-image colour photos of the gallery's screenshot.
GALLERY_PHOTOS = (
    "chelsea",
    "coffee",
    "astronaut",
    "rocket",
    "colorwheel",
    "immunohistochemistry",
)


def _run(argv: list[str]) -> None:
    status = main(argv)
    if status != 0:
        raise SystemExit(f"captum-igcam {' '.join(argv)}: exit status {status}")


def _save_photos(names: tuple[str, ...], folder: Path) -> list[Path]:
    from skimage import data

    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{name}.png" for name in names]
    for name, path in zip(names, paths):
        Image.fromarray(getattr(data, name)()).save(path)
    return paths


def _screenshot(page: Path, destination: Path, window: tuple[int, int]) -> None:
    """A PNG of the page in headless Chromium, in 256 colours (smaller files)."""
    shot = page.with_name("screenshot.png")
    rendered = browser.render(page, shot, window)
    if rendered.console:
        raise SystemExit(f"{page}: console messages:\n" + "\n".join(rendered.console))
    with Image.open(shot) as image:
        image.convert("RGB").quantize(256).save(destination, optimize=True)


def chelsea(work: Path) -> None:
    """The README's headline figure and its settings."""
    (photo,) = _save_photos(("chelsea",), work / "photo")
    out = work / "explained"
    _run(["explain", str(photo), "--out", str(out), "--no-upsampled-maps"])
    summary = json.loads((out / "summary.json").read_text())
    shutil.copyfile(out / "chelsea.png", IMAGES / "chelsea.png")
    settings = {name: summary[name] for name in CHELSEA_SETTINGS}
    (IMAGES / "chelsea.json").write_text(json.dumps(settings, indent=2) + "\n")


def report_gallery(work: Path) -> None:
    """A screenshot of the gallery of two explain-dataset folders."""
    photos = work / "photos"
    _save_photos(GALLERY_PHOTOS, photos)
    folders = []
    for path in ("input", "layer"):
        out = work / f"maps-{path}"
        _run(["explain-dataset", str(photos), "--out", str(out), "--path", path,
              "--steps", "16", "--workers", "0", "--no-progress"])  # fmt: skip
        folders.append(str(out))
    _run(["report", *folders, "--no-progress"])
    _screenshot(Path(folders[0]) / "report" / "index.html",
                IMAGES / "report_gallery.png", (1280, 1000))  # fmt: skip


def report_benchmark(work: Path) -> None:
    """A screenshot of the page of a quick benchmark."""
    result = work / "benchmark.json"
    _run(["benchmark", "--quick", "--n", "8", "--methods", "gradcam,igcam,igcam-layer",
          "--json", str(result), "--no-progress"])  # fmt: skip
    _run(["report", str(result)])
    _screenshot(work / "benchmark-report" / "index.html",
                IMAGES / "report_benchmark.png", (1280, 2200))  # fmt: skip


FIGURES = {"chelsea": chelsea, "report_gallery": report_gallery,
           "report_benchmark": report_benchmark}  # fmt: skip


def main_figures(names: list[str]) -> None:
    """Draw the named figures (all without names)."""
    unknown = sorted(set(names) - set(FIGURES))
    if unknown:
        raise SystemExit(
            f"figures: expected names from {sorted(FIGURES)}, got {unknown}"
        )
    for name in names or FIGURES:
        with tempfile.TemporaryDirectory() as work:
            print(f"== {name}", flush=True)
            FIGURES[name](Path(work))


if __name__ == "__main__":
    main_figures(sys.argv[1:])
