"""Tests for captum_igcam.app.maps: upsampling, normalisation and rendering."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from captum.attr import LayerGradCam, visualization
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from matplotlib.figure import Figure
from torch import nn

from captum_igcam.app import maps


def test_upsample_is_bilinear_to_the_requested_size():
    ramp = torch.tensor([[0.0, 1.0], [0.0, 1.0]]).reshape(1, 1, 2, 2)
    up = maps.upsample(ramp, (4, 6))
    assert up.shape == (1, 1, 4, 6)
    row = up[0, 0, 0]
    # Half-pixel aligned bilinear: edges keep the end values, the middle blends.
    assert row[0] == 0 and row[-1] == 1
    assert torch.all(row[1:] >= row[:-1]) and 0 < row[2] < 1
    torch.testing.assert_close(up[0, 0, 0], up[0, 0, 3])
    assert maps.upsample(ramp, 3).shape == (1, 1, 3, 3)


def test_upsample_rejects_maps_without_batch_and_channel():
    with pytest.raises(ValueError, match=r"maps: expected a 4-D tensor .* \(7, 7\)"):
        maps.upsample(torch.zeros(7, 7), 224)


def test_normalize_batch_handles_zero_and_constant_maps():
    batch = torch.stack(
        [
            torch.tensor([[-2.0, 0.0], [2.0, 6.0]]),
            torch.zeros(2, 2),
            torch.full((2, 2), 3.5),
            torch.tensor([[-1.0, -3.0], [-3.0, -3.0]]),
        ]
    ).unsqueeze(1)
    out = maps.normalize(batch)
    assert out.shape == batch.shape
    torch.testing.assert_close(out[0, 0], torch.tensor([[0.0, 0.25], [0.5, 1.0]]))
    assert torch.equal(out[1], torch.zeros(1, 2, 2))
    assert torch.equal(out[2], torch.zeros(1, 2, 2))
    torch.testing.assert_close(out[3, 0], torch.tensor([[1.0, 0.0], [0.0, 0.0]]))


@settings(max_examples=50, deadline=None)
@given(
    arrays(
        np.float32,
        st.tuples(st.integers(1, 3), st.integers(1, 4), st.integers(1, 4)),
        elements=st.floats(-1e6, 1e6, width=32),
    )
)
def test_normalize_stays_in_unit_interval(values):
    out = maps.normalize(torch.from_numpy(values))
    assert torch.isfinite(out).all()
    assert out.min() >= 0 and out.max() <= 1
    for example, source in zip(out, values, strict=True):
        has_contrast = source.max() > source.min()
        assert example.max().item() == pytest.approx(1.0 if has_contrast else 0.0)


def test_explanation_figure_has_one_panel_per_method():
    image = np.zeros((30, 40, 3), dtype=np.uint8)
    heat = np.linspace(0, 1, 30 * 40).reshape(30, 40)
    figure = maps.explanation_figure(image, [("A", heat), ("B", heat)], "photo")
    assert isinstance(figure, Figure)
    *panels, colorbar = figure.axes
    assert [ax.get_title() for ax in panels] == ["photo", "A", "B"]
    # The overlay panels hold the photo and the heat map.
    assert len(figure.axes[1].get_images()) == 2
    # One colour bar for all overlays, spanning the heat maps' [0, 1] scale.
    assert colorbar.get_ylabel() == "attribution / its maximum"
    assert colorbar.get_ylim() == pytest.approx((0.0, 1.0))
    overlay = figure.axes[1].get_images()[1]
    assert overlay.get_clim() == (0.0, 1.0)
    assert overlay.get_cmap().name == "jet"


def test_overlay_rejects_map_of_the_wrong_size():
    figure = Figure()
    with pytest.raises(ValueError, match=r"heatmap: expected shape \(30, 40\)"):
        maps.overlay_heatmap(
            figure.add_subplot(), np.zeros((30, 40, 3)), np.zeros((7, 7))
        )


class _Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, stride=2, padding=1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(x)).mean(dim=(2, 3)))


def test_layer_map_feeds_captum_visualization():
    torch.manual_seed(0)
    model = _Tiny().eval()
    inputs = torch.rand(1, 3, 16, 16)
    attr = LayerGradCam(model, model.conv).attribute(inputs, target=0)
    assert attr.shape == (1, 1, 8, 8)
    heat = maps.upsample(attr, inputs.shape[-2:])[0].permute(1, 2, 0).numpy()
    photo = inputs[0].permute(1, 2, 0).numpy()
    figure, axis = maps.visualize_image_attr_safe(
        heat, photo, sign="absolute_value", title="Grad-CAM"
    )
    assert axis.get_title() == "Grad-CAM"
    assert len(axis.get_images()) == 2  # photo, then the blended heat map


def test_empty_map_is_guarded_where_captum_would_fail():
    photo = np.full((8, 8, 3), 0.5)
    empty = np.zeros((8, 8, 1))
    with pytest.raises(AssertionError):
        visualization.visualize_image_attr(
            empty, photo, "blended_heat_map", use_pyplot=False
        )
    figure, axis = maps.visualize_image_attr_safe(empty, photo, title="IG-CAM")
    assert axis.get_title() == "IG-CAM (empty positive map)"
    assert len(axis.get_images()) == 1  # the photo alone
    # A map with only negative evidence is empty for sign="positive" too.
    _, axis = maps.visualize_image_attr_safe(-np.ones((8, 8)), photo)
    assert axis.get_title() == "(empty positive map)"
    with pytest.raises(ValueError, match="sign: expected"):
        maps.visualize_image_attr_safe(empty, photo, sign="both")
