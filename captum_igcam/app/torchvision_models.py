"""torchvision's classifiers, segmentation models and detectors by name.

Pretrained weights come from the torch hub cache only (no download here);
a user's own weights of a torchvision architecture come from a state-dict
file read with ``torch.load(weights_only=True)``, which cannot run code.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from captum_igcam.app.model_bundle import ModelBundle, ModelNotAvailableError
from captum_igcam.app.transformers import randomise_zero_vit_head

# torchvision classifiers without a default layer (neither CNN, ViT nor Swin).
_UNSUPPORTED_PREFIXES = ("maxvit_",)
#: State-dict keys whose first dimension is a task model's number of classes.
_CLASS_KEYS = (
    "roi_heads.box_predictor.cls_score.weight",  # Faster / Mask R-CNN
    "classifier.4.weight",  # FCN, DeepLabV3
    "classifier.high_classifier.weight",  # LRASPP
)


def task_names() -> dict[str, str]:
    """torchvision's model names by task, classifiers first (see :data:`TASKS`)."""
    from torchvision import models

    names = {
        name: "classification"
        for name in models.list_models(module=models)
        if not name.startswith(_UNSUPPORTED_PREFIXES)
    }
    for task, module in (
        ("segmentation", models.segmentation),
        ("detection", models.detection),
    ):
        names.update(dict.fromkeys(models.list_models(module=module), task))
    return names


def imagenet_categories() -> list[str]:
    """The 1000 ImageNet class names in output-index order."""
    from torchvision.models import ResNet50_Weights

    return list(ResNet50_Weights.IMAGENET1K_V1.meta["categories"])


def load_torchvision(
    name: str,
    task: str,
    pretrained: bool,
    weights_file: str | os.PathLike[str] | None,
) -> ModelBundle:
    """A torchvision model with cached pretrained, random or the file's weights.

    Random weights of a ViT get a random head (torchvision's is zeros); a
    detector with random weights keeps every detection (score threshold 0),
    since none of its near-uniform scores passes the usual 0.05.
    """
    from torchvision import models

    weights = models.get_model_weights(name).DEFAULT

    def build(num_classes: int) -> nn.Module:
        extra = {} if task == "classification" else {"weights_backbone": None}
        return models.get_model(name, weights=None, num_classes=num_classes, **extra)

    if weights_file is None and pretrained:
        require_cached(name, weights.url)
        model = models.get_model(name, weights=weights)
    else:
        model = build(len(weights.meta["categories"]))
        if weights_file is None:
            randomise_zero_vit_head(model)
            if task == "detection":
                _keep_every_detection(model)
    model.eval()
    input_size, mean, std = _preprocessing(model, weights, task)
    categories = list(weights.meta["categories"])
    bundle = ModelBundle.with_default_layer(
        name, model, input_size, mean, std, categories, task
    )
    return (
        bundle if weights_file is None else with_state_dict(bundle, build, weights_file)
    )


def _preprocessing(
    model: nn.Module, weights: object, task: str
) -> tuple[int, tuple[float, ...], tuple[float, ...]]:
    """Input side, mean and std: a detector normalises and resizes inside."""
    if task == "detection":
        return int(model.transform.min_size[0]), (0.0,) * 3, (1.0,) * 3
    transform = weights.transforms()
    side = transform.crop_size if task == "classification" else transform.resize_size
    return int(side[0]), tuple(transform.mean), tuple(transform.std)


def _keep_every_detection(model: nn.Module) -> None:
    heads = getattr(model, "roi_heads", model)  # R-CNNs threshold in roi_heads
    heads.score_thresh = 0.0


def with_state_dict(
    bundle: ModelBundle,
    build: Callable[[int], nn.Module],
    path: str | os.PathLike[str],
) -> ModelBundle:
    """``bundle`` with the weights of a state-dict file, read without pickle code.

    ``build(num_classes)`` makes the architecture; the number of classes is
    read from the state dict: a classifier's from its last 2-D ``weight``,
    a segmentation model's or R-CNN's from its class head.
    """
    shown = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"weights: no file {shown!r}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise ValueError(
            f"weights: cannot read {shown!r} as a state dict with "
            f"weights_only=True ({' '.join(str(error).split())}); save it with "
            "torch.save(model.state_dict(), path)"
        ) from error
    if not isinstance(state, dict) or not all(
        isinstance(value, torch.Tensor) for value in state.values()
    ):
        raise ValueError(
            f"weights: {shown!r} holds a {type(state).__name__}, expected a state "
            "dict (torch.save(model.state_dict(), path))"
        )
    num_classes = _count_classes(state, bundle)
    model = build(num_classes)
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        raise ValueError(
            f"weights: {shown!r} does not fit {bundle.name} "
            f"({' '.join(str(error).split())[:500]})"
        ) from error
    categories = (
        bundle.categories
        if num_classes == len(bundle.categories)
        else [f"class {index}" for index in range(num_classes)]
    )
    return dataclasses.replace(
        bundle,
        name=f"{bundle.name}+{Path(path).name}",
        model=model.eval(),
        categories=categories,
    )


def _count_classes(state: dict[str, torch.Tensor], bundle: ModelBundle) -> int:
    if bundle.task != "classification":
        key = next((key for key in _CLASS_KEYS if key in state), None)
        return int(state[key].shape[0]) if key else len(bundle.categories)
    classifiers = [
        value
        for key, value in state.items()
        if key.endswith("weight") and value.dim() == 2
    ]
    return int(classifiers[-1].shape[0]) if classifiers else len(bundle.categories)


def require_cached(name: str, url: str) -> None:
    """Raise :class:`ModelNotAvailableError` unless the weights are in the hub cache."""
    cached = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)
    if not cached.is_file():
        raise ModelNotAvailableError(
            f"model: pretrained weights for {name!r} are not in the torch hub "
            f"cache ({cached}); download them on a machine with internet access "
            f'(python -c "import torchvision; torchvision.models.get_model('
            f"'{name}', weights='DEFAULT')\") and copy {url.rsplit('/', 1)[-1]} "
            "there, or use random weights (--random-weights on the command line, "
            "pretrained=False in Python)"
        )
