"""Grad-CAM integrated along a straight path in a layer's activation space."""

from __future__ import annotations

from typing import Any

import torch
from captum.log import log_usage
from torch import Tensor

from captum_igcam import _call_guards, _validation
from captum_igcam._captum_compat import BaselineType, TargetType
from captum_igcam._grad_cam_path import Chunk, GradCamAlongPath, PathCall, Tensors
from captum_igcam._integrand import GradCamIntegrand
from captum_igcam._path_points import points_on_line


class LayerSpaceIntegratedGradCam(GradCamAlongPath):
    r"""
    Grad-CAM integrated along the straight line between the baseline's and
    the input's activations of a layer. **This is not the paper's
    Integrated Grad-CAM** (:class:`~captum_igcam.IntegratedLayerGradCam`
    is): its path runs in the layer's activation space, not through the
    input, so the part of the network before the layer is evaluated only at
    the two ends. That makes it several times faster and gives different
    maps.

    With ``A(x)`` the layer's activations for the input and ``A(x')`` for
    the baseline, the path points are
    ``A_m = A(x') + a_m (A(x) - A(x'))``. At each point the rest of the
    network gives the target score ``S`` and the Grad-CAM weights
    ``w_k(m) = mean_{ij} dS/dA_{kij}`` at ``A_m``:

    .. math::

        D_m(x) = \sum_k w_k(m) \, (A_{m,k} - A_k(x'))
               = a_m \sum_k w_k(m) \, (A_k(x) - A_k(x'))

        \mathrm{LSIGC}(x) = \sum_m s_m \, \mathrm{ReLU}(D_m(x))

    where ``(a_m, s_m)`` are the points and weights of one of Captum's
    quadrature rules (``method``). It is the path integral of Layer
    Integrated Gradients with the gradient replaced by its per-channel
    spatial mean, and a ReLU per path point.

    Supported layers: the layer runs once per forward pass; the output
    depends on the input only through the layer; and the part of the network
    after the layer follows the layer's batch size (one row per example and
    path point), as in Sequential CNNs such as torchvision's classifiers.
    A whole residual block's output (``layer4`` or ``layer4[1]`` of a
    ResNet) qualifies; a layer inside a residual block (``layer4[1].bn2``, a
    ViT block's ``ln_1``) does not: the skip connection goes around it and
    would carry the input's own features, not the path point's, to every
    path point. ``attribute``
    raises a ValueError naming the cause for each unsupported case; the
    route around the layer is found before any path point runs, by one
    forward and backward pass on one example per call (cutting the layer's
    tensors out of the graph and asking autograd whether the output still
    reaches the input).

    The part before the layer runs, per chunk of path points, on a single
    example (only to reach the layer, whose output is then replaced by the
    path points). When ``additional_forward_args`` hold tensors, which may
    be used after the layer, the inputs and those tensors are repeated per
    path point instead, as in the input-space method, and the speed-up
    shrinks to that of skipping the backward pass before the layer.
    """

    @log_usage()
    @_call_guards.guarded_attribute
    def attribute(
        self,
        inputs: Tensor | Tensors,
        *,
        # What is explained.
        target: TargetType = None,
        additional_forward_args: Any = None,
        attribute_to_layer_input: bool = False,
        # The path and its quadrature.
        baselines: BaselineType = None,
        n_steps: int = 50,
        method: str = "gausslegendre",
        internal_batch_size: int | None = None,
        # The Grad-CAM term and the map.
        grad_kwargs: dict[str, Any] | None = None,
        per_step_relu: bool = True,
        attr_dim_summation: bool = True,
        relu_attributions: bool = False,
    ) -> Tensor | Tensors:
        r"""
        The options are keyword-only, grouped as in the signature: what is
        explained, the path, the Grad-CAM term.

        Args:
            inputs (Tensor or tuple[Tensor, ...]): The examples to explain
                        (dimension 0), floating point and finite; a tuple for
                        a model with several input tensors.
            target (int, tuple, Tensor, or list, optional): The score ``S``:
                        an output index, or one per example, as in
                        :class:`captum.attr.LayerGradCam`; None for a model
                        with one scalar output per example.
                        Default: None
            additional_forward_args (Any, optional): More arguments of
                        forward_func after the inputs. Tensors among them are
                        repeated per path point (and the inputs with them).
                        Default: None
            attribute_to_layer_input (bool, optional): Run the path through
                        the layer's input instead of its output.
                        Default: False
            baselines (scalar, Tensor, or tuple, optional): Input whose layer
                        activations ``A(x')`` start the path, given as for
                        :class:`~captum_igcam.IntegratedLayerGradCam`: a
                        number, a tensor that broadcasts to the inputs (or to
                        one example), or one of these per input tensor.
                        None means zeros.
                        Default: None
            n_steps (int, optional): Number of path points ``M`` (the Riemann
                        rules need at least 2).
                        Default: 50
            method (str, optional): Captum's quadrature rule:
                        ``gausslegendre``, ``riemann_right``,
                        ``riemann_left``, ``riemann_middle`` or
                        ``riemann_trapezoid``.
                        Default: ``gausslegendre``
            internal_batch_size (int, optional): At most this many examples x
                        path points go through the part after the layer at
                        once (at least the N examples: a smaller value is
                        raised to N with Captum's warning). The maps do not
                        depend on it. None: all points at once.
                        Default: None
            grad_kwargs (dict[str, Any], optional): Passed on to
                        ``torch.autograd.grad``.
                        Default: None
            per_step_relu (bool, optional): ReLU on each ``D_m`` before the
                        sum; False integrates the signed term.
                        Default: True
            attr_dim_summation (bool, optional): Sum over channels. False
                        returns per-channel maps masked by ``D_m > 0``, which
                        add up to the summed map.
                        Default: True
            relu_attributions (bool, optional): Clip the final map at zero.
                        Default: False

        Returns:
            *Tensor* or *tuple[Tensor, ...]* of **attributions**:
            - **attributions** (*Tensor* or *tuple[Tensor, ...]*):
                        One map per example with the layer's shape (one
                        channel when summed), detached, in the layer's dtype
                        or float32 if that is narrower; a tuple when the
                        layer's output (or input) is a tuple of tensors.

        Examples::

            >>> model = torchvision.models.resnet18(weights="DEFAULT").eval()
            >>> images = torch.randn(4, 3, 224, 224)  # preprocessed images
            >>> fast = LayerSpaceIntegratedGradCam(model, model.layer4)
            >>> # 4x1x7x7 maps of class 281, NOT the paper's Integrated Grad-CAM
            >>> # (use IntegratedLayerGradCam for that).
            >>> maps = fast.attribute(images, target=281, internal_batch_size=200)
            >>> heat = LayerAttribution.interpolate(maps, (224, 224), "bilinear")
        """
        self._check_path_arguments(method, n_steps, internal_batch_size, grad_kwargs)
        target = _validation.format_target(target)
        _validation.warn_if_training(_validation.owning_model(self.forward_func))
        call = self._prepare(
            inputs, baselines, additional_forward_args, attribute_to_layer_input
        )
        if call.probe.bypasses_layer(*_prefix_inputs(call, n_points=1)):
            raise ValueError(
                "layer: LayerSpaceIntegratedGradCam needs a model whose output "
                "depends on the input only through the explained layer, but a "
                "route around the layer reaches the output (a residual "
                "connection that skips it, say), which would carry the input's "
                "own features to every path point. Explain the whole block "
                "(e.g. model.layer4 rather than model.layer4[1].bn2), or use "
                "IntegratedLayerGradCam"
            )
        integrand = GradCamIntegrand(per_step_relu, attr_dim_summation)
        path = _LayerSpacePath(call, _path_ends(call), integrand)
        maps = self._integrate(
            path, target, n_steps, method, internal_batch_size, grad_kwargs
        )
        return self._output(maps, relu_attributions)


