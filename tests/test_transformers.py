"""Vision transformers: reshape transforms, checked against the naive reference.

Small torchvision (and timm, when installed) ViTs and Swins with random
weights, in float64, against ``tests/reference.py``, whose token layouts are
written out position by position.
"""

from __future__ import annotations

import inspect
import json

import numpy as np
import pytest
import torch
from captum.attr import LayerGradCam
from helpers import randomise_zero_head, small_vit
from PIL import Image
from reference import CHANNELS_LAST, TokenLayout, naive_integrated_grad_cam
from skimage import data
from tolerances import assert_close_to
from torch import nn
from torchvision.models import SwinTransformer, swin_t, vit_b_16

from captum_igcam import (
    IntegratedLayerGradCam,
    ReshapedLayerGradCam,
    channels_last_grid,
    cli,
    vit_tokens,
)
from captum_igcam.app import models
from captum_igcam.app.transformers import TransformerLayer, transformer_layer
from captum_igcam.dataset_job import maps_io

APPROXIMATION_METHODS = (
    "riemann_left",
    "riemann_right",
    "riemann_middle",
    "riemann_trapezoid",
    "gausslegendre",
)
CLASSES = 5
TARGETS = [1, 3]


def small_swin() -> SwinTransformer:
    """Two stages (8 x 8 then 4 x 4 positions), the second with a shifted window."""
    return (
        SwinTransformer(
            patch_size=[4, 4],
            embed_dim=8,
            depths=[1, 2],
            num_heads=[1, 2],
            window_size=[2, 2],
            num_classes=CLASSES,
        )
        .double()
        .eval()
    )


# name -> (model, explained layer, reshape transform, the reference's layout)
CASES = {
    "vit": (
        small_vit,
        lambda model: model.encoder.layers[-1].ln_1,
        vit_tokens(),
        TokenLayout(prefix=1, height=4, width=4),
    ),
    "swin": (small_swin, lambda model: model.norm, channels_last_grid(), CHANNELS_LAST),
}


def _case(name: str):
    build, pick_layer, reshape, layout = CASES[name]
    model = build()
    return model, pick_layer(model), reshape, layout


def _images(n: int = 2, size: int = 32) -> torch.Tensor:
    return torch.randn(n, 3, size, size, dtype=torch.float64)


def _reference(model, layer, layout, inputs, targets, **options) -> torch.Tensor:
    return naive_integrated_grad_cam(
        model,
        layer,
        (inputs,),
        (torch.zeros_like(inputs),),
        targets,
        layout=layout,
        **options,
    )


def _assert_matches_reference(
    model, layer, reshape, layout, inputs, targets, **options
) -> torch.Tensor:
    """IntegratedLayerGradCam with ``options`` against the reference; returns it."""
    expected = _reference(model, layer, layout, inputs, targets, **options)
    assert expected.abs().max() > 0
    actual = IntegratedLayerGradCam(model, layer).attribute(
        inputs, target=targets, reshape_transform=reshape, **options
    )
    assert_close_to(actual, expected)
    return expected


@pytest.mark.parametrize("method", APPROXIMATION_METHODS)
@pytest.mark.parametrize("case", sorted(CASES))
def test_matches_reference_batched_chunked_and_one_by_one(case, method):
    model, layer, reshape, layout = _case(case)
    inputs = _images()
    expected = _assert_matches_reference(
        model, layer, reshape, layout, inputs, TARGETS, method=method, n_steps=6
    )
    assert expected.shape == (2, 1, 4, 4)
    igcam = IntegratedLayerGradCam(model, layer)
    options = dict(n_steps=6, method=method, reshape_transform=reshape)
    chunked = igcam.attribute(inputs, target=TARGETS, internal_batch_size=5, **options)
    assert_close_to(chunked, expected)
    for example, target in enumerate(TARGETS):
        single = igcam.attribute(
            inputs[example : example + 1], target=target, **options
        )
        assert_close_to(single, expected[example : example + 1])


@pytest.mark.parametrize(
    "switches",
    [
        dict(per_step_relu=False),
        dict(subtract_baseline_activations=False),
        dict(per_step_relu=False, subtract_baseline_activations=False),
    ],
)
@pytest.mark.parametrize("case", sorted(CASES))
def test_matches_reference_for_every_switch(case, switches):
    model, layer, reshape, layout = _case(case)
    _assert_matches_reference(
        model,
        layer,
        reshape,
        layout,
        _images(),
        TARGETS,
        method="riemann_middle",
        n_steps=5,
        **switches,
    )


