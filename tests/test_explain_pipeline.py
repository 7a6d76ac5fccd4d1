"""``explain``'s one per-photo pipeline, from Python: every task through
``tasks.prepare``, each photo bound to the digest of its file, strict JSON."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from helpers import sha256_of
from PIL import Image

from captum_igcam.app import explain, images
from captum_igcam.app.errors import SettingValueError
from captum_igcam.app.model_bundle import ModelBundle
from captum_igcam.app.settings import MethodSettings
from captum_igcam.app.task_settings import TaskTarget
from captum_igcam.app.tasks import prepare

SETTINGS = MethodSettings(n_steps=2)


class TinyClassifier(torch.nn.Module):
    """conv -> relu -> pool -> linear; ``scale`` multiplies the logits."""

    def __init__(self, scale: float = 1.0) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.head = torch.nn.Linear(4, 3)
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.relu(self.conv(x)).mean(dim=(2, 3))
        return self.head(pooled) * self.scale


def _bundle(model: torch.nn.Module) -> ModelBundle:
    return ModelBundle(
        name="tiny", model=model.eval(), layer_name="conv", input_size=16,
        mean=(0.5,) * 3, std=(0.25,) * 3, categories=["ant", "bee", "cow"],
    )  # fmt: skip


@pytest.fixture
def photo_files(tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for name in ("a.png", "b.png"):
        path = tmp_path / "photos" / name
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)).save(path)
        paths.append(str(path))
    return paths


def test_a_classifier_is_a_prepared_target_like_the_tasks():
    bundle = _bundle(TinyClassifier())
    inputs = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        probabilities = bundle.model(inputs).softmax(dim=1)[0]
    predicted = int(probabilities.argmax())
    prepared = prepare(bundle, inputs, (20, 30), None)
    assert prepared.forward is bundle.model
    assert prepared.target == predicted
    assert prepared.record["predicted_label"] == bundle.categories[predicted]
    assert prepared.record["probability"] == pytest.approx(
        float(probabilities[predicted]), abs=1e-6
    )
    other = (predicted + 1) % 3
    asked = prepare(bundle, inputs, (20, 30), other)
    assert (asked.target, asked.record["target_label"]) == (
        other,
        bundle.categories[other],
    )
    assert asked.record["target_probability"] == pytest.approx(
        float(probabilities[other]), abs=1e-6
    )


def test_a_classifier_takes_no_box():
    bundle = _bundle(TinyClassifier())
    inputs = torch.rand(1, 3, 16, 16)
    with pytest.raises(SettingValueError, match="box: a region or box") as raised:
        prepare(bundle, inputs, (20, 30), None, TaskTarget(box="0"))
    assert raised.value.parameter == "box"


def test_the_summary_records_each_photos_digest(photo_files, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    sources, errors = explain.image_sources(photo_files)
    summary = explain.explain_images(
        _bundle(TinyClassifier()), sources, out, SETTINGS, methods=["gradcam"]
    )
    digests = [record["sha256"] for record in summary["images"]]
    assert digests == [sha256_of(path) for path in photo_files]
    assert len(set(digests)) == 2
    written = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert [record["sha256"] for record in written["images"]] == digests


def test_the_summary_is_strict_json_when_the_model_gives_nan(photo_files, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    sources, _ = explain.image_sources(photo_files[:1])
    summary = explain.explain_images(
        _bundle(TinyClassifier(scale=math.nan)), sources, out, SETTINGS, ["gradcam"]
    )
    assert math.isnan(summary["images"][0]["probability"])

    def refuse(token: str) -> None:
        raise ValueError(f"not JSON: {token}")

    text = (out / "summary.json").read_text(encoding="utf-8")
    record = json.loads(text, parse_constant=refuse)["images"][0]
    assert record["probability"] is None and record["target_probability"] is None


def test_bundled_photos_are_read_from_their_files():
    sources, errors = explain.image_sources([])
    assert errors == []
    label, loader = sources[0]
    assert label == "skimage:chelsea"
    photo = loader()
    np.testing.assert_array_equal(
        np.asarray(photo.image), images.bundled_images()["chelsea"]
    )
    assert photo.sha256 == sha256_of(images.bundled_image_files()["chelsea"])


def test_a_run_stopped_by_an_error_still_lists_every_file_it_wrote(
    photo_files, tmp_path, monkeypatch
):
    from captum_igcam.app import maps

    real_figure = maps.explanation_figure
    calls = []

    def failing_second_figure(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("no memory for the figure")
        return real_figure(*args, **kwargs)

    monkeypatch.setattr(maps, "explanation_figure", failing_second_figure)
    out = tmp_path / "out"
    out.mkdir()
    sources, _ = explain.image_sources(photo_files)
    with pytest.raises(RuntimeError, match="no memory for the figure"):
        explain.explain_images(
            _bundle(TinyClassifier()), sources, out, SETTINGS, methods=["gradcam"]
        )
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert [record["image"] for record in summary["images"]] == photo_files[:1]
    assert summary["errors"] == [
        {
            "image": photo_files[1],
            "error": "the run stopped on this image: "
            "RuntimeError('no memory for the figure')",
            "files": ["b_gradcam_layer.npy", "b_gradcam_upsampled.npy"],
        }
    ]
    listed = set(summary["images"][0]["files"]) | set(summary["errors"][0]["files"])
    assert {p.name for p in out.iterdir()} == listed | {"summary.json"}


class PooledHead(torch.nn.Module):
    """conv -> ReLU module -> global mean -> linear: at ``act`` the class
    score's gradient is the same at every position."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.act = torch.nn.ReLU()
        self.head = torch.nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.act(self.conv(x)).mean(dim=(2, 3)))


@pytest.mark.parametrize(
    "layer, methods, notes",
    [
        ("act", ["gradcam", "igcam"], 1),  # once for two photos
        ("conv", ["gradcam", "igcam"], 0),  # the ReLU after it varies the gradient
        ("act", ["gradcam"], 0),  # no Integrated Grad-CAM method asked for
    ],
)
def test_explain_notes_once_when_the_layer_makes_igcam_path_averaged_cam(
    photo_files, tmp_path, capsys, layer, methods, notes
):
    torch.manual_seed(0)
    bundle = ModelBundle(
        name="pooled", model=PooledHead().eval(), layer_name=layer, input_size=16,
        mean=(0.5,) * 3, std=(0.25,) * 3, categories=["ant", "bee", "cow"],
    )  # fmt: skip
    sources, _ = explain.image_sources(photo_files)
    (tmp_path / "out").mkdir()
    explain.explain_images(bundle, sources, tmp_path / "out", SETTINGS, methods)
    err = capsys.readouterr().err
    assert err.count("note: at layer") == notes
    if notes:
        assert f"note: at layer {layer} the class score's gradient" in err
