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
    argv += ["--model", f"{__name__}:tiny_bundle"]
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


def tiny_bundle(model: torch.nn.Module | None = None):
    from captum_igcam.app.models import IMAGENET_MEAN, IMAGENET_STD, ModelBundle

    return ModelBundle(
        "tiny",
        (model or TinyCam()).eval(),
        "features.2",
        32,
        IMAGENET_MEAN,
        IMAGENET_STD,
        [str(i) for i in range(1000)],
    )


def test_batched_loop_equals_one_image_at_a_time() -> None:
    from captum_igcam.evaluation.datasets import composites

    bundle = tiny_bundle()
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


def test_loop_scores_equal_the_metric_functions_alone() -> None:
    """The loop's shared passes give what each metric function gives alone."""
    from captum_igcam.app.baselines import baseline_input
    from captum_igcam.evaluation import metrics
    from captum_igcam.evaluation.datasets import composites

    bundle = tiny_bundle()
    samples = list(composites(n=3, seed=4))
    result = evaluation.evaluate(
        bundle,
        composites(n=3, seed=4),
        ["gradcam", "igcam"],
        MethodSettings(n_steps=3),
        curve_steps=4,
        batch_size=2,
        progress=False,
    )
    inputs = torch.stack([bundle.preprocess(s.image) for s in samples])
    target = metrics.predicted_target(bundle.model, inputs)
    settings = MethodSettings(n_steps=3).for_model(bundle)
    for name in ("gradcam", "igcam"):
        baselines = torch.cat(
            [baseline_input(bundle, s.image, "black") for s in samples]
        )
        function = methods.METHODS[name].build(bundle.model, bundle.layer(), settings)
        maps = function(inputs, target, baselines)
        original, masked = metrics.masked_confidence(bundle.model, inputs, maps)
        curve = {"target": target, "n_steps": 4}
        expected = {
            "avg_drop": metrics.average_drop(original, masked),
            "deletion_auc": metrics.deletion_auc(bundle.model, inputs, maps, **curve),
            "insertion_auc": metrics.insertion_auc(bundle.model, inputs, maps, **curve),
        }
        for metric, values in expected.items():
            np.testing.assert_allclose(
                result.records[name].values[metric],
                values.tolist(),
                rtol=1e-4,
                atol=1e-6,
                err_msg=f"{name} {metric}",
            )


class BatchSizes(TinyCam):
    """TinyCam recording the size of every pass, with and without gradients."""

    def __init__(self) -> None:
        super().__init__()
        self.passes: dict[bool, list[int]] = {True: [], False: []}

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        self.passes[torch.is_grad_enabled()].append(len(inputs))
        return super().forward(inputs)


def test_every_pass_of_the_default_loop_stays_within_the_memory_budget() -> None:
    from captum_igcam.app.memory import chunk_sizes
    from captum_igcam.evaluation.datasets import composites

    model = BatchSizes()
    bundle = tiny_bundle(model)
    example = bundle.preprocess(next(iter(composites(n=1))).image)[None]
    sizes = chunk_sizes(model, example, budget_mb=1)
    model.passes = {True: [], False: []}
    # A budget so small that a pass holds a few rows of this 32 px model.
    assert 1 <= sizes.path_rows < 40 and 1 <= sizes.curve_rows < 64
    result = evaluation.evaluate(
        bundle,
        composites(n=2),
        evaluation.DEFAULT_METHODS,
        MethodSettings(n_steps=40, memory_budget_mb=1),
        curve_steps=20,
        progress=False,
    )
    assert result.settings["internal_batch_size"] is None  # sized per method
    assert result.settings["path_batch_size"] == sizes.path_rows
    assert result.settings["curve_batch_size"] == sizes.curve_rows
    # Every path method's gradient passes are cut to the budget's rows...
    assert max(model.passes[True]) == sizes.path_rows
    # ...and the curves' no-grad passes to the curve rows.
    assert max(model.passes[False]) == sizes.curve_rows
    chosen = evaluation.evaluate(
        bundle,
        composites(n=1),
        ["igcam"],
        MethodSettings(n_steps=12, internal_batch_size=12, memory_budget_mb=1),
        curve_steps=2,
        progress=False,
    )
    assert chosen.settings["internal_batch_size"] == 12  # the user's choice wins
    assert chosen.settings["path_batch_size"] == 12


def test_chunk_sizes_divide_the_budget_by_what_one_example_holds() -> None:
    from captum_igcam.app import memory

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU()).eval()
    example = torch.rand(1, 3, 32, 32)
    sizes = memory.chunk_sizes(model, example, budget_mb=1)
    # The conv saves its input (3 x 32 x 32 floats) for the weight gradient,
    # the ReLU its output (8 x 30 x 30 floats); the weights are not counted.
    saved = 4 * (3 * 32 * 32 + 8 * 30 * 30)
    assert sizes.saved_bytes == saved
    assert sizes.activation_bytes == 4 * 8 * 30 * 30
    assert sizes.path_rows == int(2**20 / (memory.BACKWARD_FACTOR * saved))
    double = memory.chunk_sizes(model, example, budget_mb=2)
    assert double.path_rows in (2 * sizes.path_rows, 2 * sizes.path_rows + 1)
    with pytest.raises(ValueError, match="^budget_mb:"):
        memory.chunk_sizes(model, example, budget_mb=0)


