"""The method registry shared by the command line and the benchmark.

Each registered method is checked against what it is documented to compute:
the naive references of tests/reference.py, or a known identity of the
method, never against the very call the registry wraps.
"""

from __future__ import annotations

import pytest
import torch
from helpers import TinyCNN
from reference import naive_integrated_grad_cam, naive_layer_path_grad_cam
from tolerances import assert_close_to

from captum_igcam import channels_last_grid
from captum_igcam.app import peer_methods
from captum_igcam.app.methods import METHODS, MethodSettings, register_method
from captum_igcam.app.peer_methods import PEER_METHODS

TARGETS = [1, 3]


@pytest.fixture
def model() -> TinyCNN:
    return TinyCNN().double().eval()


@pytest.fixture
def inputs() -> torch.Tensor:
    return torch.randn(2, 3, 8, 8, dtype=torch.float64)


def _maps(name, model, inputs, baselines, settings) -> torch.Tensor:
    return METHODS[name].build(model, model.conv2, settings)(inputs, TARGETS, baselines)


#: The registry's methods that can run here: the peer methods where their
#: extra is installed (tests/test_peers.py tests them in detail).
RUNNABLE = sorted(
    name
    for name in METHODS
    if peer_methods.installed() or name not in {p.name for p in PEER_METHODS}
)


@pytest.mark.parametrize("name", RUNNABLE)
def test_every_method_gives_one_map_per_example(model, inputs, name):
    maps = _maps(name, model, inputs, torch.zeros_like(inputs), MethodSettings(4))
    assert maps.shape == (2, 1, 8, 8)
    assert torch.isfinite(maps).all()


def test_gradcam_is_the_relu_of_one_grad_cam_term(model, inputs):
    """Grad-CAM is the integrand at the input: one right-Riemann step, A(x)."""
    expected = naive_integrated_grad_cam(
        model,
        model.conv2,
        (inputs,),
        (torch.zeros_like(inputs),),
        TARGETS,
        "riemann_right",
        1,
        subtract_baseline_activations=False,
    )
    assert_close_to(_maps("gradcam", model, inputs, None, MethodSettings()), expected)


@pytest.mark.parametrize(
    ("name", "reference_kwargs", "factor"),
    [
        ("igcam", {}, 1),
        # The paper's figure: A(x_a) - A(x').
        ("igcam-paper", {"subtract_baseline_activations": True}, 1),
        # The notebook: riemann_left, A(x_a) and the sum of the steps.
        (
            "igcam-notebook",
            {"method": "riemann_left", "subtract_baseline_activations": False},
            6,
        ),
    ],
)
def test_integrated_grad_cam_variants_match_the_naive_reference(
    model, inputs, name, reference_kwargs, factor
):
    baselines = torch.full_like(inputs, 0.2)
    settings = MethodSettings(n_steps=6, method="riemann_middle", internal_batch_size=4)
    reference_kwargs = {"method": "riemann_middle", **reference_kwargs}
    expected = naive_integrated_grad_cam(
        model,
        model.conv2,
        (inputs,),
        (baselines,),
        TARGETS,
        n_steps=6,
        per_step_relu=True,
        **reference_kwargs,
    )
    maps = _maps(name, model, inputs, baselines, settings)
    assert_close_to(maps, factor * expected)


def test_layer_path_method_matches_the_layer_space_reference(model, inputs):
    baselines = torch.full_like(inputs, 0.2)
    settings = MethodSettings(n_steps=5, method="riemann_right", internal_batch_size=4)
    expected = naive_layer_path_grad_cam(
        model, model.conv2, inputs, baselines, TARGETS, "riemann_right", 5
    )
    assert_close_to(_maps("igcam-layer", model, inputs, baselines, settings), expected)


