"""pytorch-grad-cam's methods in the registry (the ``peers`` extra).

- the cross-library test: pytorch-grad-cam's Grad-CAM and Captum's
  ``LayerGradCam`` give the same map, and the library's own output is that
  map min-max scaled and resized (the documented scaling);
- where the methods cannot differ: at a layer followed by global average
  pooling and a linear layer, exact reductions to CAM;
- the adapter: targets, the memory budget of the batched methods, the
  user's model left as it was (also on error), the error without the extra.
"""

from __future__ import annotations

import numpy as np
import pytest
import pytorch_grad_cam  # the test extra installs the peers extra
import torch
from captum.attr import LayerGradCam
from helpers import (
    InjectedFailure,
    TinyCNN,
    assert_same_state,
    make_inputs,
    make_model,
    model_state,
    nth_pass_with_batch,
)
from pytorch_grad_cam.utils.image import scale_cam_image
from torch import nn

from captum_igcam import IntegratedLayerGradCam
from captum_igcam.app import peer_methods
from captum_igcam.app.methods import METHODS
from captum_igcam.app.settings import MethodSettings

#: float64 throughout: the reductions below hold to rounding (RTOL, ATOL),
#: except for the library's own epsilons, which keep XGrad-CAM (1e-7 added to
#: each channel's activation sum) and Grad-CAM++ (1e-6 added beside 2 g^2,
#: g of order 1 here) within EPSILON_RTOL of the exact values.
RTOL, ATOL = 1e-9, 1e-12
EPSILON_RTOL = 1e-5


def _peer(name: str, model: nn.Module, layer: nn.Module, **settings):
    return METHODS[name].build(model, layer, MethodSettings(**settings))


def _head_model() -> TinyCNN:
    """TinyCNN (relu2 -> global average pool -> linear), large head weights.

    Head weights of order h * w = 64 make the class-score gradient at relu2,
    ``W / 64``, of order 1, so that Grad-CAM++'s ``eps`` (1e-6 beside
    ``2 g^2``) stays below the tolerance.
    """
    model = TinyCNN(channels=6, classes=5).double().eval()
    with torch.no_grad():
        model.fc.weight.mul_(64.0 * 4)
    return model


def _cam(model: TinyCNN, inputs: torch.Tensor, target: int) -> torch.Tensor:
    """CAM (Zhou et al.): ``sum_k W_ck A_k`` at relu2, ``(N, 1, h, w)``."""
    activations = model.relu2(model.conv2(model.relu1(model.conv1(inputs))))
    weights = model.fc.weight[target]
    return torch.einsum("k,nkhw->nhw", weights, activations)[:, None], activations


# --------------------------------------------------------------------------
# Cross-library: pytorch-grad-cam's Grad-CAM is Captum's LayerGradCam.


@pytest.mark.parametrize("layer_name", ["conv2", "relu2"])
def test_library_gradcam_equals_captum_layer_grad_cam(layer_name):
    model = make_model()
    inputs = make_inputs()
    layer = getattr(model, layer_name)
    target = torch.tensor([1, 3])
    captum_map = LayerGradCam(model, layer).attribute(
        inputs, target=target, relu_attributions=True
    )
    ours = _peer("pgc-gradcam", model, layer)(inputs, target)
    assert ours.shape == captum_map.shape == (2, 1, 8, 8)
    assert captum_map.amax() > 0
    torch.testing.assert_close(ours, captum_map, rtol=RTOL, atol=ATOL)

    # The library's public output is that map min-max scaled per example and
    # resized to the input with OpenCV (per layer), then min-max scaled again
    # (after averaging the layers): the documented scaling.
    targets = [
        pytorch_grad_cam.utils.model_targets.ClassifierOutputTarget(t)
        for t in target.tolist()
    ]
    with pytorch_grad_cam.GradCAM(model, [layer]) as cam:
        public = cam(inputs, targets)
    expected = scale_cam_image(
        scale_cam_image(captum_map[:, 0].detach().numpy(), (8, 8))
    )
    np.testing.assert_allclose(public, expected, rtol=1e-5, atol=1e-6)


