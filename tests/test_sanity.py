"""Model-randomisation sanity checks: randomisation, exact restoration, the
similarity measures, the Quantus MPRT cross-check, the command line and the
page generated from the study."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import TinyCNN
from torch import nn

from captum_igcam.app.methods import METHODS, Method
from captum_igcam.app.models import IMAGENET_MEAN, IMAGENET_STD, ModelBundle
from captum_igcam.app.settings import MethodSettings
from captum_igcam.cli import main
from captum_igcam.evaluation import sanity

ROOT = Path(__file__).resolve().parents[1]
FAST = MethodSettings(n_steps=2)


def _bundle(model: nn.Module, layer: str = "conv2") -> ModelBundle:
    categories = [str(i) for i in range(5)]
    return ModelBundle(
        "tiny", model, layer, 16, IMAGENET_MEAN, IMAGENET_STD, categories
    )


def _images(n: int = 3) -> list[np.ndarray]:
    generator = np.random.default_rng(0)
    return [generator.integers(0, 256, (20, 24, 3), dtype=np.uint8) for _ in range(n)]


def _snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: value.clone() for name, value in model.state_dict().items()}


def _bitwise_equal(model: nn.Module, saved: dict[str, torch.Tensor]) -> bool:
    state = model.state_dict()

    def raw(tensor: torch.Tensor) -> torch.Tensor:
        return tensor.reshape(-1).view(torch.uint8)

    return state.keys() == saved.keys() and all(
        state[k].dtype == saved[k].dtype and torch.equal(raw(state[k]), raw(saved[k]))
        for k in state
    )


class Scale(nn.Module):
    """Per-channel scale: a parameter without ``reset_parameters``."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor([1.5, -0.5, 2.0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale.view(1, 3, 1, 1)


class WithNorm(TinyCNN):
    """TinyCNN with a batch norm (running statistics) and a bare parameter."""

    def __init__(self) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(4)
        self.norm.running_mean.uniform_(-1, 1)
        self.norm.running_var.uniform_(0.5, 2)
        with torch.no_grad():
            self.norm.weight.uniform_(0.5, 1.5)
            self.norm.bias.uniform_(-1, 1)
        self.scaler = Scale()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.scaler(x)
        x = self.relu2(self.conv2(self.norm(self.relu1(self.conv1(x)))))
        return self.fc(self.pool(x).flatten(1))


def test_restored_brings_back_every_bit_on_exit_and_on_error() -> None:
    model = WithNorm().eval()
    saved = _snapshot(model)
    parameters = list(model.parameters())
    with sanity.restored(model):
        sanity.randomise_modules(model, ["fc", "norm", "conv1"], seed=1)
        model.train()
        assert not _bitwise_equal(model, saved)
    assert _bitwise_equal(model, saved) and not model.training
    assert all(a is b for a, b in zip(parameters, model.parameters()))
    with pytest.raises(KeyError), sanity.restored(model):
        sanity.randomise_modules(model, ["conv2"], seed=2)
        raise KeyError("half way")
    assert _bitwise_equal(model, saved)


def test_randomise_modules_changes_only_the_named_ones_reproducibly() -> None:
    model = WithNorm().eval()
    saved = _snapshot(model)
    rng_state = torch.random.get_rng_state()
    with sanity.restored(model):
        sanity.randomise_modules(model, ["norm", "scaler"], seed=5)
        first = _snapshot(model)
    assert torch.equal(torch.random.get_rng_state(), rng_state)
    with sanity.restored(model):
        sanity.randomise_modules(model, ["norm", "scaler"], seed=5)
        assert _bitwise_equal(model, first)
    changed = {k for k in saved if not torch.equal(saved[k], first[k])}
    # The batch norm is reset (weights and running statistics); the bare
    # parameter is redrawn; nothing else moves.
    assert changed == {
        "scaler.scale",
        "norm.weight",
        "norm.bias",
        "norm.running_mean",
        "norm.running_var",
    }
    assert torch.equal(first["norm.running_mean"], torch.zeros(4))  # reset stats
    model2 = WithNorm().eval()
    model2.load_state_dict(saved)
    with sanity.restored(model2):
        sanity.randomise_modules(model2, ["conv1"], seed=5)
        changed = {
            k for k, v in model2.state_dict().items() if not torch.equal(v, saved[k])
        }
    assert changed == {"conv1.weight", "conv1.bias"}
    with pytest.raises(ValueError, match="nope"):
        sanity.randomise_modules(model, ["nope"], seed=0)