@pytest.mark.parametrize("name", ["layer-ig", "ig"])
def test_integrated_gradients_maps_are_complete(model, inputs, name):
    """Completeness: the attributions add up to S(x) - S(x')."""
    baselines = torch.full_like(inputs, -0.1)
    maps = _maps(name, model, inputs, baselines, MethodSettings(n_steps=64))
    with torch.no_grad():
        rows = torch.arange(2)
        difference = model(inputs)[rows, TARGETS] - model(baselines)[rows, TARGETS]
    gap = (maps.sum(dim=(1, 2, 3)) - difference).abs()
    # Gauss-Legendre over the kinks of the ReLUs: not exact, close.
    assert (gap <= 1e-2 * difference.abs().max()).all(), (gap, difference)


def test_a_name_is_registered_once():
    with pytest.raises(ValueError, match="name: method 'igcam' is already registered"):
        register_method("igcam", "again", "again")


class ChannelsLastLayerNet(TinyCNN):
    """TinyCNN whose explained layer hands on ``(N, H, W, C)``, as Swin's
    final norm does."""

    def __init__(self) -> None:
        super().__init__()
        self.to_channels_last = torch.nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.relu2(self.conv2(self.relu1(self.conv1(x))))
        hidden = self.to_channels_last(hidden.permute(0, 2, 3, 1))
        return self.fc(hidden.mean(dim=(1, 2)))


# Ablation-CAM and ShapleyCAM refuse a reshape transform (tests/test_peers.py).
@pytest.mark.parametrize(
    "name", sorted(set(RUNNABLE) - {"ig", "ablationcam", "shapleycam"})
)
def test_every_layer_method_reads_the_layer_through_the_models_reshape(inputs, name):
    """A (N, H, W, C) layer gives (N, 1, H, W) maps: every layer method gets
    the settings' reshape_transform."""
    model = ChannelsLastLayerNet().double().eval()
    settings = MethodSettings(n_steps=3, reshape_transform=channels_last_grid())
    maps = METHODS[name].build(model, model.to_channels_last, settings)(
        inputs, TARGETS, torch.zeros_like(inputs)
    )
    assert maps.shape == (2, 1, 8, 8)
    assert maps.abs().amax() > 0


class PassSizes(TinyCNN):
    """TinyCNN recording the rows of every pass after the explained layer
    ``conv2`` (the path points of input- and layer-space methods alike)."""

    def __init__(self) -> None:
        super().__init__()
        self.passes: list[int] = []
        self.relu2.register_forward_hook(
            lambda module, args, output: self.passes.append(len(output))
        )


PATH_METHODS = ["igcam", "igcam-paper", "igcam-notebook", "igcam-layer", "layer-ig"]


@pytest.mark.parametrize("name", [*PATH_METHODS, "ig"])
def test_path_methods_bound_their_passes_by_the_memory_budget(name):
    from captum_igcam.app.memory import chunk_sizes

    model = PassSizes().eval()
    inputs = torch.randn(1, 3, 64, 64)
    # A budget that holds a few rows of this model, far fewer than 200 points.
    rows = chunk_sizes(model, inputs, budget_mb=1).path_rows
    assert 2 <= rows < 50
    if name == "igcam-layer":  # a row holds the part after the layer only
        whole_model_rows = rows
        rows = chunk_sizes(model, inputs, budget_mb=1, after=model.conv2).path_rows
        assert whole_model_rows < rows < 200
    model.passes.clear()
    settings = MethodSettings(n_steps=200, memory_budget_mb=1)
    maps = METHODS[name].build(model, model.conv2, settings)(inputs, 1)
    assert maps.shape[0] == 1
    assert max(model.passes) == rows  # chunks of the budget's rows...
    assert sum(model.passes) >= 200  # ...that run every path point
    # The user's internal_batch_size wins over the budget.
    model.passes.clear()
    chosen = MethodSettings(n_steps=200, memory_budget_mb=1, internal_batch_size=100)
    METHODS[name].build(model, model.conv2, chosen)(inputs, 1)
    assert max(model.passes) == 100
