"""Attribution methods by name, shared by the command line and the benchmark.

Each registered method builds, for a model, the explained layer and
:class:`MethodSettings`, a function ``maps(inputs, target, baselines)`` that
returns one map per example of shape ``(N, 1, h, w)``. Add one with
:func:`register_method`::

    >>> @register_method("my-cam", "My CAM", "Grad-CAM with a twist")
    ... def _my_cam(model, layer, settings):
    ...     explainer = LayerGradCam(model, layer)
    ...     return lambda inputs, target, baselines=None: explainer.attribute(
    ...         inputs, target=target)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from captum._utils.typing import BaselineType, TargetType
from captum.attr import IntegratedGradients, LayerGradCam, LayerIntegratedGradients
from torch import Tensor, nn

from captum_igcam.integrated_grad_cam import IntegratedLayerGradCam


@dataclass(frozen=True)
class MethodSettings:
    """Settings of the path methods (Grad-CAM ignores them).

    Args:
        n_steps (int): Path points.
        method (str): Captum approximation method.
        internal_batch_size (int, optional): Examples x path points per
            forward pass.
    """

    n_steps: int = 50
    method: str = "gausslegendre"
    internal_batch_size: int | None = None


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
    explainer = LayerGradCam(model, layer)

    def maps(inputs: Tensor, target: TargetType, baselines: BaselineType = None):
        return explainer.attribute(inputs, target=target, relu_attributions=True)

    return maps


def _integrated_grad_cam(sum_steps: bool = False, **options: object) -> MethodBuilder:
    """A builder for IntegratedLayerGradCam with fixed ``attribute`` options.

    ``sum_steps`` sums the per-step maps instead of weighting them (the map
    times ``n_steps``), as the authors' notebook does.
    """

    def build(model: nn.Module, layer: nn.Module, settings: MethodSettings):
        explainer = IntegratedLayerGradCam(model, layer)
        call_options = {"method": settings.method, **options}

        def maps(inputs: Tensor, target: TargetType, baselines: BaselineType = None):
            weighted = explainer.attribute(
                inputs,
                target=target,
                baselines=baselines,
                n_steps=settings.n_steps,
                internal_batch_size=settings.internal_batch_size,
                **call_options,
            )
            return weighted * settings.n_steps if sum_steps else weighted

        return maps

    return build


register_method(
    "igcam",
    "Integrated Grad-CAM",
    "Integrated Grad-CAM, the class defaults (the authors' evaluated formula: "
    "no baseline subtraction)",
)(_integrated_grad_cam())
register_method(
    "igcam-paper",
    "IG-CAM (paper figure)",
    "Integrated Grad-CAM as the paper's figure draws it (baseline activations "
    "subtracted)",
)(_integrated_grad_cam(subtract_baseline_activations=True))
register_method(
    "igcam-notebook",
    "IG-CAM (notebook)",
    "Integrated Grad-CAM, authors' notebook (riemann_left, no baseline "
    "subtraction, sum of steps)",
)(
    _integrated_grad_cam(
        sum_steps=True, method="riemann_left", subtract_baseline_activations=False
    )
)
register_method(
    "igcam-layer",
    "IG-CAM (layer path)",
    "Integrated Grad-CAM along the layer-space path (fast; not the paper's method)",
)(_integrated_grad_cam(path="layer", subtract_baseline_activations=True))


def _summed_over_channels(
    explainer: LayerIntegratedGradients | IntegratedGradients, settings: MethodSettings
) -> MapFunction:
    def maps(inputs: Tensor, target: TargetType, baselines: BaselineType = None):
        attributions = explainer.attribute(
            inputs,
            baselines=baselines,
            target=target,
            n_steps=settings.n_steps,
            method=settings.method,
            internal_batch_size=settings.internal_batch_size,
        )
        return attributions.sum(dim=1, keepdim=True)

    return maps


@register_method(
    "layer-ig", "Layer IG", "Layer Integrated Gradients, summed over channels"
)
def _layer_ig(model: nn.Module, layer: nn.Module, settings: MethodSettings):
    return _summed_over_channels(LayerIntegratedGradients(model, layer), settings)


@register_method(
    "ig",
    "Integrated Gradients",
    "Integrated Gradients on the input, summed over colours",
)
def _ig(model: nn.Module, layer: nn.Module, settings: MethodSettings):
    return _summed_over_channels(IntegratedGradients(model), settings)