def test_default_and_grouped_stages_run_from_the_output_down() -> None:
    model = nn.Sequential()  # children expanded one level, parameterless left out
    model.add_module(
        "body", nn.Sequential(nn.Conv2d(3, 3, 1), nn.ReLU(), nn.Conv2d(3, 3, 1))
    )
    model.add_module("pool", nn.AdaptiveAvgPool2d(1))
    model.add_module("fc", nn.Linear(3, 2))
    stages = sanity.default_stages(model)
    assert stages == [("fc",), ("body.2",), ("body.0",)]
    assert sanity.default_stages(TinyCNN()) == [("fc",), ("conv2",), ("conv1",)]
    assert sanity.group_stages(stages, 2) == [("fc",), ("body.2", "body.0")]
    assert sanity.group_stages(stages, 1) == [("fc", "body.2", "body.0")]
    assert sanity.group_stages(stages, 9) == stages
    assert sanity.stage_label(("body.2", "body.0")) == "body.2..body.0"


def test_similarity_measures_on_known_pairs() -> None:
    generator = np.random.default_rng(1)
    smooth = np.add.outer(np.sin(np.linspace(0, 3, 32)), np.cos(np.linspace(0, 5, 32)))
    same = sanity.similarities(smooth, smooth)
    assert same == pytest.approx(
        {"spearman": 1.0, "spearman_abs": 1.0, "ssim": 1.0, "hog": 1.0}
    )
    flipped = sanity.similarities(smooth, -smooth)
    assert flipped["spearman"] == pytest.approx(-1.0)
    assert flipped["spearman_abs"] == pytest.approx(1.0)
    noise = sanity.similarities(smooth, generator.normal(size=(32, 32)))
    assert abs(noise["spearman"]) < 0.2 and noise["ssim"] < 0.3 and noise["hog"] < 0.5
    constant = sanity.similarities(smooth, np.zeros((32, 32)))
    assert np.isnan(constant["spearman"]) and np.isnan(constant["hog"])
    with pytest.raises(ValueError, match="^randomised:"):
        sanity.similarities(smooth, smooth[:8])


def _input_edges(model, layer, settings):
    """A map that ignores the model: the input's horizontal gradient."""
    return lambda inputs, target, baselines=None: (
        inputs.diff(dim=3).abs().sum(dim=1, keepdim=True)
    )


def test_a_model_independent_map_fails_and_grad_cam_passes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(
        METHODS, "edges", Method("edges", "Edges", "test", _input_edges)
    )
    bundle = _bundle(TinyCNN().eval())
    kwargs = {"settings": FAST, "progress": False}
    cascading = sanity.model_randomisation(
        bundle, _images(), ["edges", "gradcam"], mode="cascading", **kwargs
    )
    assert [s for s in cascading.stages] == [("fc",), ("conv2",), ("conv1",)]
    edges = cascading.values["edges"]
    for measure in sanity.SIMILARITIES:
        np.testing.assert_allclose(edges[measure], 1.0, atol=1e-9)
    gradcam = cascading.values["gradcam"]
    assert gradcam["spearman"].shape == (3, 3)
    assert np.nanmean(gradcam["spearman"][-1]) < 0.9
    independent = sanity.model_randomisation(
        bundle, _images(), ["gradcam"], mode="independent", **kwargs
    )
    # Stage 0 randomises the same module with the same seed in both modes.
    np.testing.assert_array_equal(
        independent.values["gradcam"]["ssim"][0], gradcam["ssim"][0]
    )
    assert independent.examples["gradcam"].shape == (4, 16, 16)
    summary = sanity.summarize_sanity(cascading, n_resamples=200)
    last = summary["gradcam"]["ssim"][-1]
    assert last.low <= last.mean <= last.high
    differences = sanity.compare_sanity(cascading, "gradcam", "edges", "ssim", 200)
    np.testing.assert_allclose(
        [d.mean for d in differences], np.nanmean(gradcam["ssim"], axis=1) - 1.0
    )
    table = sanity.sanity_table(cascading, summary)
    assert "| edges | up to fc | 1.00" in table
    data = sanity.sanity_json(cascading, summary)
    assert data["stages"] == [["fc"], ["conv2"], ["conv1"]]
    assert data["methods"]["edges"]["ssim"]["mean"] == pytest.approx([1.0, 1.0, 1.0])
    json.dumps(data)  # JSON-ready


