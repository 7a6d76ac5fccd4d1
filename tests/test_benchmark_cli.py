"""The benchmark: statistics on hand-made records, argument errors, end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from captum_igcam import evaluation
from captum_igcam.app import methods
from captum_igcam.app.settings import MethodSettings
from captum_igcam.cli import _options, build_parser, main

# What a benchmark without Captum's metrics and ROAD reports.
METRIC_KEYS = set(evaluation.runner.METRIC_NAMES) - {
    "infidelity",
    "sensitivity",
    "road_morf",
    "road_lerf",
}


def make_result(**records: evaluation.MethodRecord) -> evaluation.EvaluationResult:
    return evaluation.EvaluationResult(
        dataset="hand-made",
        model="none",
        layer="none",
        n_images=4,
        settings={},
        notes=[],
        records=records,
    )


def test_summarize_pointing_game_is_a_class_mean_with_bootstrap_ci() -> None:
    record = evaluation.MethodRecord(
        values={"pointing_game": [1, 0, 0, 1], "ebpg": [0.2, 0.4, 0.6, 0.8]},
        labels=["cat", "cat", "cat", "cup"],
        seconds=[1.0, 2.0, 3.0, 4.0],
    )
    summary = evaluation.summarize(make_result(a=record), n_resamples=500)["a"]
    assert summary["pointing_game"].mean == pytest.approx((1 / 3 + 1) / 2)
    assert summary["ebpg"].mean == pytest.approx(0.5)
    assert summary["seconds_per_image"].mean == pytest.approx(2.5)
    for estimate in summary.values():
        assert estimate.low <= estimate.mean <= estimate.high
    # Resampled means of 0.2..0.8 cannot leave that range, and vary.
    assert 0.2 <= summary["ebpg"].low < summary["ebpg"].high <= 0.8


def test_compare_is_paired() -> None:
    base = evaluation.MethodRecord(values={"ebpg": [0.1, 0.5, 0.9, 0.3]})
    # Always 0.05 better on the same image: the paired interval is a point.
    better = evaluation.MethodRecord(values={"ebpg": [0.15, 0.55, 0.95, 0.35]})
    difference = evaluation.compare(make_result(a=better, b=base), "a", "b", "ebpg")
    assert difference.mean == pytest.approx(0.05)
    assert difference.low == pytest.approx(0.05)
    assert difference.high == pytest.approx(0.05)
    with pytest.raises(ValueError, match="^method:"):
        evaluation.compare(make_result(a=better), "a", "b", "ebpg")


def test_registry_has_default_methods_and_refuses_duplicates() -> None:
    assert set(evaluation.DEFAULT_METHODS) <= set(methods.METHODS)
    with pytest.raises(ValueError, match="^name:"):
        methods.register_method("gradcam", "again", "again")


def test_unknown_method_is_refused_by_the_parser(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as raised:
        main(["benchmark", "--methods", "gradcam,nope", "--no-progress"])
    assert raised.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert "--methods: expected a comma-separated list from" in error
    assert "got 'gradcam,nope'" in error


SHARED_OPTIONS = [
    "--model",
    "resnet18",
    "--random-weights",
    "--layer",
    "layer3",
    "--device",
    "cpu",
    "--steps",
    "7",
    "--method",
    "riemann_middle",
    "--baseline",
    "blur",
    "--batch-size",
    "3",
]
SUBCOMMANDS = {
    "explain": [],
    "explain-dataset": ["SOURCE", "--out", "OUT"],
    "benchmark": [],
}


def test_subcommands_share_model_and_attribution_options() -> None:
    parser = build_parser()
    given = {
        name: _options.settings_from_args(
            parser.parse_args([name, *extra, *SHARED_OPTIONS])
        )
        for name, extra in SUBCOMMANDS.items()
    }
    expected = MethodSettings(
        model="resnet18",
        random_weights=True,
        layer="layer3",
        device="cpu",
        n_steps=7,
        method="riemann_middle",
        baseline="blur",
        internal_batch_size=3,
    )
    assert set(given.values()) == {expected}
    defaults = {
        name: _options.settings_from_args(parser.parse_args([name, *extra]))
        for name, extra in SUBCOMMANDS.items()
    }
    # The same defaults everywhere: 50 steps, black baseline, CPU.
    assert set(defaults.values()) == {MethodSettings()}
    assert MethodSettings().baseline == "black" and MethodSettings().n_steps == 50


def test_quick_sets_only_the_steps_not_given() -> None:
    parser = build_parser()
    quick = parser.parse_args(["benchmark", "--quick"])
    assert _options.settings_from_args(quick, n_steps=10).n_steps == 10
    chosen = parser.parse_args(["benchmark", "--quick", "--steps", "30"])
    assert _options.settings_from_args(chosen, n_steps=10).n_steps == 30


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--n", "0"], "argument --n: expected a positive integer, got '0'"),
        (
            ["--curve-steps", "x"],
            "argument --curve-steps: expected a positive integer, got 'x'",
        ),
        (["--steps", "-1"], "argument --steps: expected a positive integer, got '-1'"),
    ],
)
def test_counts_are_checked_by_the_parser(
    argv: list[str], message: str, capsys: pytest.CaptureFixture
) -> None:
    with pytest.raises(SystemExit) as raised:
        main(["benchmark", *argv])
    assert raised.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith(message)


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_benchmark_cuda_without_cuda_is_a_one_line_error(
    capsys: pytest.CaptureFixture,
) -> None:
    assert main(["benchmark", "--device", "cuda", "--no-progress"]) == 1
    assert "--device: 'cuda' was asked for but CUDA" in capsys.readouterr().err


def test_voc_without_class_map_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert main(["benchmark", "--dataset", f"voc:{tmp_path}", "--n", "1"]) == 1
    assert "class_map:" in capsys.readouterr().err


def test_folder_benchmark_has_only_faithfulness_metrics(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (64, 48), (200, 120, 40)).save(images / "orange.png")
    out = tmp_path / "result.json"
    argv = ["benchmark", "--dataset", f"folder:{images}", "--methods", "gradcam"]
    argv += ["--curve-steps", "2", "--json", str(out), "--no-progress"]
    assert main(argv) == 0
    result = json.loads(out.read_text())
    assert result["n_images"] == 1
    # The defaults of explain: black baseline, 50 steps.
    assert result["settings"]["baseline"] == "black"
    assert result["settings"]["n_steps"] == 50
    row = result["methods"]["gradcam"]
    assert "pointing_game" not in row and "ebpg" not in row
    assert 0.0 <= row["avg_drop"] <= 100.0
    assert "| gradcam |" in capsys.readouterr().out


@pytest.mark.slow
def test_quick_benchmark_end_to_end(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "benchmark.json"
    argv = ["benchmark", "--quick", "--n", "2", "--steps", "2", "--curve-steps", "2"]
    assert main([*argv, "--json", str(out), "--no-progress"]) == 0
    result = json.loads(out.read_text())
    assert result["dataset"] == "composites (seed 0)"
    assert result["model"] == "efficientnet-lite0"
    assert result["layer"] == "_head_activation"
    assert result["n_images"] == 2
    accuracy = result["top1_accuracy"]["mean"]
    assert accuracy in (0.0, 0.5, 1.0)
    assert set(result["methods"]) == set(evaluation.DEFAULT_METHODS)
    for name, row in result["methods"].items():
        assert METRIC_KEYS <= set(row), name
        assert row["pointing_game"] in (0.0, 0.5, 1.0)
        assert 0.0 <= row["ebpg"] <= 1.0 and 0.0 <= row["auroc"] <= 1.0
        assert 0.0 <= row["avg_drop"] <= 100.0
        assert row["increase_in_confidence"] in (0.0, 50.0, 100.0)
        assert 0.0 <= row["deletion_auc"] <= 1.0 and 0.0 <= row["insertion_auc"] <= 1.0
        low, high = row["ci95"]["ebpg"]
        assert low <= row["ebpg"] <= high
    assert "difference_vs_gradcam" in result["methods"]["igcam"]
    table = capsys.readouterr().out
    assert all(f"| {name} |" in table for name in evaluation.DEFAULT_METHODS)
    assert "2 composites (seed 0)" in table and "top-1 accuracy" in table
    assert "baseline: black" in table


class TinyCam(torch.nn.Module):
    """A small CNN for the loop's tests: 3 x 32 x 32 -> 1000 classes."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.features = torch.nn.Sequential(
            torch.nn.Conv2d(3, 8, 3, stride=2),
            torch.nn.ReLU(),
            torch.nn.Conv2d(8, 8, 3),
        )
        self.head = torch.nn.Linear(8, 1000)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(inputs).relu().mean(dim=(2, 3)))


