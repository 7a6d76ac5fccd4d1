"""The benchmark scripts measure what they say, on tiny sizes.

Only what the scripts compute is checked here (which runs they compare, in
which configuration); the figures themselves are the scripts' output.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.fixture(autouse=True)
def _importable_benchmarks(monkeypatch: pytest.MonkeyPatch) -> None:
    for folder in ("lib", "measurements", "studies", "gpu", "tools"):
        monkeypatch.syspath_prepend(str(BENCHMARKS / folder))


def test_channels_last_case_runs_model_and_inputs_in_channels_last() -> None:
    import speed

    case = speed.Case(
        "resnet18",
        "layer4",
        batch_size=2,
        internal_batch_size=4,
        memory_format="channels_last",
    )
    model, layer, inputs = speed._setup(case)
    assert inputs.is_contiguous(memory_format=torch.channels_last)
    assert not inputs.is_contiguous()
    assert model.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    assert layer is model.layer4
    assert case.name == "resnet18.layer4/batch2/channels_last"
    assert speed.variants_of(case) == ("floor", "igcam", "igcam_layer")


def test_bf16_case_runs_its_variants_under_cpu_autocast(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import speed

    seen = []
    monkeypatch.setattr(
        speed,
        "_plain_variant",
        lambda case, name: (
            lambda: seen.append(
                torch.get_autocast_dtype("cpu")
                if torch.is_autocast_enabled("cpu")
                else None
            )
        ),
    )
    bf16 = speed.Case("resnet18", "layer4", 1, 2, precision="bfloat16")
    speed._variant(bf16, "igcam")()
    speed._variant(dataclasses.replace(bf16, precision="float32"), "igcam")()
    assert seen == [torch.bfloat16, None]


def test_ratios_are_reported_only_for_the_variants_a_case_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import speed

    seconds = {"igcam": 2.0, "igcam_eager": 3.0, "floor": 1.6}
    monkeypatch.setattr(speed, "_time_case", lambda case: dict(seconds))
    compiled = speed.Case("resnet18", "layer4", 1, 25, compiled=True)
    result = speed.run_case(compiled)
    assert speed.variants_of(compiled) == ("igcam", "igcam_eager", "floor")
    ratios = {k: v for k, v in result.items() if k not in ("repeats", "seconds")}
    # No memory: a subprocess would compile the model again.
    assert ratios.pop("peak_mem_mb") == {}
    assert ratios == {"igcam_over_floor": 1.25, "compiled_speedup": 1.5}


def test_dataset_throughput_explains_the_same_files_both_ways(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import dataset_throughput

    settings = dataset_throughput.Settings(
        model=f"{__name__}:tiny_imagenet_bundle",
        images=2,
        steps=2,
        images_per_batch=2,
        internal_batch_size=4,
        workers=0,
        repeats=1,
        paths=("layer",),
    )
    results = dataset_throughput.measure(settings)
    layer = results["layer"]
    assert set(results) == {"layer"}
    assert layer["in_memory_images_per_s"] > 0
    assert layer["ratio"] == pytest.approx(
        layer["explain_dataset_images_per_s"] / layer["in_memory_images_per_s"]
    )


def test_gpu_check_tf32_switch_restores_the_flags() -> None:
    import gpu_check

    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    with gpu_check.tf32(not before[1]):
        assert torch.backends.cudnn.allow_tf32 is (not before[1])
        assert torch.backends.cuda.matmul.allow_tf32 is (not before[1])
    assert (
        torch.backends.cuda.matmul.allow_tf32,
        torch.backends.cudnn.allow_tf32,
    ) == before
    assert gpu_check.relative_error(
        torch.tensor([1.0, 2.1]), torch.tensor([1.0, 2.0])
    ) == (pytest.approx(0.05))


def tiny_imagenet_bundle():
    from helpers import TinyCNN

    from captum_igcam.app.models import IMAGENET_MEAN, IMAGENET_STD, ModelBundle

    return ModelBundle(
        "tiny",
        TinyCNN(classes=1000).eval(),
        "conv2",
        32,
        IMAGENET_MEAN,
        IMAGENET_STD,
        [str(i) for i in range(1000)],
    )


def test_benchmark_cost_replays_the_loops_attribution_calls() -> None:
    import benchmark_cost

    from captum_igcam import evaluation
    from captum_igcam.app.methods import METHODS
    from captum_igcam.app.settings import MethodSettings
    from captum_igcam.evaluation.datasets import composites

    bundle = tiny_imagenet_bundle()
    before = dict(METHODS)
    settings = MethodSettings(n_steps=2)
    with benchmark_cost.recorded_calls(["gradcam", "igcam"]) as calls:
        result = evaluation.evaluate(
            bundle, composites(2), ["gradcam", "igcam"], settings, progress=False
        )
    assert METHODS == before  # the registry is restored
    # One call per method and image, and one more per image whose annotated
    # class is not the prediction (4 composites' classes vs random weights).
    misses = result.top1_correct.count(False)
    assert [name for name, *_ in calls].count("igcam") == 2 + misses
    assert [name for name, *_ in calls].count("gradcam") == 2 + misses
    assert all(inputs.shape == (1, 3, 32, 32) for _, inputs, _, _ in calls)
    spent = benchmark_cost.replay_seconds(bundle, settings, calls)
    assert spent["wall"] > 0 and spent["cpu"] > 0


def test_benchmark_cost_floor_runs_one_row_per_curve_point() -> None:
    import benchmark_cost

    bundle = tiny_imagenet_bundle()
    passes = []
    bundle.model.register_forward_hook(
        lambda module, args, output: passes.append(len(args[0]))
    )
    benchmark_cost.forward_seconds(bundle, torch.rand(3, 3, 32, 32), 10, 4)
    assert passes == [4, 4, 2]


def test_call_memory_reports_the_median_of_interleaved_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import call_memory

    measured = iter([100.0, 130.0, 300.0, 110.0, 90.0, 120.0])
    order = []

    def fake(case, variant: str) -> float:
        order.append(variant)
        return next(measured)

    monkeypatch.setattr(call_memory, "measure_memory", fake)
    result = call_memory.measure(call_memory.CASES[0], repeats=3)
    assert order == ["floor", "igcam"] * 3
    assert result["peak_mb"] == {"floor": 100.0, "igcam": 120.0}
    assert result["igcam_over_floor"] == pytest.approx(1.2)


def test_laptop_configuration_is_the_documented_command() -> None:
    import benchmark_cost

    from captum_igcam.cli import build_parser

    args = build_parser().parse_args(["benchmark", *benchmark_cost.LAPTOP_ARGS])
    assert args.methods == benchmark_cost.DEFAULT_COST_METHODS.split(",")
    assert (args.steps, args.curve_steps) == (8, 5)
    documented = (BENCHMARKS.parent / "docs" / "evaluation.md").read_text()
    command = " ".join(["captum-igcam benchmark --n 100", *benchmark_cost.LAPTOP_ARGS])
    assert command in documented


def test_laptop_figure_in_results_is_the_committed_runs() -> None:
    import json

    run = json.loads(
        (BENCHMARKS / "measurements" / "benchmark_laptop.json").read_text()
    )["laptop"]
    assert run["images"] == 100
    results = (BENCHMARKS / "RESULTS.md").read_text()
    assert f"{run['seconds'] / 60:.1f} min for 100 images" in results
    assert f"peak resident set {run['peak_rss_gb']:.2f} GB" in results


def _benchmark_json(path: Path, steps: int, values: dict[str, list[float]]) -> str:
    import json

    run = {
        "methods": {method: {} for method in values},
        "images": ["a", "b"],
        "settings": {"n_steps": steps, "curve_steps": 2 * steps},
        "values": {
            method: {"ebpg": column, "deletion_auc": [0.1, 0.1]}
            for method, column in values.items()
        },
    }
    path.write_text(json.dumps(run))
    return str(path)


def test_compare_runs_prints_differences_and_whether_the_order_holds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    import sys

    import compare_runs

    fine = _benchmark_json(tmp_path / "f.json", 50, {"x": [0.5, 0.7], "y": [0.2, 0.4]})
    coarse = _benchmark_json(tmp_path / "c.json", 8, {"x": [0.1, 0.3], "y": [0.3, 0.5]})
    monkeypatch.setattr(sys, "argv", ["compare_runs.py", fine, coarse])
    compare_runs.main()
    out = capsys.readouterr().out
    assert "| x | ebpg | 0.6000 | 0.2000 | -0.4000 | 0.4000 |" in out
    assert "| y | ebpg | 0.3000 | 0.4000 | +0.1000 | 0.1000 |" in out
    assert "ebpg: different order" in out
    assert "deletion_auc: same order" in out


def test_compare_runs_refuses_a_file_of_another_shape_naming_the_field(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    import compare_runs

    fine = _benchmark_json(tmp_path / "f.json", 50, {"x": [0.5, 0.7]})
    coarse = tmp_path / "c.json"
    coarse.write_text('{"methods": {"x": {"ebpg": "high"}}}')
    monkeypatch.setattr(sys, "argv", ["compare_runs.py", fine, str(coarse)])
    with pytest.raises(SystemExit, match=r"c\.json: methods\.x\.ebpg: expected a"):
        compare_runs.main()


def test_cost_and_call_memory_tables_in_results_are_the_committed_runs() -> None:
    import json

    results = (BENCHMARKS / "RESULTS.md").read_text()
    cost = json.loads(
        (BENCHMARKS / "measurements" / "benchmark_cost_time.json").read_text()
    )["time"]
    for clock, label in (("cpu", "CPU (this process)"), ("wall", "wall")):
        row = (
            f"| {label} | {cost[f'{clock}_loop_s']:.1f} | "
            f"{cost[f'{clock}_floor_attribution_s']:.1f} | "
            f"{cost[f'{clock}_floor_forward_s']:.1f} | "
            f"{cost[f'{clock}_loop_over_floor']:.2f} |"
        )
        assert row in results
    memory = json.loads((BENCHMARKS / "measurements" / "call_memory.json").read_text())
    for case, label in (
        ("resnet50.layer4/batch1", "ResNet-50 `layer4`, batch 1"),
        ("vgg16.features.29/batch1", "VGG-16 `features.29`, batch 1"),
    ):
        peak = memory[case]["peak_mb"]
        row = (
            f"| {label} | {peak['floor']:.0f} | {peak['igcam']:.0f} | "
            f"{memory[case]['igcam_over_floor']:.2f} |"
        )
        assert row in results


def test_code_size_counts_code_and_refusal_lines_only() -> None:
    import code_size

    source = '''"""Module docstring,