class FailingCNN(TinyCNN):
    """Raises in its ``calls_left``-th forward pass, noting if weights had changed."""

    def __init__(self, calls_left: int) -> None:
        super().__init__()
        self.calls_left = calls_left
        self.trained = None
        self.changed_when_failing = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.trained is None:
            self.trained = [p.detach().clone() for p in self.parameters()]
        self.calls_left -= 1
        if self.calls_left == 0:
            self.changed_when_failing = not all(
                torch.equal(p, q) for p, q in zip(self.parameters(), self.trained)
            )
            raise RuntimeError("failure half way")
        return super().forward(x)


@pytest.mark.parametrize("mode", sanity.MODES)
def test_model_is_restored_bitwise_when_a_method_fails_half_way(mode: str) -> None:
    # Passes: the targets, the trained maps, then one per stage.
    model = FailingCNN(calls_left=4).eval()
    saved = _snapshot(model)
    with pytest.raises(RuntimeError, match="failure half way"):
        sanity.model_randomisation(
            _bundle(model), _images(), ["gradcam"], FAST, mode=mode, progress=False
        )
    assert model.changed_when_failing  # it failed on a randomised model
    assert _bitwise_equal(model, saved)
    ok = sanity.model_randomisation(
        _bundle(TinyCNN().eval()), _images(), ["gradcam"], FAST, progress=False
    )
    assert ok.n_images == 3


@pytest.mark.parametrize("mode", sanity.MODES)
def test_a_model_in_training_mode_keeps_its_batch_norm_statistics(mode: str) -> None:
    # In training mode every forward pass updates the running statistics and
    # the pass counter: the targets' pass as much as the maps'.
    model = WithNorm().train()
    saved = _snapshot(model)
    sanity.model_randomisation(
        _bundle(model), _images(), ["gradcam"], FAST, mode=mode, progress=False
    )
    assert _bitwise_equal(model, saved)
    assert model.training and model.norm.training


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"methods": ["nope"]}, "^methods:"),
        ({"methods": []}, "^methods:"),
        ({"mode": "bottom_up"}, "^mode:"),
        ({"images": []}, "^images:"),
        ({"stages": [("conv9",)]}, "conv9"),
        ({"stages": [("fc",), ("conv2",)], "seed": [1]}, "^seed:"),
        ({"batch_size": 0}, "^batch_size:"),
    ],
)
def test_bad_arguments_are_refused_before_any_change(
    kwargs: dict, message: str
) -> None:
    model = TinyCNN().eval()
    saved = _snapshot(model)
    arguments = {"images": _images(1), "methods": ["gradcam"], **kwargs}
    with pytest.raises(ValueError, match=message):
        sanity.model_randomisation(_bundle(model), progress=False, **arguments)
    assert _bitwise_equal(model, saved)


def test_figure_has_a_map_row_per_method_and_a_curve_per_measure() -> None:
    result = sanity.model_randomisation(
        _bundle(TinyCNN().eval()), _images(2), ["gradcam", "igcam"], FAST,
        progress=False,
    )  # fmt: skip
    figure = sanity.randomisation_figure(result)
    axes = figure.get_axes()
    assert len(axes) == 2 * (2 + 3) + len(sanity.SIMILARITIES)


class TwoConv(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 6, 3, padding=1)
        )
        self.head = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).relu().mean(dim=(2, 3)))


