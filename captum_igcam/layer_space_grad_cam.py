"""Grad-CAM integrated along a straight path in a layer's activation space."""

from __future__ import annotations

from typing import Any

import torch
from captum.log import log_usage
from torch import Tensor

from captum_igcam._captum_compat import (
    BaselineType,
    TargetType,
    _select_targets,
    approximation_parameters,
)
from captum_igcam._checks import bad_value, check_target
from captum_igcam._layer_hook import LayerProbe, Tensors
from captum_igcam._path import GradCamPath, Term, points_on_line
from captum_igcam.reshapes import ReshapeTransform


class LayerSpaceIntegratedGradCam(GradCamPath):
    r"""
    Grad-CAM integrated along the straight line between the baseline's and
    the input's activations of a layer. **This is not the paper's
    Integrated Grad-CAM** (:class:`~captum_igcam.IntegratedLayerGradCam`
    is): its path runs in the layer's activation space, not through the
    input, so the part of the network before the layer needs no backward
    pass and runs on one example per pass. It is faster and gives different
    maps.

    With ``A(x)`` the layer's activations for the input and ``A(x')`` for
    the baseline, the path points are ``A_m = A(x') + a_m (A(x) - A(x'))``.
    The model runs on the input ``x`` with the layer's output replaced by
    ``A_m``, which gives the target score ``S`` and the Grad-CAM weights
    ``w_k(m) = mean_{ij} dS/dA_{kij}`` at ``A_m``:

    .. math::

        D_m(x) = \sum_k w_k(m) \, (A_{m,k} - A_k(x'))
               = a_m \sum_k w_k(m) \, (A_k(x) - A_k(x'))

        \mathrm{LSIGC}(x) = \sum_m s_m \, \mathrm{ReLU}(D_m(x))

    where ``(a_m, s_m)`` are the points and weights of one of Captum's
    quadrature rules (``method``; ``riemann_trapezoid``'s weights sum to
    ``1 - 1/n_steps``). It is the path integral of Layer Integrated
    Gradients with the gradient replaced by its per-channel spatial mean,
    and a ReLU per path point.

    Each example's path points run through the model together with that
    example's own input (one example per forward pass, its path points as
    the batch), so anything else the rest of the model reads from the input
    (a mask, a gate, an extra argument) is that example's: a map does not
    depend on the other examples in the call. Refused with a ValueError
    naming the cause: a layer called more than once per forward pass; a
    model whose part after the layer does not follow the layer's batch size
    (one row per path point); and a layer that a gradient route from the
    input to the output goes around, such as a layer inside a residual block
    (``layer4[1].bn2`` of a ResNet, a ViT block's ``ln_1``): the skip
    connection would carry the input's own features, not the path point's,
    to every point. A whole block's output (``layer4``) is supported.
    """

    @log_usage()
    @torch.inference_mode(False)  # autograd records nothing in inference mode
    def attribute(
        self,
        inputs: Tensor | tuple[Tensor, ...],
        target: TargetType = None,
        additional_forward_args: Any = None,
        attribute_to_layer_input: bool = False,
        relu_attributions: bool = False,
        attr_dim_summation: bool = True,
        grad_kwargs: dict[str, Any] | None = None,
        baselines: BaselineType = None,
        n_steps: int = 50,
        method: str = "gausslegendre",
        internal_batch_size: int | None = None,
        per_step_relu: bool = True,
        reshape_transform: ReshapeTransform | None = None,
    ) -> Tensor | tuple[Tensor, ...]:
        r"""
        Takes the options of ``IntegratedLayerGradCam.attribute`` in the same
        order, except ``subtract_baseline_activations`` (the
        layer-space term is always taken from ``A(x')``).

        Args:
            inputs (Tensor or tuple[Tensor, ...]): The examples (dimension 0),
                        floating point and finite; a tuple for a model with
                        several input tensors.
            target (int, tuple, Tensor, or list, optional): The score ``S``, as
                        in :class:`captum.attr.LayerGradCam`.
                        Default: None
            additional_forward_args (Any, optional): More arguments of
                        forward_func after the inputs; a tensor among them
                        has one row per example, and each example's pass
                        gets its row.
                        Default: None
            attribute_to_layer_input (bool, optional): Run the path through
                        the layer's input instead of its output.
                        Default: False
            relu_attributions (bool, optional): Clip the final map at zero.
                        Default: False
            attr_dim_summation (bool, optional): Sum over channels; False
                        gives per-channel maps masked by ``D_m > 0``.
                        Default: True
            grad_kwargs (dict[str, Any], optional): Passed on to
                        ``torch.autograd.grad``.
                        Default: None
            baselines (scalar, Tensor, or tuple, optional): Input whose
                        activations ``A(x')`` start the path, given as for
                        ``IntegratedLayerGradCam``. None: zeros.
                        Default: None
            n_steps (int, optional): Number of path points ``M`` (at least 2
                        for the Riemann rules, at most 1000 for
                        ``gausslegendre``).
                        Default: 50
            method (str, optional): Captum's quadrature rule.
                        Default: ``gausslegendre``
            internal_batch_size (int, optional): At most this many path
                        points per forward pass (each pass holds one
                        example); the part before the layer runs once per
                        pass. None: all ``n_steps`` points of an example in
                        one pass. The maps do not depend on it.
                        Default: None
            per_step_relu (bool, optional): ReLU on each ``D_m``; False
                        integrates the signed term.
                        Default: True
            reshape_transform (Callable, optional): Maps the layer's tensor to
                        ``(N, channels, *spatial)`` for the Grad-CAM term (see
                        :mod:`captum_igcam.reshapes`); the path itself runs in
                        the layer's own layout.
                        Default: None

        Returns:
            *Tensor* or *tuple[Tensor, ...]* of **attributions**:
            - **attributions** (*Tensor* or *tuple[Tensor, ...]*):
                        One map per example with the layer's shape (one
                        channel when summed), detached, in the layer's dtype
                        or float32 if that is narrower.

        Examples::

            >>> model = torchvision.models.resnet18(weights="DEFAULT").eval()
            >>> fast = LayerSpaceIntegratedGradCam(model, model.layer4)
            >>> # Nx1x7x7 maps of class 281, NOT the paper's Integrated Grad-CAM.
            >>> maps = fast.attribute(images, target=281, internal_batch_size=200)
        """
        arguments = (inputs, baselines, additional_forward_args, target)
        options = (n_steps, method, internal_batch_size, reshape_transform)
        inputs, baselines, args, target = self._formatted(*arguments, options)
        n_examples = len(inputs[0])
        for arg in args or ():
            if isinstance(arg, Tensor) and arg.shape[:1] != (n_examples,):
                expected = f"tensors with one row per example ({n_examples})"
                raise bad_value("additional_forward_args", expected, tuple(arg.shape))
        probe = LayerProbe(self, attribute_to_layer_input)
        if probe.bypasses_layer(*_example(inputs, args, 0)):
            raise bad_value(
                "layer",
                "a layer that every gradient route from the input to the output "
                "goes through",
                "one with a route around the layer (a residual connection)",
                "explain the whole block, or use IntegratedLayerGradCam",
            )
        _, leaves = probe.run(baselines, args)
        starts = tuple(leaf.detach() for leaf in leaves)
        term = Term(reshape_transform, attr_dim_summation, per_step_relu)

        def chunk(index: int, quadrature: list[tuple[float, float]]) -> Tensors:
            """Example ``index``'s part of the integral over a chunk of path
            points: one pass of its input, whose layer tensors ``A(x)`` are
            replaced by the points ``A(x') + a (A(x) - A(x'))``."""
            alphas = [alpha for _, alpha in quadrature]
            start = tuple(tensor[index : index + 1] for tensor in starts)
            ends: list[Tensor] = []

            def replace(actual: Tensors) -> Tensors:
                ends[:] = [tensor.detach() for tensor in actual]
                return tuple(points_on_line(*ab, alphas) for ab in zip(start, ends))

            def scores(output: Tensor) -> Tensor:
                _check_pass(probe, output, len(alphas))
                checked = check_target(target, output, n_examples)
                mine = checked[index] if isinstance(checked, list) else checked
                return _select_targets(output, mine)

            example = _example(inputs, args, index)
            _, _, gradients = self._gradients(
                probe, *example, scores, grad_kwargs, replace
            )
            # D_m = a_m sum_k w_k(m) (A_k(x) - A_k(x')), and a_m >= 0.
            weights = [step * alpha for step, alpha in quadrature]
            return tuple(
                term.integral(1, weights, gradient, end - base)
                for gradient, end, base in zip(gradients, ends, start)
            )

        step_sizes, alphas = approximation_parameters(method)
        quadrature = list(zip(step_sizes(n_steps), alphas(n_steps)))
        size = internal_batch_size or n_steps
        pieces = [quadrature[first : first + size] for first in range(0, n_steps, size)]
        maps = [
            [sum(parts) for parts in zip(*(chunk(index, piece) for piece in pieces))]
            for index in range(n_examples)
        ]
        return self._output(tuple(map(torch.cat, zip(*maps))), probe, relu_attributions)


def _check_pass(probe: LayerProbe, output: Tensor, n_points: int) -> None:
    """Refuses a pass whose layer ran more than once or whose output does
    not have one row per path point."""
    if probe.layer_calls > 1:
        calls = f"{probe.layer_calls} calls"
        raise bad_value("layer", "a layer that runs once per forward pass", calls)
    if output.shape[0] != n_points:
        raise bad_value(
            "forward_func",
            "a model whose part after the layer follows the layer's batch size "
            "(one row per path point)",
            f"{output.shape[0]} output rows, not {n_points}",
            "use IntegratedLayerGradCam, or x.flatten(1), not "
            "x.view(inputs.size(0), -1)",
        )


def _example(inputs: Tensors, args: Any, index: int) -> tuple[Tensors, Any]:
    """One example's inputs and additional arguments (tensors: its row)."""
    rows = slice(index, index + 1)
    if args is not None:
        args = tuple(arg[rows] if isinstance(arg, Tensor) else arg for arg in args)
    return tuple(inp[rows] for inp in inputs), args


__all__ = ["LayerSpaceIntegratedGradCam"]
