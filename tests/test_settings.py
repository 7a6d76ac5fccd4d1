"""Tests for captum_igcam.app.settings and app.baselines: the shared settings."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from captum.attr._utils.approximation_methods import SUPPORTED_METHODS
from PIL import Image
from skimage import data

from captum_igcam.app.baselines import InputAndBaseline, baseline_input
from captum_igcam.app.errors import UsageError
from captum_igcam.app.models import load_model
from captum_igcam.app.settings import (
    APPROXIMATION_METHODS,
    MethodSettings,
    check_positive_int,
)


def test_approximation_methods_are_captums():
    # Listed without importing Captum (fast --help); they must stay Captum's.
    assert sorted(APPROXIMATION_METHODS) == sorted(SUPPORTED_METHODS)


@pytest.mark.parametrize("value", [0, -3, 2.0, "4", True, None])
def test_check_positive_int_refuses(value):
    with pytest.raises(ValueError, match="^curve_steps: expected a positive integer"):
        check_positive_int("curve_steps", value)


def test_check_positive_int_accepts_integer_kinds():
    assert check_positive_int("n", np.int64(3)) == 3
    assert type(check_positive_int("n", np.int64(3))) is int


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"n_steps": 0}, "^n_steps: expected a positive integer, got 0"),
        ({"internal_batch_size": -1}, "^internal_batch_size: expected a positive"),
        ({"method": "simpson"}, "^method: expected one of riemann_right, .*'simpson'"),
        ({"baseline": "white"}, "^baseline: expected one of black, blur, mean"),
        ({"device": "tpu"}, "^device: expected one of cpu, cuda, got 'tpu'"),
        ({"weights": "w.pt", "random_weights": True}, "^weights: .*exclude"),
    ],
)
def test_settings_are_checked_when_made(fields, message):
    with pytest.raises(ValueError, match=message):
        MethodSettings(**fields)


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_cuda_without_cuda_is_a_usage_error():
    with pytest.raises(UsageError, match="^device: 'cuda' was asked for"):
        MethodSettings(device="cuda").load_model()


def test_load_model_applies_the_layer():
    bundle = MethodSettings(model="resnet18", random_weights=True, layer="layer3")
    loaded = bundle.load_model()
    assert loaded.layer_name == "layer3" and loaded.layer() is loaded.model.layer3
    with pytest.raises(ValueError, match="closest names: layer4"):
        MethodSettings(
            model="resnet18", random_weights=True, layer="layer5"
        ).load_model()


@pytest.fixture(scope="module")
def lite0():
    return load_model()


def test_preprocess_is_the_documented_bilinear_resize_and_normalisation(lite0):
    # Documented: resized (bilinear, no crop) to 224 x 224, scaled to [0, 1],
    # then normalised with the bundle's mean and std.
    photo = data.coffee()
    resized = Image.fromarray(photo).resize((224, 224), Image.Resampling.BILINEAR)
    pixels = torch.from_numpy(np.asarray(resized, dtype=np.float32) / 255)
    expected = (pixels - torch.tensor(lite0.mean)) / torch.tensor(lite0.std)
    torch.testing.assert_close(lite0.preprocess(photo), expected.permute(2, 0, 1))


def test_baseline_inputs(lite0):
    photo = data.coffee()
    black = baseline_input(lite0, photo, "black")
    torch.testing.assert_close(black[0], lite0.preprocess(np.zeros_like(photo)))
    assert torch.equal(baseline_input(lite0, photo, "mean"), torch.zeros_like(black))
    blurred = baseline_input(lite0, photo, "blur")
    sharp = lite0.preprocess(photo)
    assert blurred.shape == black.shape
    # Blurring keeps the colours on average but removes most of the detail.
    assert (blurred.mean() - sharp.mean()).abs() < 0.05
    assert blurred.diff(dim=-1).abs().mean() < 0.2 * sharp.diff(dim=-1).abs().mean()
    with pytest.raises(ValueError, match="^baseline: expected one of"):
        baseline_input(lite0, photo, "white")


def test_input_and_baseline_keep_no_model(lite0):
    transform = InputAndBaseline.for_model(lite0, "blur")
    assert not list(transform.bundle.model.parameters())
    photo = data.chelsea()
    inputs, baseline = transform(Image.fromarray(photo))
    torch.testing.assert_close(inputs, lite0.preprocess(photo))
    torch.testing.assert_close(baseline, baseline_input(lite0, photo, "blur")[0])