@pytest.mark.parametrize("method", ["gradcam", "igcam"])
def test_cascading_spearman_equals_quantus_mprt_where_definitions_match(
    method: str,
) -> None:
    quantus = pytest.importorskip("quantus")
    from captum_igcam.evaluation.quantus_adapter import explain

    torch.manual_seed(0)
    model = TwoConv().eval()
    bundle = ModelBundle(
        "two-conv", model, "features.2", 16, IMAGENET_MEAN, IMAGENET_STD,
        ["a", "b", "c"],
    )  # fmt: skip
    images = _images(4)
    x = torch.stack([bundle.preprocess(image) for image in images])
    with torch.no_grad():
        y = model(x).argmax(dim=1)
    seed = 7
    # Quantus: every module with reset_parameters, last registered first,
    # each reset after torch.manual_seed(seed + 1); no abs, no normalising.
    modules = [n for n, m in model.named_modules() if hasattr(m, "reset_parameters")]
    settings = MethodSettings(n_steps=3)
    metric = quantus.MPRT(
        similarity_func=quantus.similarity_func.correlation_spearman,
        layer_order="top_down",
        seed=seed,
        abs=False,
        normalise=False,
        disable_warnings=True,
    )
    theirs = metric(
        model=model,
        x_batch=x.numpy(),
        y_batch=y.numpy(),
        a_batch=None,
        explain_func=explain,
        explain_func_kwargs={
            "method": method,
            "layer": "features.2",
            "settings": settings,
            "baselines": torch.zeros(1, 3, 16, 16),
        },
        device="cpu",
    )
    ours = sanity.model_randomisation(
        bundle,
        images,
        [method],
        MethodSettings(n_steps=3, baseline="mean"),
        stages=[(name,) for name in reversed(modules)],
        seed=[seed + 1] * len(modules),
        progress=False,
    )
    assert list(theirs)[1:] == list(reversed(modules))
    assert np.isfinite(ours.values[method]["spearman"]).sum() >= 8
    for k, name in enumerate(reversed(modules)):
        np.testing.assert_allclose(
            ours.values[method]["spearman"][k], theirs[name], rtol=1e-5, atol=1e-6
        )


def tiny_imagenet_bundle() -> ModelBundle:
    """A 32 px, 1000-class TinyCNN for the command line (``--model`` callable)."""
    torch.manual_seed(0)
    categories = [f"class {i}" for i in range(1000)]
    model = TinyCNN(classes=1000).eval()
    return ModelBundle(
        "tiny", model, "conv2", 32, IMAGENET_MEAN, IMAGENET_STD, categories
    )


