"""The peer methods through the commands: ``benchmark --methods`` on the
ImageNet CLS-LOC layout (with intervals, paired differences, cost and the
sanity check) and ``explain --methods`` on a photo, for a classifier, a
segmentation model and a detector.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data
from test_cli_tasks import TINY_MODELS
from test_imagenet_loc import write_images, write_mapping, write_solution

from captum_igcam import cli

PEERS = "gradcam++,xgradcam,layercam,hirescam,scorecam,ablationcam,eigencam"
CLASSIFIER = textwrap.dedent(
    """
    import torch
    from torch import nn
    from captum_igcam.app.model_bundle import ModelBundle

    def classifier():
        torch.manual_seed(0)
        model = nn.Sequential(
            nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(),
            nn.Conv2d(6, 6, 3, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 1000),
        )
        return ModelBundle(
            name="tiny-classifier", model=model.eval(), layer_name="2",
            input_size=24, mean=(0.5,) * 3, std=(0.25,) * 3,
            categories=[f"class {i}" for i in range(1000)],
        )
    """
)


@pytest.fixture
def run_cli(monkeypatch, capsys, tmp_path):
    (tmp_path / "peers_classifier.py").write_text(CLASSIFIER)
    (tmp_path / "peers_task_models.py").write_text(TINY_MODELS)
    monkeypatch.syspath_prepend(str(tmp_path))

    def run(*argv: str) -> tuple[int, str, str]:
        status = cli.main(list(argv))
        captured = capsys.readouterr()
        return status, captured.out, captured.err

    return run


def test_benchmark_runs_peer_methods_on_the_imagenet_layout(run_cli, tmp_path):
    write_images(tmp_path)
    write_mapping(tmp_path)
    write_solution(tmp_path)
    out = tmp_path / "result.json"
    status, table, err = run_cli(
        "benchmark", "--dataset", f"imagenet-loc:{tmp_path}", "--n", "4",
        "--model", "peers_classifier:classifier",
        "--methods", f"gradcam,igcam,{PEERS}", "--steps", "3",
        "--curve-steps", "3", "--sanity", "cascading", "--no-progress",
        "--json", str(out),
    )  # fmt: skip
    assert status == 0, err
    result = json.loads(out.read_text())
    peers = PEERS.split(",")
    assert list(result["methods"]) == ["gradcam", "igcam", *peers]
    for name in ["igcam", *peers]:
        entry = result["methods"][name]
        assert entry["seconds_per_image"] > 0
        for metric in ("pointing_game", "ebpg", "auroc", "avg_drop", "insertion_auc"):
            low, high = entry["ci95"][metric]
            assert low <= entry[metric] <= high, (name, metric)
            assert metric in entry["difference_vs_gradcam"], (name, metric)
        assert f"| {name} - gradcam |" in table
    assert set(result["sanity"]["cascading"]["methods"]) == {"gradcam", "igcam", *peers}


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("photos") / "chelsea.png"
    Image.fromarray(data.chelsea()).save(path)
    return path


@pytest.mark.parametrize(
    "model, options",
    [
        ("peers_classifier:classifier", []),
        ("peers_task_models:segmenter", ["--target", "dog", "--box", "0,0,225.5,150"]),
        ("peers_task_models:detector", ["--box", "0", "--detection-output", "score"]),
    ],
)
def test_explain_draws_peer_methods_beside_ours(
    run_cli, photo, tmp_path, model, options
):
    out = tmp_path / "out"
    methods = "gradcam,igcam,gradcam++,layercam,scorecam,ablationcam"
    status, _, err = run_cli(
        "explain", str(photo), "--model", model, "--methods", methods,
        "--steps", "2", "--out", str(out), *options,
    )  # fmt: skip
    assert status == 0, err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["methods"] == methods.split(",")
    assert summary["errors"] == []
    gradcam = np.load(out / "chelsea_gradcam_layer.npy")
    for name in methods.split(","):
        layer_map = np.load(out / f"chelsea_{name}_layer.npy")
        assert layer_map.shape == gradcam.shape, name
        assert np.isfinite(layer_map).all() and (layer_map >= 0).all(), name