@torch.no_grad()
def _path_ends(call: PathCall) -> tuple[Tensors, Tensors]:
    """The layer's tensors for the baselines and the inputs, in one pass."""
    ends = call.probe.capture(call.baselines_then_inputs(), call.repeated_args(2))
    return (
        tuple(end[: call.n_examples] for end in ends),
        tuple(end[call.n_examples :] for end in ends),
    )


def _prefix_inputs(call: PathCall, n_points: int) -> tuple[Tensors, Any]:
    """Inputs and extra arguments for the part of the model before the layer.

    That part only has to reach the layer: one example does. Tensors in
    ``additional_forward_args`` have a row per example and may be used after
    the layer, where every path point is a row, so then inputs and tensors
    are repeated per path point, like the path points themselves.
    """
    args = call.additional_forward_args
    if args is None or not any(isinstance(arg, Tensor) for arg in args):
        return tuple(inp[:1] for inp in call.inputs), args
    return call.repeated_inputs(n_points), call.repeated_args(n_points)


def _unsupported_model(problem: str) -> ValueError:
    return ValueError(
        "forward_func: LayerSpaceIntegratedGradCam needs a model whose part after "
        "the layer follows the layer's batch size (one row per example and path "
        f"point); {problem}. Use IntegratedLayerGradCam, or a forward that "
        "reshapes with the features' own batch size (e.g. x.flatten(1) rather "
        "than x.view(inputs.size(0), -1))."
    )


class _LayerSpacePath:
    """The path ``A(x') + a (A(x) - A(x'))`` in the layer's activation space."""

    def __init__(
        self,
        call: PathCall,
        ends: tuple[Tensors, Tensors],
        integrand: GradCamIntegrand,
    ) -> None:
        self.call = call
        self.baseline_activations, self.input_activations = ends
        self.activation_changes = tuple(
            actual - base
            for actual, base in zip(self.input_activations, self.baseline_activations)
        )
        self.integrand = integrand

    def forward(self, chunk: Chunk) -> tuple[Tensor, Tensors]:
        n_rows = len(chunk.alphas) * self.call.n_examples

        def path_points(layer_tensors: Tensors) -> Tensors:
            # The layer's own tensors only started the pass; every example's
            # path points take their place.
            return tuple(
                points_on_line(base, actual, chunk.alphas)
                for base, actual in zip(
                    self.baseline_activations, self.input_activations
                )
            )

        try:
            output, leaves = self.call.probe.run(
                *_prefix_inputs(self.call, len(chunk.alphas)), transform=path_points
            )
        except RuntimeError as error:
            raise _unsupported_model(f"the forward pass failed: {error}") from error
        if self.call.probe.layer_calls > 1:
            raise ValueError(
                "layer: LayerSpaceIntegratedGradCam needs a layer that runs once "
                f"per forward pass, got {self.call.probe.layer_calls} calls; use "
                "IntegratedLayerGradCam"
            )
        if output.shape[0] != n_rows:
            raise _unsupported_model(
                f"expected {n_rows} output rows (one per example and path point), "
                f"got {output.shape[0]}"
            )
        return output, leaves

    def integrate(self, chunk: Chunk, leaves: Tensors, gradients: Tensors) -> Tensors:
        return tuple(
            self.integrand.along_layer_path(
                change, gradient, chunk.alphas, chunk.step_sizes
            )
            for change, gradient in zip(self.activation_changes, gradients)
        )


__all__ = ["LayerSpaceIntegratedGradCam"]