def test_registry_gradcam_and_library_gradcam_agree_on_the_embedded_model():
    """The same map on a real network at its default layer (float32)."""
    settings = MethodSettings()
    bundle = settings.load_model()
    layer = bundle.layer()
    inputs = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    ours = METHODS["gradcam"].build(bundle.model, layer, settings)(inputs, 281)
    theirs = METHODS["pgc-gradcam"].build(bundle.model, layer, settings)(inputs, 281)
    assert ours.shape == theirs.shape == (1, 1, 7, 7)
    torch.testing.assert_close(theirs, ours, rtol=1e-4, atol=1e-6 * float(ours.max()))


# --------------------------------------------------------------------------
# Where the methods cannot differ: relu2 is followed by global average
# pooling and a linear layer, so dS_c/dA_kij = W_ck / (h w) at every position
# and at every input, every point of an integration path included.


def _check(actual: torch.Tensor, expected: torch.Tensor, rtol: float = RTOL) -> None:
    expected = expected.detach()
    assert float(expected.amax()) > 0, "a map of zeros would prove nothing"
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=ATOL)


@pytest.fixture
def head():
    model = _head_model()
    inputs = torch.randn(3, 3, 8, 8, dtype=torch.float64)
    return model, inputs, 2


@pytest.mark.parametrize("name", ["gradcam", "pgc-gradcam", "xgradcam", "hirescam"])
def test_grad_cam_xgrad_cam_and_hires_cam_are_cam(head, name):
    model, inputs, target = head
    cam, _ = _cam(model, inputs, target)
    actual = _peer(name, model, model.relu2)(inputs, target)
    _check(actual, cam.clamp(min=0) / 64, EPSILON_RTOL if name == "xgradcam" else RTOL)


def test_layer_cam_is_cam_over_the_positively_weighted_channels(head):
    model, inputs, target = head
    _, activations = _cam(model, inputs, target)
    positive = model.fc.weight[target].clamp(min=0)
    assert (model.fc.weight[target] < 0).any(), "no negative weight to leave out"
    expected = torch.einsum("k,nkhw->nhw", positive, activations)[:, None] / 64
    _check(_peer("layercam", model, model.relu2)(inputs, target), expected)


def test_grad_cam_plus_plus_is_cam_over_the_positively_weighted_channels(head):
    """Its pixel weights are constant, so the map is CAM over the channels
    with ``W_ck > 0``, each weighted by ``W_ck / (2 + W_ck m_k)`` where
    ``m_k`` is the channel's spatial mean (the pooled feature)."""
    model, inputs, target = head
    _, activations = _cam(model, inputs, target)
    weights = model.fc.weight[target]
    pooled = activations.mean(dim=(2, 3))  # (N, K)
    channel = weights.clamp(min=0) / (2 + weights * pooled)
    expected = torch.einsum("nk,nkhw->nhw", channel, activations)[:, None]
    actual = _peer("gradcam++", model, model.relu2)(inputs, target)
    _check(actual, expected.clamp(min=0), EPSILON_RTOL)


@pytest.mark.parametrize("subtract", [False, True])
@pytest.mark.parametrize("method", ["gausslegendre", "riemann_left"])
def test_integrated_grad_cam_is_the_path_average_of_relu_cam(head, subtract, method):
    """``IGC = sum_m s_m ReLU(CAM(x_m) - [CAM(x')]) / (h w)``: nothing to
    integrate in the gradient."""
    from captum.attr._utils.approximation_methods import approximation_parameters

    model, inputs, target = head
    baselines = torch.randn_like(inputs) * 0.5
    n_steps = 7
    step_sizes, alphas = approximation_parameters(method)
    cam_baseline, _ = _cam(model, baselines, target)
    expected = torch.zeros_like(cam_baseline)
    for alpha, size in zip(alphas(n_steps), step_sizes(n_steps), strict=True):
        cam_point, _ = _cam(model, baselines + alpha * (inputs - baselines), target)
        if subtract:
            cam_point = cam_point - cam_baseline
        expected += size * cam_point.clamp(min=0) / 64
    actual = IntegratedLayerGradCam(model, model.relu2).attribute(
        inputs,
        target=target,
        baselines=baselines,
        n_steps=n_steps,
        method=method,
        subtract_baseline_activations=subtract,
    )
    _check(actual, expected)