@pytest.mark.parametrize("case", sorted(CASES))
def test_per_channel_maps_sum_to_the_map(case):
    model, layer, reshape, _ = _case(case)
    inputs = _images()
    igcam = IntegratedLayerGradCam(model, layer)
    options = dict(target=TARGETS, n_steps=4, reshape_transform=reshape)
    summed = igcam.attribute(inputs, **options)
    per_channel = igcam.attribute(inputs, attr_dim_summation=False, **options)
    assert per_channel.shape == (2, 16, 4, 4)
    assert_close_to(per_channel.sum(dim=1, keepdim=True), summed)


@pytest.mark.parametrize("case", sorted(CASES))
def test_grad_cam_with_reshape_matches_reference(case):
    model, layer, reshape, layout = _case(case)
    inputs = _images()
    # Grad-CAM is the reference's one-point case at the input itself.
    expected = _reference(
        model,
        layer,
        layout,
        inputs,
        TARGETS,
        method="riemann_right",
        n_steps=1,
        per_step_relu=False,
        subtract_baseline_activations=False,
    )
    grad_cam = ReshapedLayerGradCam(model, layer)
    actual = grad_cam.attribute(inputs, target=TARGETS, reshape_transform=reshape)
    assert_close_to(actual, expected)
    assert not actual.requires_grad
    relu = grad_cam.attribute(
        inputs, target=TARGETS, relu_attributions=True, reshape_transform=reshape
    )
    assert_close_to(relu, expected.clamp(min=0))


def test_grad_cam_without_reshape_is_captums_layer_grad_cam(tiny_cnn):
    inputs = _images(size=8)
    ours = ReshapedLayerGradCam(tiny_cnn, tiny_cnn.conv2)
    captums = LayerGradCam(tiny_cnn, tiny_cnn.conv2)
    for options in ({}, dict(relu_attributions=True, attr_dim_summation=False)):
        assert torch.equal(
            ours.attribute(inputs, target=2, **options),
            captums.attribute(inputs, target=2, **options),
        )
    parameters = list(inspect.signature(ReshapedLayerGradCam.attribute).parameters)
    theirs = list(inspect.signature(LayerGradCam.attribute).parameters)
    assert parameters == [*theirs, "reshape_transform"]


def test_vit_block_output_gives_a_zero_map_its_first_norm_does_not():
    # Why the literature explains ln_1 of the last block: after the last
    # attention, patch tokens no longer reach the class token the head reads.
    vit = small_vit()
    inputs = _images()
    options = dict(target=TARGETS, n_steps=4, reshape_transform=vit_tokens())
    block_output = IntegratedLayerGradCam(vit, vit.encoder.layers[-1])
    first_norm = IntegratedLayerGradCam(vit, vit.encoder.layers[-1].ln_1)
    signed = dict(per_step_relu=False, **options)
    assert torch.count_nonzero(block_output.attribute(inputs, **signed)) == 0
    assert torch.count_nonzero(first_norm.attribute(inputs, **signed)) == 2 * 16


def test_vit_tokens_places_patch_tokens_row_major():
    batch, channels, height, width = 2, 3, 2, 3
    token = torch.arange(1 + height * width).reshape(1, -1, 1)
    channel = torch.arange(channels).reshape(1, 1, -1)
    sample = torch.arange(batch).reshape(-1, 1, 1)
    tokens = 1000 * sample + 10 * token + channel  # (N, 1 + h * w, C)
    grid = vit_tokens(grid=(height, width))(tokens)
    assert grid.shape == (batch, channels, height, width)
    for n in range(batch):
        for c in range(channels):
            for i in range(height):
                for j in range(width):
                    assert grid[n, c, i, j] == 1000 * n + 10 * (1 + i * width + j) + c


def test_vit_tokens_infers_square_grids_and_skips_extra_prefix_tokens():
    tokens = torch.randn(1, 2 + 9, 4)
    grid = vit_tokens(extra_prefix_tokens=1)(tokens)
    assert torch.equal(grid, tokens[:, 2:].transpose(1, 2).reshape(1, 4, 3, 3))
    no_class_token = vit_tokens(drop_class_token=False)(torch.randn(1, 16, 4))
    assert no_class_token.shape == (1, 4, 4, 4)


def test_channels_last_grid_moves_channels_to_dimension_one():
    tensor = torch.randn(2, 3, 5, 7)
    assert torch.equal(channels_last_grid()(tensor), tensor.permute(0, 3, 1, 2))


@pytest.mark.parametrize(
    ("transform", "shape", "message"),
    [
        (
            vit_tokens(),
            (1, 1 + 7, 4),
            r"expected a square number of patch tokens .*, got 7 after 1",
        ),
        (
            vit_tokens(grid=(2, 2)),
            (1, 1 + 9, 4),
            r"expected 4 patch tokens for vit_tokens\(grid=\(2, 2\)\), got 9",
        ),
        (vit_tokens(), (1, 3, 8, 8), r"expected a \(N, tokens, channels\)"),
        (channels_last_grid(), (2, 4), r"expected a \(N, H, W, C\)"),
    ],
)
def test_reshapes_reject_tensors_they_cannot_read(transform, shape, message):
    with pytest.raises(ValueError, match=message):
        transform(torch.randn(*shape))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(grid=(14,)), "grid: expected"),
        (dict(grid=(0, 14)), "grid: expected"),
        (dict(extra_prefix_tokens=-1), "extra_prefix_tokens: expected"),
    ],
)
def test_vit_tokens_checks_its_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        vit_tokens(**kwargs)