two lines."""
import warnings  # a comment


def check(value):
    """Docstring."""
    # a comment line

    if value < 0:
        raise ValueError(
            "value: expected >= 0"
        )
    warnings.warn("small", UserWarning)
    return value
'''
    # import, def, if, the three lines of raise, warn, return.
    assert code_size.code_lines(source) == 8
    assert code_size.refusal_lines(source) == 4


def test_results_file_claims_only_new_names_and_its_own_results(
    tmp_path: Path,
) -> None:
    import results_file

    own = tmp_path / "own.json"
    results_file.write(own, {"seconds": 1.0}, "speed.py")
    assert json.loads(own.read_text()) == {"written_by": "speed.py", "seconds": 1.0}
    assert results_file.claim(own, "speed.py") == own
    assert (
        results_file.claim(tmp_path / "new.json", "speed.py") == tmp_path / "new.json"
    )
    results_file.write(own, {"seconds": 2.0}, "speed.py")  # an earlier run's file
    assert json.loads(own.read_text())["seconds"] == 2.0

    users = tmp_path / "users.json"
    users.write_text('{"seconds": 9}')
    folder = tmp_path / "folder.json"
    folder.mkdir()
    link = tmp_path / "link.json"
    link.symlink_to(own)
    for taken in (users, folder, link, own):
        script = "call_memory.py" if taken == own else "speed.py"
        with pytest.raises(SystemExit, match=f"{taken.name}: exists and is not"):
            results_file.claim(taken, script)
        with pytest.raises(FileExistsError, match="left as it is"):
            results_file.write(taken, {"seconds": 3.0}, script)
    assert users.read_text() == '{"seconds": 9}'
    assert folder.is_dir() and link.is_symlink()
    assert json.loads(own.read_text())["seconds"] == 2.0


def test_results_file_compresses_gz_names(tmp_path: Path) -> None:
    import gzip

    import results_file

    path = tmp_path / "study.json.gz"
    results_file.write(path, {"runs": [1, 2]}, "variant_study.py")
    text = gzip.decompress(path.read_bytes()).decode()
    assert json.loads(text) == {"written_by": "variant_study.py", "runs": [1, 2]}
    assert results_file.written_by(path) == "variant_study.py"


def test_a_script_stops_before_measuring_when_its_file_is_not_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import call_memory

    users = tmp_path / "notes.json"
    users.write_text("my notes")

    def measure(*args: object) -> None:
        raise AssertionError("measured before the results file was claimed")

    monkeypatch.setattr(call_memory, "measure", measure)
    monkeypatch.setattr("sys.argv", ["call_memory.py", "--json", str(users)])
    with pytest.raises(SystemExit, match="notes.json: exists and is not"):
        call_memory.main()
    assert users.read_text() == "my notes"


def json_writes(source: str) -> list[str]:
    """The calls in a script's source that write JSON to a file, as ``line: name``.

    Counted: the ``json`` module's ``dump`` under any name it is imported as,
    ``atomic_write_json``, and a ``write``, ``write_text`` or ``write_bytes``
    whose argument holds a ``dumps`` call.
    """
    import ast

    tree = ast.parse(source)
    aliases = {
        "dump": "dump",
        "dumps": "dumps",
        "atomic_write_json": "atomic_write_json",
    }
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            for name in node.names:
                if name.name in aliases:
                    aliases[name.asname or name.name] = name.name
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        called = getattr(node.func, "attr", None) or aliases.get(
            getattr(node.func, "id", ""), ""
        )
        writes_dumps = called in ("write", "write_text", "write_bytes") and any(
            isinstance(inner, ast.Call)
            and (
                getattr(inner.func, "attr", None)
                or aliases.get(getattr(inner.func, "id", ""), "")
            )
            == "dumps"
            for argument in node.args
            for inner in ast.walk(argument)
        )
        if called in ("dump", "atomic_write_json") or writes_dumps:
            found.append(f"{node.lineno}: {called}")
    return found


def test_json_writes_finds_every_form_of_writing_json() -> None:
    writers = """