def test_before_the_activation_the_methods_differ():
    """At conv2 (before relu2) the gradient is masked by the ReLU: the
    reductions above do not hold and the methods give different maps."""
    model = _head_model()
    inputs = torch.randn(3, 3, 8, 8, dtype=torch.float64)
    maps = {
        name: _peer(name, model, model.conv2)(inputs, 2)
        for name in ("gradcam", "hirescam", "layercam")
    }
    assert not torch.allclose(maps["gradcam"], maps["hirescam"], rtol=1e-3)
    assert not torch.allclose(maps["hirescam"], maps["layercam"], rtol=1e-3)


# --------------------------------------------------------------------------
# The adapter.


def test_every_peer_method_gives_a_non_negative_layer_map(head):
    model, inputs, target = head
    for peer in peer_methods.PEER_METHODS:
        layer_map = _peer(peer.name, model, model.relu2)(inputs, target)
        assert layer_map.shape == (3, 1, 8, 8), peer.name
        assert layer_map.dtype == inputs.dtype, peer.name
        assert bool((layer_map >= 0).all()), peer.name
        assert bool(torch.isfinite(layer_map).all()), peer.name


def test_class_specific_methods_depend_on_the_target(head):
    model, inputs, _ = head
    for peer in peer_methods.PEER_METHODS:
        function = _peer(peer.name, model, model.relu2)
        first, second = function(inputs, 0), function(inputs, 1)
        assert torch.equal(first, second) is (not peer.class_specific), peer.name


def test_targets_per_example_equal_one_call_per_example(head):
    model, inputs, _ = head
    function = _peer("gradcam++", model, model.relu2)
    targets = torch.tensor([0, 4, 2])
    together = function(inputs, targets)
    for index, target in enumerate(targets.tolist()):
        alone = function(inputs[index : index + 1], target)
        torch.testing.assert_close(together[index : index + 1], alone)


def test_a_score_per_example_is_explained_without_a_class():
    """Target None: the forward function's one score per example (the
    registry's form for a detection score)."""
    model = TinyCNN().double().eval()

    class FirstScore(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, inputs):
            return self.model(inputs)[:, 0]

    inputs = make_inputs()
    from_score = _peer("hirescam", FirstScore(), model.conv2)(inputs, None)
    from_class = _peer("hirescam", model, model.conv2)(inputs, 0)
    torch.testing.assert_close(from_score, from_class)
    with pytest.raises(ValueError, match="target: None needs a forward function"):
        _peer("hirescam", model, model.conv2)(inputs, None)


@pytest.mark.parametrize("target", [(0, 1), [0], "cat"])
def test_unusable_targets_are_refused_naming_target(target):
    with pytest.raises(ValueError, match="^target: expected a class index"):
        peer_methods.peer_targets(target, 2)


@pytest.mark.parametrize("name", [peer.name for peer in peer_methods.PEER_METHODS])
def test_the_model_is_left_as_it_was(name):
    model = make_model()
    model.train()  # the library calls eval(): the flag must come back
    for parameter in model.parameters():
        parameter.grad = torch.full_like(parameter, 0.5)
    inputs = (make_inputs(),)
    before = model_state(model, inputs)
    grads = [parameter.grad.clone() for parameter in model.parameters()]
    model.eval()
    model.train()
    _peer(name, model, model.relu2)(inputs[0], 1)
    assert_same_state(before, model_state(model, inputs))
    for parameter, grad in zip(model.parameters(), grads, strict=True):
        torch.testing.assert_close(parameter.grad, grad, rtol=0, atol=0)