def test_progress_bar_moves_once_per_image(monkeypatch: pytest.MonkeyPatch) -> None:
    import tqdm.auto

    from captum_igcam.evaluation.datasets import composites

    updates = []

    class Bar:
        def __init__(self, total: int, **kwargs: object) -> None:
            updates.append(("total", total))

        def update(self, count: int) -> None:
            updates.append(("update", count))

        def close(self) -> None:
            updates.append(("close", 0))

    monkeypatch.setattr(tqdm.auto, "tqdm", Bar)
    evaluation.evaluate(
        tiny_bundle(),
        composites(n=3),
        ["gradcam"],
        curve_steps=2,
    )
    assert updates == [("total", 3), *[("update", 1)] * 3, ("close", 0)]


def test_class_index_beyond_the_model_names_class_map_file_and_key(
    tmp_path: Path,
) -> None:
    from captum_igcam.evaluation.datasets import load_dataset

    (tmp_path / "JPEGImages").mkdir()
    (tmp_path / "Annotations").mkdir()
    Image.new("RGB", (40, 30)).save(tmp_path / "JPEGImages" / "a.jpg")
    (tmp_path / "Annotations" / "a.xml").write_text(
        "<annotation><filename>a.jpg</filename><object><name>cat</name><bndbox>"
        "<xmin>1</xmin><ymin>1</ymin><xmax>9</xmax><ymax>9</ymax></bndbox>"
        "</object></annotation>"
    )
    class_map = tmp_path / "classes.json"
    class_map.write_text('{"cat": [3, 1000]}')
    dataset = load_dataset(f"voc:{tmp_path}", n=1, class_map=class_map)
    with pytest.raises(ValueError) as raised:
        evaluation.evaluate(tiny_bundle(), dataset, ["gradcam"], progress=False)
    message = str(raised.value)
    assert f"class_map {str(class_map)!r}, key 'cat'" in message
    assert "output 1000 is out of range for a model with 1000 outputs" in message


def test_image_whose_only_box_is_unusable_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    (tmp_path / "JPEGImages").mkdir()
    (tmp_path / "Annotations").mkdir()
    Image.new("RGB", (40, 30)).save(tmp_path / "JPEGImages" / "a.jpg")
    (tmp_path / "Annotations" / "a.xml").write_text(
        "<annotation><filename>a.jpg</filename><object><name>cat</name><bndbox>"
        "<xmin>50</xmin><ymin>1</ymin><xmax>60</xmax><ymax>9</ymax></bndbox>"
        "</object></annotation>"
    )
    class_map = tmp_path / "classes.json"
    class_map.write_text('{"cat": 281}')
    argv = ["benchmark", "--dataset", f"voc:{tmp_path}", "--class-map"]
    argv += [str(class_map), "--model", "resnet18", "--random-weights"]
    assert main([*argv, "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "left out" in err and "a.xml', object 1 (cat)" in err
    assert "no area inside the 40x30 image" in err
    assert "--dataset: no usable images" in err and "1 objects left out" in err


def test_help_shows_default_methods_and_plain_percent_signs(
    capsys: pytest.CaptureFixture,
) -> None:
    with pytest.raises(SystemExit):
        main(["benchmark", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "Average Drop %," in text and "%%" not in text
    assert f"(default: {','.join(evaluation.DEFAULT_METHODS)})" in text
    assert "DEFAULT_METHODS" not in text


DOCS = Path(__file__).resolve().parent.parent / "docs"


def documented_default_mismatches(doc: str) -> list[str]:
    """Rows of the doc's defaults table that differ from the command's defaults.

    The table follows the ``<!-- benchmark defaults -->`` marker: option,
    default and ``--quick`` value, each in backticks.
    """
    from captum_igcam.cli import benchmark

    parsed = vars(build_parser().parse_args(["benchmark"]))
    settings = MethodSettings()
    quick, defaults = benchmark.QUICK, benchmark.DEFAULTS
    actual = {
        "--dataset": (parsed["dataset"], ""),
        "--n": (defaults["n"], quick["n"]),
        "--steps": (settings.n_steps, quick["steps"]),
        "--curve-steps": (defaults["curve_steps"], quick["curve_steps"]),
        "--method": (settings.method, ""),
        "--baseline": (settings.baseline, ""),
        "--methods": (",".join(parsed["methods"]), ""),
        "--batch-images": (parsed["batch_images"], ""),
        "--memory-budget": (settings.memory_budget_mb, ""),
        "--seed": (parsed["seed"], ""),
    }
    table = doc.split("<!-- benchmark defaults -->")[1].strip().splitlines()[2:]
    documented = {}
    for line in table:
        if not line.startswith("|"):
            break
        option, default, quick_value = (
            cell.strip().strip("`") for cell in line.strip("|").split("|")
        )
        documented[option] = (default, quick_value)
    mismatches = [
        f"{name} is not documented" for name in actual if name not in documented
    ]
    for option, values in documented.items():
        expected = tuple(str(value) for value in actual.get(option, ("?", "?")))
        if values != expected:
            mismatches.append(f"{option}: documented {values}, actual {expected}")
    return mismatches


def test_documented_defaults_are_the_commands_defaults() -> None:
    doc = (DOCS / "evaluation.md").read_text()
    assert documented_default_mismatches(doc) == []
    # The check can fail: the stale "--steps 20" of an earlier version.
    stale = doc.replace("| `--steps` | `50` |", "| `--steps` | `20` |")
    assert stale != doc
    assert documented_default_mismatches(stale) == [
        "--steps: documented ('20', '10'), actual ('50', '10')"
    ]
