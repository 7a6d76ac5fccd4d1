"""Grad-CAM integrated along a straight path in a layer's activation space."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from captum.log import log_usage
from torch import Tensor

from captum_igcam._captum_compat import (
    BaselineType,
    TargetType,
    _expand_additional_forward_args,
)
from captum_igcam._checks import bad_value
from captum_igcam._path import (
    GradCamPath,
    PathCall,
    Steps,
    Tensors,
    integral,
    memory_format,
    points_on_line,
)
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
            internal_batch_size (int, optional): At most this many examples x
                        path points per chunk; the maps do not depend on it.
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
        arguments = locals()  # the parameters above, by name
        del arguments["self"]
        return self._attribute_path(PathCall(**arguments))

    def _prepare(self, call: PathCall) -> None:
        for arg in call.additional_forward_args or ():
            if isinstance(arg, Tensor) and arg.shape[:1] != (call.n_examples,):
                expected = f"tensors with one row per example ({call.n_examples})"
                raise bad_value("additional_forward_args", expected, tuple(arg.shape))
        if call.probe.bypasses_layer(*_example(call, 0)):
            raise bad_value(
                "layer",
                "a layer that every gradient route from the input to the output "
                "goes through",
                "one with a route around the layer (a skipping residual connection, "
                "say), which would carry the input's own features to every path point",
                "Explain the whole block (e.g. model.layer4, not model.layer4[1].bn2), "
                "or use IntegratedLayerGradCam",
            )
        _, ends = call.probe.run(
            tuple(
                torch.cat([base, inp]).contiguous(memory_format=memory_format(inp))
                for base, inp in zip(call.baselines, call.inputs)
            ),
            _expand_additional_forward_args(call.additional_forward_args, 2),
        )
        ends = tuple(end.detach() for end in ends)
        call.baseline_activations = tuple(end[: call.n_examples] for end in ends)
        call.input_activations = tuple(end[call.n_examples :] for end in ends)

    def _forward(
        self, call: PathCall, alphas: Sequence[float]
    ) -> tuple[Tensor, Tensors]:
        outputs, leaves = [], []
        for index in range(call.n_examples):
            rows = slice(index, index + 1)
            points = tuple(
                points_on_line(base[rows], actual[rows], alphas)
                for base, actual in zip(
                    call.baseline_activations, call.input_activations
                )
            )
            try:
                output, example_leaves = call.probe.run(
                    *_example(call, index), replace=lambda _, points=points: points
                )
            except RuntimeError as error:
                raise _unsupported(f"a failed forward pass: {error}") from error
            if call.probe.layer_calls > 1:
                raise bad_value(
                    "layer",
                    "a layer that runs once per forward pass",
                    f"{call.probe.layer_calls} calls",
                    "LayerSpaceIntegratedGradCam needs it; use IntegratedLayerGradCam",
                )
            if output.shape[0] != len(alphas):
                raise _unsupported(f"{output.shape[0]} output rows, not {len(alphas)}")
            outputs.append(output)
            leaves.extend(example_leaves)
        return torch.stack(outputs, dim=1).flatten(0, 1), tuple(leaves)

    def _integrate(
        self, call: PathCall, steps: Steps, leaves: Tensors, gradients: Tensors
    ) -> Tensors:
        # D_m = a_m sum_k w_k(m) (A_k(x) - A_k(x')), and a_m >= 0.
        weights = [step * alpha for step, alpha in zip(*steps)]
        per_tensor = len(call.input_activations)
        return tuple(
            integral(
                call,
                weights,
                torch.stack(gradients[i::per_tensor], dim=1).flatten(0, 1),
                actual - base,
            )
            for i, (base, actual) in enumerate(
                zip(call.baseline_activations, call.input_activations)
            )
        )


def _example(call: PathCall, index: int) -> tuple[Tensors, Any]:
    """One example's inputs and additional arguments (tensors: its row)."""
    rows = slice(index, index + 1)
    args = call.additional_forward_args
    if args is not None:
        args = tuple(arg[rows] if isinstance(arg, Tensor) else arg for arg in args)
    return tuple(inp[rows] for inp in call.inputs), args


def _unsupported(got: str) -> ValueError:
    return bad_value(
        "forward_func",
        "a model whose part after the layer follows the layer's batch size (one "
        "row per path point), as LayerSpaceIntegratedGradCam needs",
        got,
        "use IntegratedLayerGradCam, or a forward that reshapes with the features' "
        "own batch size (e.g. x.flatten(1) rather than x.view(inputs.size(0), -1))",
    )


__all__ = ["LayerSpaceIntegratedGradCam"]