from json import dump as save_json, dumps as text_of
import json
save_json(data, handle)
json.dump(data, handle)
Path(name).write_text(json.dumps(data))
handle.write(text_of(data) + "\\n")
Path(name).write_bytes(json.dumps(data).encode())
atomic_write_json(name, data)
"""
    assert [line.split(": ")[1] for line in json_writes(writers)] == [
        "dump",
        "dump",
        "write_text",
        "write",
        "write_bytes",
        "atomic_write_json",
    ]
    readers = """
import json
print(json.dumps(data))
data = json.loads(Path(name).read_text())
Path(name).write_text(markdown)
figure.savefig(name)
"""
    assert json_writes(readers) == []


def test_benchmark_scripts_write_json_only_through_results_file() -> None:
    scripts = [
        path for path in BENCHMARKS.rglob("*.py") if path.name != "results_file.py"
    ]
    # Every script, wherever it lies below benchmarks/.
    assert len(scripts) >= 15
    writers = {
        str(path.relative_to(BENCHMARKS)): found
        for path in scripts
        if (found := json_writes(path.read_text()))
    }
    assert writers == {}


def test_committed_results_are_marked_with_the_script_that_wrote_them() -> None:
    import results_file

    for path in [*BENCHMARKS.rglob("*.json"), *BENCHMARKS.rglob("*.json.gz")]:
        script = results_file.written_by(path)
        if path.name in ("benchmark_fine10.json", "benchmark_laptop10.json"):
            assert script is None  # written by `captum-igcam benchmark --json`
        else:
            assert script is not None and list(BENCHMARKS.rglob(script)), path
