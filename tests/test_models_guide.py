"""docs/models.md's code runs as written: the Hugging Face ViT wrapper,
its layer and ``vit_tokens()`` give the map that Grad-CAM gives on a path of
length zero, and the offline-weights snippet names the hub cache's file."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from captum_igcam import IntegratedLayerGradCam, ReshapedLayerGradCam, vit_tokens

pytest.importorskip("torchvision")
transformers = pytest.importorskip("transformers")

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "models.md"


#: Importing transformers takes tens of seconds: the end-to-end set.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def guide() -> dict[str, object]:
    """The guide's Python blocks, run one after the other in one namespace."""
    blocks = re.findall(r"^```python\n(.*?)^```", GUIDE.read_text(), re.M | re.S)
    assert len(blocks) == 2
    namespace: dict[str, object] = {"__name__": "__guide__"}
    torch.manual_seed(0)
    for block in blocks:
        exec(compile(block, str(GUIDE), "exec"), namespace)  # noqa: S102
    return namespace


def test_the_vit_map_has_one_cell_per_patch(guide: dict[str, object]) -> None:
    maps = guide["maps"]
    assert maps.shape == (2, 1, 4, 4)
    assert torch.isfinite(maps).all()
    assert (maps >= 0).all() and (maps > 0).any()  # the layer reaches the logits


def test_a_path_of_length_zero_is_grad_cam(guide: dict[str, object]) -> None:
    """From the input to itself every path point is the input, so the integral
    is Grad-CAM's term with a ReLU: the wrapper, the layer and the reshape
    give the same map to both classes."""
    forward, layer, pixels = guide["forward"], guide["layer"], guide["pixels"]
    integrated = IntegratedLayerGradCam(forward, layer).attribute(
        pixels, target=3, baselines=pixels, n_steps=4, reshape_transform=vit_tokens()
    )
    grad_cam = ReshapedLayerGradCam(forward, layer).attribute(
        pixels, target=3, relu_attributions=True, reshape_transform=vit_tokens()
    )
    torch.testing.assert_close(integrated, grad_cam, rtol=1e-4, atol=1e-6)
    assert not torch.equal(integrated, guide["maps"])  # the path matters


def test_the_weights_file_goes_where_the_command_line_looks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from captum_igcam.app import torchvision_models

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    block = re.findall(r"^```python\n(.*?)^```", GUIDE.read_text(), re.M | re.S)[1]
    namespace: dict[str, object] = {}
    exec(compile(block, str(GUIDE), "exec"), namespace)  # noqa: S102
    with pytest.raises(torchvision_models.ModelNotAvailableError):
        torchvision_models.require_cached("resnet50", namespace["url"])
    cached = Path(namespace["cached"])
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"weights")
    torchvision_models.require_cached("resnet50", namespace["url"])
