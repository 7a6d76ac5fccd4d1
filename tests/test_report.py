"""``captum-igcam report``: the gallery and benchmark pages, their files, and
(slow) the pages rendered by a real headless Chromium."""

from __future__ import annotations

import html
import json
import shutil
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import TinyCNN
from PIL import Image, ImageStat
from report_data import read_report_data

from captum_igcam.app.model_bundle import ModelBundle
from captum_igcam.app.settings import MethodSettings
from captum_igcam.cli import main
from captum_igcam.dataset_job import open_maps
from captum_igcam.dataset_job.explainer import (
    ImageItem,
    JobOptions,
    explain_dataset,
    find_images,
)
from captum_igcam.report import browser, files, gallery

CLASSES = 3
PER_CLASS = 3


@pytest.fixture(scope="module")
def maps_folders(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two explain-dataset folders (input and layer path) of a 3-class folder."""
    root = tmp_path_factory.mktemp("report")
    source = root / "photos"
    rng = np.random.default_rng(0)
    for label in range(CLASSES):
        (source / str(label)).mkdir(parents=True)
        for i in range(PER_CLASS):
            pixels = rng.integers(0, 255, (40, 60, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(source / str(label) / f"im{i}.png")
    torch.manual_seed(0)
    bundle = ModelBundle(
        "tiny",
        TinyCNN(classes=5).eval(),
        "conv2",
        32,
        (0.0, 0.0, 0.0),
        (1.0, 1.0, 1.0),
        [f"class {i}" for i in range(5)],
    )
    items = [ImageItem(key, int(key[0])) for key in find_images(source)]
    folders = []
    for name, method in (("input", "igcam"), ("layer", "igcam-layer")):
        out = root / f"maps-{name}"
        explain_dataset(
            bundle,
            source,
            out,
            MethodSettings(n_steps=4),
            items=items,
            method=method,
            options=JobOptions(progress=False),
            targets_from="folder",
        )
        folders.append(out)
    return folders[0], folders[1]


def test_gallery_shows_every_image_with_its_record_and_overlays(
    maps_folders: tuple[Path, Path], tmp_path: Path
) -> None:
    out = tmp_path / "report"
    assert (
        main(["report", *map(str, maps_folders), "--out", str(out), "--no-progress"])
        == 0
    )
    data = read_report_data(out)
    maps = open_maps(maps_folders[0])
    assert data["methods"] == ["Integrated Grad-CAM", "IG-CAM (layer path)"]
    assert data["truth"] is True
    assert len(data["rows"]) == len(maps) == CLASSES * PER_CLASS
    column = {name: i for i, name in enumerate(data["columns"])}
    for row in data["rows"]:
        record = maps.record(row[column["key"]])
        assert row[column["predicted"]] == record.predicted
        assert row[column["probability"]] == pytest.approx(record.probability, abs=1e-4)
        # --target folder: the explained class is the class folder, ground truth.
        assert row[column["truth"]] == record.target == int(row[column["key"]][0])
        assert data["classes"][str(record.predicted)] == f"class {record.predicted}"
        pictures = [row[column["photo"]], *row[column["overlays"]]]
        assert len(pictures) == 3
        for picture in pictures:
            with Image.open(out / picture) as image:
                assert image.size == (160, 107)  # 60 x 40 photo, longer side 160
        assert 0.0 <= row[column["disagreement"]] <= 2.0
    html = (out / "index.html").read_text()
    assert '<script src="data.js"></script>' in html and "gallery.js" in html


def test_one_folder_has_no_disagreement(
    maps_folders: tuple[Path, Path], tmp_path: Path
) -> None:
    out = tmp_path / "report"
    assert (
        main(["report", str(maps_folders[1]), "--out", str(out), "--no-progress"]) == 0
    )
    data = read_report_data(out)
    column = data["columns"].index("disagreement")
    assert {row[column] for row in data["rows"]} == {None}


def test_disagreement_is_one_minus_the_correlation() -> None:
    peak = torch.zeros(1, 4, 4)
    peak[0, 0, 0] = 1.0
    other = torch.zeros(1, 4, 4)
    other[0, 3, 3] = 1.0
    assert gallery.disagreement([peak, peak]) == pytest.approx(0.0)
    expected = 1 - np.corrcoef(peak.flatten(), other.flatten())[0, 1]
    assert gallery.disagreement([peak, other]) == pytest.approx(expected)
    # Negative parts are left out, as in the overlays; a blank map is constant.
    assert gallery.disagreement([-peak, torch.zeros(1, 4, 4)]) == 0.0
    assert gallery.disagreement([peak, torch.zeros(1, 4, 4)]) == 1.0
    assert gallery.disagreement([peak]) is None


def test_thumbnails_are_written_once_and_reused(
    maps_folders: tuple[Path, Path], tmp_path: Path
) -> None:
    out = tmp_path / "report"
    argv = ["report", *map(str, maps_folders), "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    thumbs = {path: path.stat() for path in (out / "thumbs").iterdir()}
    assert len(thumbs) == CLASSES * PER_CLASS * 3
    removed = sorted(thumbs)[0]
    removed.unlink()
    assert main(argv) == 0
    for path, stat in thumbs.items():
        if path != removed:
            assert (
                path.stat().st_ino == stat.st_ino
                and path.stat().st_mtime_ns == stat.st_mtime_ns
            )
    assert removed.is_file()  # the missing one is written again


def test_default_output_is_the_report_subfolder(
    maps_folders: tuple[Path, Path], tmp_path: Path
) -> None:
    copy = tmp_path / "maps"
    shutil.copytree(maps_folders[0], copy)
    assert main(["report", str(copy), "--no-progress"]) == 0
    assert (copy / "report" / "index.html").is_file()
    assert (copy / "report" / files.MARKER_NAME).is_file()


def test_a_folder_of_someone_elses_files_is_refused(
    maps_folders: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "index.html").write_text("my page")
    assert main(["report", str(maps_folders[0]), "--out", str(out)]) == 1
    assert "did not write" in capsys.readouterr().err
    assert (out / "index.html").read_text() == "my page"
    assert sorted(p.name for p in out.iterdir()) == ["index.html"]


def test_create_once_never_replaces_a_file(tmp_path: Path) -> None:
    path = tmp_path / "thumb.jpg"
    assert files.create_once(path, b"first") is True
    assert files.create_once(path, b"second") is False
    assert path.read_bytes() == b"first"
    assert [p.name for p in tmp_path.iterdir()] == ["thumb.jpg"]  # no temporary left


def test_bad_paths_are_named(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["report", str(tmp_path / "missing")]) == 1
    assert "missing" in capsys.readouterr().err
    assert main(["report", str(tmp_path)]) == 1  # no index.json
    assert "index.json" in capsys.readouterr().err
    (tmp_path / "x.json").write_text("[1, 2]")
    assert main(["report", str(tmp_path / "x.json")]) == 1
    assert "not the JSON of captum-igcam benchmark" in capsys.readouterr().err


TINY_MODEL = """
import torch
from captum_igcam.app.models import IMAGENET_MEAN, IMAGENET_STD, ModelBundle


class TinyCam(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.features = torch.nn.Sequential(
            torch.nn.Conv2d(3, 8, 3, stride=2),
            torch.nn.ReLU(),
            torch.nn.Conv2d(8, 8, 3),
        )
        self.head = torch.nn.Linear(8, 1000)

    def forward(self, inputs):
        return self.head(self.features(inputs).relu().mean(dim=(2, 3)))


def build():
    return ModelBundle("tiny", TinyCam().eval(), "features.2", 32, IMAGENET_MEAN,
                       IMAGENET_STD, [str(i) for i in range(1000)])
"""


@pytest.fixture(scope="module")
def benchmark_json(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``captum-igcam benchmark --json`` of a tiny model on 6 composites."""
    folder = tmp_path_factory.mktemp("benchmark")
    (folder / "igcam_report_tiny.py").write_text(textwrap.dedent(TINY_MODEL))
    out = folder / "bench.json"
    argv = ["benchmark", "--model", "igcam_report_tiny:build", "--n", "6"]
    argv += ["--steps", "2", "--curve-steps", "4", "--methods", "gradcam,igcam,ig"]
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(folder))
        assert main([*argv, "--json", str(out), "--no-progress"]) == 0
    return out


def test_benchmark_json_has_what_the_report_plots(benchmark_json: Path) -> None:
    result = json.loads(benchmark_json.read_text())
    assert len(result["images"]) == 6
    objects = result["objects"]
    assert objects and all(0.0 < o["box_fraction"] <= 1.0 for o in objects)
    for name, row in result["methods"].items():
        values = result["values"][name]
        assert len(values["ebpg"]) == len(objects)
        assert len(values["deletion_auc"]) == 6
        assert np.nanmean(np.array(values["ebpg"], float)) == pytest.approx(row["ebpg"])
        for mode in ("deletion", "insertion"):
            curve = result["curves"][name][mode]
            assert len(curve) == 5  # curve steps + 1
            # The mean AUC is the area under the mean curve (trapezoids).
            assert np.trapezoid(curve, dx=0.25) == pytest.approx(
                row[f"{mode}_auc"], abs=1e-6
            )


def test_benchmark_report_has_table_curves_and_breakdowns(benchmark_json: Path) -> None:
    assert main(["report", str(benchmark_json)]) == 0
    out = benchmark_json.with_name("bench-report")
    page = (out / "index.html").read_text()
    result = json.loads(benchmark_json.read_text())
    for name in result["methods"]:
        assert f"<tr><td>{name}</td>" in page
    low, high = result["methods"]["igcam"]["ci95"]["ebpg"]
    assert f"[{low:.3g}, {high:.3g}]" in page
    curves = page.split('id="curves"')[1].split('id="breakdowns"')[0]
    assert curves.count("<polyline") == 2 * len(result["methods"])
    assert "By object size" in page and "By class" in page
    assert "Not in this result" not in page
    assert page.count("<svg") >= 2 + len(result["methods"])


def test_an_older_benchmark_file_gives_the_table_and_says_what_is_missing(
    tmp_path: Path,
) -> None:
    source = Path(__file__).parents[1] / "docs" / "benchmark.json"
    result = json.loads(source.read_text())
    for key in ("images", "objects", "values", "curves"):
        result.pop(key, None)
    path = tmp_path / "old.json"
    path.write_text(json.dumps(result))
    assert main(["report", str(path)]) == 0
    page = (tmp_path / "old-report" / "index.html").read_text()
    assert all(f"<tr><td>{name}</td>" in page for name in result["methods"])
    assert page.count("Not in this result") == 3


# Real browser: CI installs Debian's chromium (.ci/run).


def render(page: Path, tmp_path: Path) -> tuple[str, Image.Image, list[str]]:
    """DOM after the scripts ran, a grey screenshot, and the console lines."""
    shot = tmp_path / "shot.png"
    rendered = browser.render(page, shot)
    return rendered.dom, Image.open(shot).convert("L"), rendered.console


@pytest.mark.slow
def test_gallery_renders_in_chromium(
    maps_folders: tuple[Path, Path], tmp_path: Path
) -> None:
    out = tmp_path / "report"
    assert (
        main(["report", *map(str, maps_folders), "--out", str(out), "--no-progress"])
        == 0
    )
    dom, shot, console = render(out / "index.html", tmp_path)
    assert console == []
    assert 'data-ready="true"' in dom
    assert dom.count('class="card') == CLASSES * PER_CLASS
    assert dom.count("<img") == 3 * CLASSES * PER_CLASS
    assert f"{CLASSES * PER_CLASS} of {CLASSES * PER_CLASS} images" in dom
    assert ImageStat.Stat(shot).stddev[0] > 20  # photos and overlays, not a blank page


@pytest.mark.slow
def test_benchmark_report_renders_in_chromium(
    benchmark_json: Path, tmp_path: Path
) -> None:
    assert main(["report", str(benchmark_json), "--out", str(tmp_path / "report")]) == 0
    dom, shot, console = render(tmp_path / "report" / "index.html", tmp_path)
    assert console == []
    assert 'data-ready="true"' in dom and 'id="metrics"' in dom and "<polyline" in dom
    assert ImageStat.Stat(shot).stddev[0] > 10


@pytest.mark.slow
def test_a_script_error_is_seen(tmp_path: Path) -> None:
    """The console check above can fail: a page with an error is caught."""
    (tmp_path / "bad.html").write_text(
        "<html><body><script>missing();</script></body></html>"
    )
    _, _, console = render(tmp_path / "bad.html", tmp_path)
    assert any("missing is not defined" in line for line in console)


@pytest.mark.slow
def test_ten_thousand_images_open_one_page_at_a_time(tmp_path: Path) -> None:
    """The page renders 48 cards of a 10,000-image gallery, not 10,000."""
    from captum_igcam.report import page

    report = files.open_report_folder(tmp_path / "report")
    Image.new("RGB", (16, 16), (200, 80, 40)).save(report / "thumb.jpg")
    rows = [
        [f"{i:05d}.jpg", "thumb.jpg", ["thumb.jpg"], i % 3, 0.5, i % 3, 0.5]
        + [None, None, gallery.SOURCE_SAME]
        for i in range(10_000)
    ]
    data = {
        "kind": "gallery",
        "title": "10,000 images",
        "methods": ["m"],
        "settings": [{}],
        "truth": False,
        "classes": {"0": "a", "1": "b", "2": "c"},
        "columns": list(gallery.GALLERY_COLUMNS),
        "rows": rows,
    }
    dom, _, console = render(page.write_page(report, "gallery", data), tmp_path)
    assert console == []
    assert dom.count('class="card') == 48
    assert "10000 of 10000 images" in dom and "page 1 of 209" in dom


HOSTILE = "m{{body}}<b>x</b></script>{{title}}"


def test_names_with_placeholders_and_markup_are_shown_as_text(
    tmp_path: Path,
) -> None:
    """A folder and a model named with template placeholders and markup: the
    page shows them as text; no part of the page is pasted into another."""
    source = tmp_path / "photos"
    source.mkdir()
    Image.new("RGB", (20, 10), "red").save(source / "a.png")
    torch.manual_seed(0)
    bundle = ModelBundle(
        HOSTILE, TinyCNN(classes=5).eval(), "conv2", 32, (0.0,) * 3, (1.0,) * 3,
        [f"class {i}" for i in range(5)],
    )  # fmt: skip
    folders = [tmp_path / f"{HOSTILE.replace('/', '_')}-{i}" for i in range(2)]
    for folder in folders:
        explain_dataset(
            bundle, source, folder, MethodSettings(n_steps=2),
            options=JobOptions(progress=False),
        )  # fmt: skip
    out = tmp_path / "report"
    assert main(["report", *map(str, folders), "--out", str(out), "--no-progress"]) == 0
    page = (out / "index.html").read_text(encoding="utf-8")
    title = f"{folders[0].name}: 1 images"
    escaped = html.escape(title)
    assert page.count(f"<title>{escaped}</title>") == 1
    assert page.count(f"<h1>{escaped}</h1>") == 1
    assert page.count("<script") == 2 and page.count("</script>") == 2
    assert "<b>" not in page and '<main id="report"></main>' in page
    data_script = (out / "data.js").read_text(encoding="utf-8")
    assert "</script>" not in data_script and "<\\/script>" in data_script
    data = read_report_data(out)
    assert data["title"] == title
    # The same method and model twice: the labels say which folder is which.
    assert data["methods"] == [
        f"Integrated Grad-CAM, {HOSTILE} ({folder.name})" for folder in folders
    ]


def test_interval_chart_labels_start_inside_the_chart() -> None:
    """Long labels of wide letters are never cut at the left edge: each label
    starts at the margin and the plot begins after the widest one."""
    import re

    from captum_igcam.report import svg

    label = "W" * 40
    chart = svg.interval_chart(
        "t", [(label, 0.5, 0.4, 0.6, "#000"), ("a", 1, 0, 2, "#111")]
    )
    texts = re.findall(
        r'<text x="([\d.]+)" y="[\d.]+"( text-anchor="end")?>([^<]*)<', chart
    )
    labels = {text: (float(x), anchor) for x, anchor, text in texts}
    assert labels[label] == (svg.MARGIN, "") and labels["a"] == (svg.MARGIN, "")
    dots = [float(x) for x in re.findall(r'<circle cx="([\d.]+)"', chart)]
    # 11 px text: a wide letter is at most 0.65 em = 7.15 px.
    assert min(dots) >= svg.MARGIN + 7.15 * len(label)
    width = float(re.search(r'<svg[^>]* width="([\d.]+)"', chart).group(1))
    assert max(dots) <= width


def test_the_page_is_filled_in_one_pass_with_every_value_escaped(
    tmp_path: Path,
) -> None:
    """A title holding the body's placeholder does not receive the body."""
    from captum_igcam.report import page

    report = files.open_report_folder(tmp_path / "report")
    body = '<section id="only-once">chart</section>'
    page.write_page(report, "benchmark", {"title": HOSTILE}, body)
    text = (report / "index.html").read_text(encoding="utf-8")
    assert text.count('id="only-once"') == 1
    assert f'<main id="report">{body}</main>' in text
    assert text.count(f"<h1>{html.escape(HOSTILE)}</h1>") == 1
    assert '<script src="benchmark.js"></script>' in text


def test_line_chart_legend_fits_its_longest_name() -> None:
    import re

    from captum_igcam.report import svg

    name = "W" * 30
    chart = svg.line_chart("t", {name: [0.0, 1.0]}, {name: "#000"}, "x", "y")
    width = float(re.search(r'<svg[^>]* width="([\d.]+)"', chart).group(1))
    start = float(re.search(rf'<text x="([\d.]+)" y="[\d.]+">{name}<', chart).group(1))
    # 11 px text: a wide letter is at most 0.65 em = 7.15 px.
    assert start + 7.15 * len(name) <= width