def _curve_rows(rows: int):
    """A stand-in for ``chunk_sizes``: ``rows`` perturbed images per pass."""
    return lambda *args: type("Sizes", (), {"curve_rows": rows})()


@pytest.mark.parametrize("name", ["scorecam", "ablationcam"])
def test_batched_methods_score_within_the_memory_budget(name, monkeypatch):
    """Their passes hold as many perturbed images as the budget's curve rows."""
    model = make_model()
    monkeypatch.setattr(peer_methods, "chunk_sizes", _curve_rows(3))
    _peer(name, model, model.relu2)(make_inputs(), 1)
    # One image per call: its unperturbed pass (1 row), then its 4 channels'
    # perturbed copies in passes of 3 and 1.
    assert max(model.batch_sizes) == 3, model.batch_sizes
    assert model.batch_sizes.count(3) == 2, model.batch_sizes


@pytest.mark.parametrize(
    "name, model_options",
    [
        # The backward pass fails, after the library registered its hooks.
        ("gradcam++", {"fail_in_backward": True}),
        # The first pass of perturbed copies (4 rows) fails: for Ablation-CAM
        # while its ablation layer stands in for relu2.
        ("scorecam", {"fail_when": nth_pass_with_batch(1, 4)}),
        ("ablationcam", {"fail_when": nth_pass_with_batch(1, 4)}),
    ],
)
def test_the_model_is_left_as_it_was_when_the_call_fails(
    name, model_options, monkeypatch
):
    model = make_model(**model_options)
    inputs = (make_inputs(),)
    relu2 = model.relu2
    before = model_state(model, inputs)
    monkeypatch.setattr(peer_methods, "chunk_sizes", _curve_rows(4))
    with pytest.raises(InjectedFailure):
        _peer(name, model, model.relu2)(inputs[0], 1)
    assert model.relu2 is relu2
    assert_same_state(before, model_state(model, inputs))


def test_library_versions_are_recorded():
    versions = peer_methods.library_versions()
    assert versions["grad-cam"].startswith("1.5.")
    assert versions["torch"] == torch.__version__.split("+")[0]


def test_ablation_cam_at_a_layer_called_with_keyword_arguments():
    """EfficientNet calls its blocks with ``drop_connect_rate=``: the
    ablation layer that stands in for one takes and ignores it."""

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)

        def forward(self, x, drop_connect_rate=None):
            return torch.relu(self.conv(x))

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.block = Block()
            self.fc = nn.Linear(4, 3)

        def forward(self, x):
            return self.fc(self.block(x, drop_connect_rate=0.2).mean(dim=(2, 3)))

    model = Net().double().eval()
    inputs = (make_inputs(),)
    block = model.block
    before = model_state(model, inputs)
    layer_map = _peer("ablationcam", model, model.block)(inputs[0], 1)
    assert layer_map.shape == (2, 1, 8, 8) and float(layer_map.amax()) > 0
    assert model.block is block
    assert_same_state(before, model_state(model, inputs))


def test_methods_without_reshape_support_refuse_a_layer_that_needs_one():
    from helpers import small_vit

    from captum_igcam.reshapes import vit_tokens

    vit = small_vit()
    layer = vit.encoder.layers[-1].ln_1
    settings = MethodSettings(reshape_transform=vit_tokens())
    for name in ("ablationcam", "shapleycam"):
        with pytest.raises(ValueError, match=f"^methods: {name} reads .N, C, h, w."):
            METHODS[name].build(vit, layer, settings)
    # The gradient methods take the transform.
    layer_map = METHODS["layercam"].build(vit, layer, settings)(
        torch.randn(1, 3, 32, 32, dtype=torch.float64), 1
    )
    assert layer_map.shape == (1, 1, 4, 4)
