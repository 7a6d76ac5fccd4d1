"""Layers by name, and the layer Grad-CAM usually explains in a model."""

from __future__ import annotations

import difflib
from collections.abc import Callable

import torch
from torch import nn

from captum_igcam.app.devices import device_of
from captum_igcam.app.transformers import transformer_layer
from captum_igcam.reshapes import ReshapeTransform

_POOLING_TYPES = (
    nn.modules.pooling._AdaptiveAvgPoolNd,
    nn.modules.pooling._AdaptiveMaxPoolNd,
    nn.modules.pooling._AvgPoolNd,
    nn.modules.pooling._MaxPoolNd,
)


def resolve_layer(model: nn.Module, dotted_name: str) -> nn.Module:
    """Find a submodule by its dotted name, suggesting close names if absent.

    Args:
        model (nn.Module): The model to search.
        dotted_name (str): Name as listed by ``model.named_modules()``,
            e.g. ``"layer4.2.conv3"``.

    Returns:
        nn.Module: The submodule.

    Raises:
        ValueError: If no submodule has that name; the message lists the
            closest existing names.

    Example::

        >>> resolve_layer(torchvision.models.resnet18(), "layer4")
        Sequential(...)
    """
    modules = dict(model.named_modules())
    modules.pop("", None)
    if dotted_name in modules:
        return modules[dotted_name]
    close = difflib.get_close_matches(dotted_name, list(modules), n=5, cutoff=0.5)
    hint = f"closest names: {', '.join(close)}" if close else "no similar names"
    raise ValueError(
        f"layer: the model has no layer named {dotted_name!r} ({hint}; "
        "all names are listed by model.named_modules())"
    )


def find_default_layer(
    model: nn.Module,
    input_size: int,
    *,
    within: str = "",
    run: Callable[[nn.Module, torch.Tensor], object] | None = None,
) -> str:
    """Pick the layer Grad-CAM usually explains: the last spatial feature map.

    Runs one forward pass on a blank input and returns the last module to
    finish that produced an ``(N, C, H, W)`` tensor with ``H * W > 1``, was
    called exactly once (a module reused in the forward pass, such as a shared
    activation, cannot be hooked unambiguously), does not work in place and is
    not a pooling layer.

    Args:
        model (nn.Module): A model taking ``(N, 3, S, S)`` images.
        input_size (int): ``S``.
        within (str, optional): Only modules under this dotted prefix, e.g.
            ``"backbone"`` for a segmentation model (whose last feature maps
            are its class logits).
            Default: "" (the whole model)
        run (Callable, optional): ``run(model, probe)`` calls the model on
            the blank ``(1, 3, S, S)`` probe; e.g. ``model(list(probe))`` for
            a detector.
            Default: None (``model(probe)``)

    Returns:
        str: Dotted name of the chosen layer.

    Raises:
        ValueError: If no module qualifies (e.g. a transformer).

    Example::

        >>> find_default_layer(torchvision.models.resnet18(), 224)
        'layer4'
    """
    calls: dict[str, int] = {}
    finished: list[str] = []

    def make_hook(name: str) -> Callable[..., None]:
        def hook(module: nn.Module, inputs: object, output: object) -> None:
            calls[name] = calls.get(name, 0) + 1
            if isinstance(output, torch.Tensor) and output.dim() == 4:
                if output.shape[2] * output.shape[3] > 1:
                    finished.append(name)

        return hook

    prefix = f"{within}." if within else ""
    eligible = {
        name: module
        for name, module in model.named_modules()
        if name.startswith(prefix)
        and name != within
        and not isinstance(module, _POOLING_TYPES)
        and not getattr(module, "inplace", False)
    }
    handles = [m.register_forward_hook(make_hook(n)) for n, m in eligible.items()]
    try:
        probe = torch.zeros(1, 3, input_size, input_size, device=device_of(model))
        with torch.no_grad():
            (run or (lambda net, x: net(x)))(model, probe)
    finally:
        for handle in handles:
            handle.remove()
    for name in reversed(finished):
        if calls[name] == 1:
            return name
    raise ValueError(
        "layer: could not find a convolutional feature map in the model; "
        "name the layer to explain explicitly"
    )


def default_layer(
    model: nn.Module, input_size: int
) -> tuple[str, ReshapeTransform | None]:
    """A ViT's or Swin's usual layer with its reshape, else the last feature map."""
    transformer = transformer_layer(model)
    if transformer is not None:
        return transformer.name, transformer.reshape_transform
    return find_default_layer(model, input_size), None


def default_task_layer(
    model: nn.Module, input_size: int, task: str
) -> tuple[str, ReshapeTransform | None]:
    """The default layer of a classifier, segmentation model or detector.

    A classifier's is :func:`default_layer`'s. A segmentation model's or a
    detector's is the last feature map of its backbone's feature extractor
    (``backbone.body`` in torchvision's detectors with a feature pyramid,
    ``backbone.features`` in its SSDs, whose ``backbone.extra`` layers end at
    1 or 2 pixels; else ``backbone``, else the whole model): the layers after
    it are the task's head, whose last maps are already class scores. A
    detector is probed with a list of images.
    """
    if task == "classification":
        return default_layer(model, input_size)
    names = dict(model.named_modules())
    extractors = ("backbone.body", "backbone.features", "backbone")
    within = next((name for name in extractors if name in names), "")
    run = (lambda net, x: net(list(x))) if task == "detection" else None
    return find_default_layer(model, input_size, within=within, run=run), None
