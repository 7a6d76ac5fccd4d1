"""Attribution methods by name, shared by the command line and the benchmark.

Each registered method builds, for a model, the explained layer and
:class:`~captum_igcam.app.settings.MethodSettings` (the settings every
command builds from the same options), a function
``maps(inputs, target, baselines)`` that returns one map per example of
shape ``(N, 1, h, w)``. Add one with :func:`register_method`::

    >>> @register_method("my-cam", "My CAM", "Grad-CAM with a twist")
    ... def _my_cam(model, layer, settings):
    ...     explainer = LayerGradCam(model, layer)
    ...     return lambda inputs, target, baselines=None: explainer.attribute(
    ...         inputs, target=target)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from captum.attr import (
    Attribution,
    IntegratedGradients,
    LayerIntegratedGradients,
)
from torch import Tensor, nn

from captum_igcam import (
    IntegratedLayerGradCam,
    LayerSpaceIntegratedGradCam,
    ReshapedLayerGradCam,
)
from captum_igcam.app.memory import chunk_sizes
from captum_igcam.app.peer_methods import register_peer_methods
from captum_igcam.app.settings import MethodSettings
from captum_igcam.reshapes import to_channel_grid

#: What ``maps`` takes as ``target`` and ``baselines`` (Captum's forms).
TargetType = int | tuple[int, ...] | Tensor | list[Any] | None
BaselineType = Tensor | float | tuple[Tensor | float, ...] | None

#: The explainer class behind each integration path of the command line's
#: ``--path``: the paper's input-space path or the layer-space method.
EXPLAINER_BY_PATH: dict[
    str, type[IntegratedLayerGradCam | LayerSpaceIntegratedGradCam]
] = {
    "input": IntegratedLayerGradCam,
    "layer": LayerSpaceIntegratedGradCam,
}

MapFunction = Callable[..., Tensor]
MethodBuilder = Callable[[nn.Module, nn.Module, MethodSettings], MapFunction]


@dataclass(frozen=True)
class Method:
    """A registered attribution method.

    Args:
        name (str): Registry key, used on the command line.
        title (str): Short name for figure panels.
        description (str): One line for tables and help texts.
        build (MethodBuilder): ``build(model, layer, settings)`` returns
            ``maps(inputs, target, baselines=None) -> (N, 1, h, w)``.
    """

    name: str
    title: str
    description: str
    build: MethodBuilder


METHODS: dict[str, Method] = {}


def register_method(
    name: str, title: str, description: str
) -> Callable[[MethodBuilder], MethodBuilder]:
    """Decorator adding a method builder to :data:`METHODS`.

    Args:
        name (str): Registry key; must be new.
        title (str): Short name for figure panels.
        description (str): One-line description.

    Returns:
        Callable: The decorator, which returns the builder unchanged.

    Raises:
        ValueError: If ``name`` is already registered.
    """
    if name in METHODS:
        raise ValueError(f"name: method {name!r} is already registered")

    def decorator(build: MethodBuilder) -> MethodBuilder:
        METHODS[name] = Method(name, title, description, build)
        return build

    return decorator


@register_method("gradcam", "Grad-CAM", "Grad-CAM (captum LayerGradCam, with ReLU)")
def _gradcam(model: nn.Module, layer: nn.Module, settings: MethodSettings):
    explainer = ReshapedLayerGradCam(model, layer)

    def maps(inputs: Tensor, target: TargetType, baselines: BaselineType = None):
        return explainer.attribute(
            inputs,
            target=target,
            relu_attributions=True,
            reshape_transform=settings.reshape_transform,
        )

    return maps


class _PathRows:
    """A path method's ``internal_batch_size``: the settings' own, or else the
    most rows (examples x path points) per pass that keep one pass of the
    model within ``settings.memory_budget_mb``, measured once per input shape
    (:func:`~captum_igcam.app.memory.chunk_sizes`); with ``after``, a row
    holds the part of the model after that layer (the layer-space path)."""

    def __init__(
        self,
        model: nn.Module,
        settings: MethodSettings,
        after: nn.Module | None = None,
    ) -> None:
        self.model, self.settings, self.after = model, settings, after
        self.measured: dict[tuple[int, ...], int] = {}

    def __call__(self, inputs: Tensor) -> int:
        if self.settings.internal_batch_size is not None:
            return self.settings.internal_batch_size
        shape = tuple(inputs.shape[1:])
        if shape not in self.measured:
            budget = self.settings.memory_budget_mb
            sizes = chunk_sizes(self.model, inputs, budget, self.after)
            self.measured[shape] = sizes.path_rows
        if self.after is not None:  # a pass holds one example's points
            return self.measured[shape]
        return max(self.measured[shape], len(inputs))  # Captum's minimum


def _grad_cam_path(
    explainer_class: type[IntegratedLayerGradCam | LayerSpaceIntegratedGradCam],
    steps_summed: bool = False,
    **options: object,
) -> MethodBuilder:
    """A builder for an Integrated Grad-CAM class with the settings' options.

    Args:
        explainer_class (type): ``IntegratedLayerGradCam`` or
            ``LayerSpaceIntegratedGradCam`` (same options, same order).
        steps_summed (bool): Sum the per-step maps instead of weighting them
            (the authors' notebook): ``n_steps`` times the map.
        **options: Further ``attribute`` options, fixed for this method.
    """

    def build(model: nn.Module, layer: nn.Module, settings: MethodSettings):
        explainer = explainer_class(model, layer)
        factor = settings.n_steps if steps_summed else 1
        in_layer_space = explainer_class is LayerSpaceIntegratedGradCam
        rows = _PathRows(model, settings, layer if in_layer_space else None)
        call_options = {
            "n_steps": settings.n_steps,
            "method": settings.method,
            "reshape_transform": settings.reshape_transform,
            **options,
        }

        def maps(inputs: Tensor, target: TargetType, baselines: BaselineType = None):
            return factor * explainer.attribute(
                inputs,
                target,
                baselines=baselines,
                internal_batch_size=rows(inputs),
                **call_options,
            )

        return maps

    return build


def _captum_path(
    explainer_class: Callable[..., Attribution],
    reduce: Callable[[Tensor, MethodSettings], Tensor],
) -> MethodBuilder:
    """A builder for a Captum path method with the settings' path options.

    Args:
        explainer_class (Callable): Builds the explainer from
            ``(model, layer)``.
        reduce (Callable): Turns ``attribute``'s output into one map per
            example, ``(N, 1, h, w)``, on the settings' spatial grid.
    """

    def build(model: nn.Module, layer: nn.Module, settings: MethodSettings):
        explainer = explainer_class(model, layer)
        rows = _PathRows(model, settings)

        def maps(inputs: Tensor, target: TargetType, baselines: BaselineType = None):
            attributions = explainer.attribute(
                inputs,
                target=target,
                baselines=baselines,
                n_steps=settings.n_steps,
                method=settings.method,
                internal_batch_size=rows(inputs),
            )
            return reduce(attributions, settings)

        return maps

    return build


def _summed_over_channels(attributions: Tensor, settings: MethodSettings) -> Tensor:
    return attributions.sum(dim=1, keepdim=True)


def _layer_summed_over_channels(
    attributions: Tensor, settings: MethodSettings
) -> Tensor:
    """Layer attributions on the settings' spatial grid, summed over channels."""
    grid = to_channel_grid(settings.reshape_transform, attributions)
    return _summed_over_channels(grid, settings)


def _input_space(model: nn.Module, layer: nn.Module) -> IntegratedGradients:
    """Integrated Gradients on the model's input (the layer is not used)."""
    return IntegratedGradients(model)


register_method(
    "igcam",
    "Integrated Grad-CAM",
    "Integrated Grad-CAM, the class defaults (the authors' evaluated formula: "
    "no baseline subtraction)",
)(_grad_cam_path(IntegratedLayerGradCam))
register_method(
    "igcam-paper",
    "IG-CAM (paper figure)",
    "Integrated Grad-CAM as the paper's figure draws it (baseline activations "
    "subtracted)",
)(_grad_cam_path(IntegratedLayerGradCam, subtract_baseline_activations=True))
register_method(
    "igcam-notebook",
    "IG-CAM (notebook)",
    "Integrated Grad-CAM, authors' notebook (riemann_left, no baseline "
    "subtraction, sum of steps)",
)(
    _grad_cam_path(
        IntegratedLayerGradCam,
        steps_summed=True,
        method="riemann_left",
        subtract_baseline_activations=False,
    )
)
register_method(
    "igcam-layer",
    "IG-CAM (layer path)",
    "Grad-CAM integrated along the layer-space path "
    "(LayerSpaceIntegratedGradCam; fast, not the paper's method)",
)(_grad_cam_path(LayerSpaceIntegratedGradCam))
register_method(
    "layer-ig", "Layer IG", "Layer Integrated Gradients, summed over channels"
)(_captum_path(LayerIntegratedGradients, _layer_summed_over_channels))
register_method(
    "ig",
    "Integrated Gradients",
    "Integrated Gradients on the input, summed over colours",
)(_captum_path(_input_space, _summed_over_channels))

# pytorch-grad-cam's methods (the ``peers`` extra, imported when a map is made).
register_peer_methods(register_method)