def test_bad_reshape_transforms_get_clear_errors():
    vit = small_vit()
    inputs = _images(n=1)
    igcam = IntegratedLayerGradCam(vit, vit.encoder.layers[-1].ln_1)
    grad_cam = ReshapedLayerGradCam(vit, vit.encoder.layers[-1].ln_1)
    for explainer in (igcam, grad_cam):
        with pytest.raises(TypeError, match="reshape_transform: expected None or"):
            explainer.attribute(inputs, target=0, reshape_transform="vit")
        with pytest.raises(
            ValueError,
            match=r"reshape_transform: expected it to return .* batch size N = \d+",
        ):
            explainer.attribute(
                inputs, target=0, reshape_transform=lambda t: t.reshape(-1, 16)
            )
        with pytest.raises(
            ValueError, match="reshape_transform: expected it to return"
        ):
            explainer.attribute(inputs, target=0, reshape_transform=lambda t: None)
    for module in vit.modules():  # the model is left as it was
        assert not module._forward_hooks and not module._forward_pre_hooks


def test_reshape_changes_nothing_for_cnns(tiny_cnn):
    inputs = _images(size=8)
    igcam = IntegratedLayerGradCam(tiny_cnn, tiny_cnn.conv2)
    plain = igcam.attribute(inputs, target=1, n_steps=4)
    identity = igcam.attribute(
        inputs, target=1, n_steps=4, reshape_transform=lambda tensor: tensor
    )
    assert torch.equal(plain, identity)


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["vit_b_16", "swin_t"])
def test_full_size_torchvision_transformers_match_reference(arch):
    if arch == "vit_b_16":
        model = vit_b_16()
        randomise_zero_head(model)
        layer = model.encoder.layers[-1].ln_1
        reshape, layout = vit_tokens(), TokenLayout(prefix=1, height=14, width=14)
    else:
        model = swin_t()
        layer, reshape, layout = model.norm, channels_last_grid(), CHANNELS_LAST
    model = model.double().eval()
    inputs = _images(n=1, size=224)
    expected = _assert_matches_reference(
        model, layer, reshape, layout, inputs, [7], method="gausslegendre", n_steps=2
    )
    grid = (14, 14) if arch == "vit_b_16" else (7, 7)
    assert expected.shape == (1, 1, *grid)


def _timm_cases():
    timm = pytest.importorskip("timm")
    vit_options = dict(
        pretrained=False,
        img_size=32,
        patch_size=8,
        depth=2,
        embed_dim=16,
        num_heads=2,
        num_classes=CLASSES,
    )
    vit = timm.create_model("vit_tiny_patch16_224", **vit_options)
    deit = timm.create_model("deit_tiny_distilled_patch16_224", **vit_options)
    swin = timm.create_model(
        "swin_tiny_patch4_window7_224",
        pretrained=False,
        img_size=32,
        window_size=2,
        embed_dim=8,
        depths=(1, 2),
        num_heads=(1, 2),
        num_classes=CLASSES,
    )
    return {
        "vit": (vit, vit.blocks[-1].norm1, vit_tokens(), TokenLayout(1, 4, 4)),
        # class and distillation tokens in front of the patches
        "deit-distilled": (
            deit,
            deit.blocks[-1].norm1,
            vit_tokens(extra_prefix_tokens=deit.num_prefix_tokens - 1),
            TokenLayout(2, 4, 4),
        ),
        "swin": (swin, swin.norm, channels_last_grid(), CHANNELS_LAST),
    }


@pytest.mark.parametrize("case", ["vit", "deit-distilled", "swin"])
def test_timm_transformers_match_reference(case):
    model, layer, reshape, layout = _timm_cases()[case]
    model = model.double().eval()
    inputs = _images()
    _assert_matches_reference(
        model,
        layer,
        reshape,
        layout,
        inputs,
        TARGETS,
        method="riemann_trapezoid",
        n_steps=5,
    )
    grad_cam = ReshapedLayerGradCam(model, layer).attribute(
        inputs, target=TARGETS, reshape_transform=reshape
    )
    assert grad_cam.shape == (2, 1, 4, 4)