def test_batched_loop_equals_one_image_at_a_time() -> None:
    from captum_igcam.app.models import IMAGENET_MEAN, IMAGENET_STD, ModelBundle
    from captum_igcam.evaluation.datasets import composites

    bundle = ModelBundle(
        "tiny",
        TinyCam().eval(),
        "features.2",
        32,
        IMAGENET_MEAN,
        IMAGENET_STD,
        [str(i) for i in range(1000)],
    )
    dataset = composites(n=5, seed=2)
    kwargs = {
        "methods": ["gradcam", "igcam", "igcam-paper"],
        "settings": MethodSettings(n_steps=3),
        "curve_steps": 4,
        "progress": False,
    }
    one = evaluation.evaluate(bundle, dataset, batch_size=1, **kwargs)
    batched = evaluation.evaluate(bundle, dataset, batch_size=3, **kwargs)
    assert batched.top1_correct == one.top1_correct and len(one.top1_correct) == 5
    for name, record in one.records.items():
        other = batched.records[name]
        assert other.labels == record.labels
        assert (
            set(other.values)
            == set(record.values)
            == METRIC_KEYS - {"seconds_per_image"}
        )
        for metric, values in record.values.items():
            assert len(values) == 5, (name, metric)
            np.testing.assert_allclose(
                other.values[metric], values, rtol=1e-5, atol=1e-7, err_msg=metric
            )
    # The methods differ, so equality above is not a constant.
    assert one.records["igcam"].values["ebpg"] != one.records["gradcam"].values["ebpg"]