def test_benchmark_runs_sanity_checks_and_road_by_option(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "result.json"
    argv = ["benchmark", "--model", f"{__name__}:tiny_imagenet_bundle", "--n", "2"]
    argv += ["--methods", "gradcam,igcam", "--steps", "2", "--curve-steps", "2"]
    argv += ["--sanity", "cascading,independent", "--sanity-stages", "2", "--road"]
    assert main([*argv, "--json", str(out), "--no-progress"]) == 0
    result = json.loads(out.read_text())
    assert result["settings"]["metric_families"] == ["road"]
    for row in result["methods"].values():
        assert 0.0 <= row["road_morf"] <= 1.0 and 0.0 <= row["road_lerf"] <= 1.0
    assert set(result["sanity"]) == {"cascading", "independent"}
    cascading = result["sanity"]["cascading"]
    assert cascading["stages"] == [["fc"], ["conv2", "conv1"]]
    assert cascading["n_images"] == 2
    assert set(cascading["methods"]) == {"gradcam", "igcam"}
    assert len(cascading["methods"]["igcam"]["ssim"]["values"][1]) == 2
    table = capsys.readouterr().out
    assert "ROAD MoRF" in table and "Model randomisation (independent)" in table
    assert "| igcam | up to conv2..conv1 |" in table


def test_benchmark_refuses_an_unknown_sanity_mode(
    capsys: pytest.CaptureFixture,
) -> None:
    with pytest.raises(SystemExit) as raised:
        main(["benchmark", "--sanity", "cascading,bottom-up"])
    assert raised.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.endswith(
        "argument --sanity: expected a comma-separated list from cascading, "
        "independent, got 'cascading,bottom-up'"
    )


@pytest.fixture
def study(monkeypatch: pytest.MonkeyPatch):
    """benchmarks/studies/sanity_study.py and benchmarks/measurements/imagenet_time.py,
    imported."""
    for folder in ("lib", "measurements", "studies"):
        monkeypatch.syspath_prepend(str(ROOT / "benchmarks" / folder))
    import imagenet_time
    import sanity_study

    return sanity_study, imagenet_time


def test_docs_numbers_are_the_committed_study_outputs(study) -> None:
    sanity_study, imagenet_time = study
    data = json.loads(
        (ROOT / "benchmarks" / "studies" / "sanity_study.json").read_text()
    )
    page = (ROOT / "docs" / "sanity.md").read_text()
    assert page == sanity_study.render(page, sanity_study.blocks(data))
    assert "(not run)" not in page
    for part in data["parts"]:
        if not part.endswith("/road"):
            short = part.replace("efficientnet-", "").replace("/", "_")
            assert f"images/sanity_{short}.png" in page
            assert (ROOT / "docs" / "images" / f"sanity_{short}.png").is_file()
    timing = json.loads(
        (ROOT / "benchmarks" / "measurements" / "imagenet_time.json").read_text()
    )
    variants = (ROOT / "docs" / "variants.md").read_text()
    assert variants == sanity_study.render(
        variants, {"imagenet-time": imagenet_time.block(timing)}
    )
    assert all(option in variants for option in imagenet_time.OPTIONS)


def test_docs_conclusions_hold_in_the_committed_study() -> None:
    """The claims docs/sanity.md makes in words, against the study's numbers."""
    data = json.loads(
        (ROOT / "benchmarks" / "studies" / "sanity_study.json").read_text()
    )
    cascades = [e for p, e in data["parts"].items() if p.endswith("/cascading")]
    assert len(cascades) == 3
    excluding = []
    for entry in cascades:
        methods = entry["methods"]
        # Integrated Grad-CAM changes like Grad-CAM: its |map| rank
        # correlation stays below 0.6, and the paired difference to
        # Grad-CAM's excludes 0 at one stage of one model only.
        assert max(methods["igcam"]["spearman_abs"]["mean"]) < 0.6
        differences = entry["differences_vs_gradcam"]["igcam"]["spearman_abs"]
        excluding.extend(low > 0.0 or high < 0.0 for _, low, high in differences)
        # Both layer CAMs move well away from their trained map after the
        # logits alone.
        for name in ("gradcam", "igcam"):
            assert methods[name]["spearman_abs"]["ci95"][0][1] < 0.85
        # Input-space IG keeps the most HOG structure at every stage.
        for k in range(len(entry["stages"])):
            hog = {name: table["hog"]["mean"][k] for name, table in methods.items()}
            assert max(hog, key=hog.get) == "ig"
    assert sum(excluding) == 1
    road = data["parts"]["efficientnet-lite0/road"]
    # Deletion ranks input-space IG first, ROAD's MoRF order ranks it last.
    assert road["orders"]["deletion_auc"][0] == "ig"
    assert road["orders"]["road_morf"][-1] == "ig"
    assert road["orders"]["insertion_auc"][-1] == "ig"
    assert road["agreement"]["deletion_auc~road_morf"] <= 0.0
    differences = road["methods"]["igcam"]["difference_vs_gradcam"]
    assert differences["road_morf"][2] < 0.0 and differences["insertion_auc"][2] < 0.0
    for name in ("gradcam", "igcam", "layer-ig"):
        for metric in ("deletion_auc", "road_morf", "insertion_auc", "road_lerf"):
            assert (
                abs(
                    road["methods"][name][metric]["mean"]
                    - (road["methods"]["gradcam"][metric]["mean"])
                )
                < 0.05
            )
    independent = data["parts"]["efficientnet-lite0/independent"]["methods"]
    for name in ("gradcam", "igcam"):
        low, high = independent[name]["spearman_abs"]["ci95"][-1]
        assert low <= 0.0 <= high