@pytest.mark.parametrize(
    ("name", "layer", "reshape"),
    [
        ("vit_b_16", "encoder.layers.encoder_layer_11.ln_1", vit_tokens()),
        ("swin_t", "norm", channels_last_grid()),
    ],
)
def test_load_model_picks_the_transformer_layer_and_reshape(name, layer, reshape):
    bundle = models.load_model(name, pretrained=False)
    assert (bundle.layer_name, bundle.reshape_transform) == (layer, reshape)
    assert bundle.input_size == 224
    if name == "vit_b_16":  # torchvision's zero head is drawn at random
        assert bundle.model.heads.head.weight.abs().min() > 0


def test_user_transformers_get_their_layer_too():
    vit = small_vit()
    found = transformer_layer(vit)
    assert found == TransformerLayer(
        "encoder.layers.encoder_layer_1.ln_1", vit_tokens()
    )
    assert transformer_layer(small_swin()).name == "norm"
    assert transformer_layer(nn.Sequential(nn.Linear(2, 2))) is None


def test_timm_transformers_get_their_layer():
    cases = _timm_cases()
    vit, deit, swin = (cases[name][0] for name in ("vit", "deit-distilled", "swin"))
    assert transformer_layer(vit) == TransformerLayer("blocks.1.norm1", vit_tokens())
    assert transformer_layer(deit) == TransformerLayer(
        "blocks.1.norm1", vit_tokens(extra_prefix_tokens=1)
    )
    assert transformer_layer(swin) == TransformerLayer("norm", channels_last_grid())


def test_grad_cam_at_swin_norm_is_cam():
    # The head averages ``norm`` over positions, so the gradient is the same
    # at every position and the Grad-CAM map sums to the logit minus the bias.
    swin = small_swin()
    inputs = _images()
    grad_cam = ReshapedLayerGradCam(swin, swin.norm).attribute(
        inputs, target=TARGETS, reshape_transform=channels_last_grid()
    )
    with torch.no_grad():
        logits = swin(inputs)[[0, 1], TARGETS]
    expected = logits - swin.head.bias[TARGETS]
    assert torch.allclose(grad_cam.sum(dim=(1, 2, 3)), expected, atol=1e-10)


@pytest.mark.slow
@pytest.mark.parametrize(("name", "grid"), [("vit_b_16", 14), ("swin_t", 7)])
def test_cli_explains_random_weight_transformers(name, grid, tmp_path):
    photo = tmp_path / "chelsea.png"
    Image.fromarray(data.chelsea()).save(photo)
    out = tmp_path / "out"
    methods = ("gradcam", "igcam", "layer-ig")
    status = cli.main(
        [
            "explain",
            str(photo),
            "--model",
            name,
            "--random-weights",
            "--steps",
            "2",
            "--methods",
            ",".join(methods),
            "--out",
            str(out),
        ]
    )
    assert status == 0
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["model"] == name
    assert summary["layer"] == models.load_model(name, pretrained=False).layer_name
    for method in methods:
        layer_map = np.load(out / f"chelsea_{method}_layer.npy")
        assert layer_map.shape == (grid, grid)
        assert np.isfinite(layer_map).all() and np.abs(layer_map).max() > 0
        upsampled = np.load(out / f"chelsea_{method}_upsampled.npy")
        assert upsampled.shape == data.chelsea().shape[:2]


TINY_SWIN_MODULE = """
import torch
from torchvision.models import SwinTransformer


def build():
    torch.manual_seed(0)
    return SwinTransformer(
        patch_size=[32, 32], embed_dim=8, depths=[2], num_heads=[1],
        window_size=[7, 7], num_classes=3,
    )
"""


def test_explain_dataset_reads_a_swin_through_its_reshape(tmp_path, monkeypatch):
    (tmp_path / "igcam_tinyswin.py").write_text(TINY_SWIN_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    images = tmp_path / "images"
    images.mkdir()
    photo = np.ascontiguousarray(data.astronaut()[::8, ::8])
    Image.fromarray(photo).save(images / "astronaut.png")
    out = tmp_path / "maps"
    model = "igcam_tinyswin:build"
    arguments = ["--model", model, "--steps", "2", "--out", str(out)]
    assert cli.main(["explain-dataset", str(images), *arguments, "--no-progress"]) == 0

    bundle = models.load_model(model)
    assert (bundle.layer_name, bundle.reshape_transform) == (
        "norm",
        channels_last_grid(),
    )
    inputs = bundle.preprocess(photo).unsqueeze(0)
    black = bundle.preprocess(np.zeros_like(photo)).unsqueeze(0)
    with torch.no_grad():
        target = int(bundle.model(inputs).argmax())
    direct = IntegratedLayerGradCam(bundle.model, bundle.layer()).attribute(
        inputs,
        target=target,
        baselines=black,
        n_steps=2,
        reshape_transform=channels_last_grid(),
    )
    stored = maps_io.open_maps(out)["astronaut.png"]
    assert stored.shape == (1, 7, 7)
    assert_close_to(stored, direct[0], tolerance=1e-4)
