"""Integrated Grad-CAM as a Captum layer attribution method."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from captum.log import log_usage
from torch import Tensor

from captum_igcam._captum_compat import (
    BaselineType,
    TargetType,
    _batch_attribution,
    _expand_additional_forward_args,
    _expand_target,
    _select_targets,
)
from captum_igcam._checks import check_target
from captum_igcam._layer_hook import LayerProbe, Tensors
from captum_igcam._path import GradCamPath, Term, points_on_line
from captum_igcam.reshapes import ReshapeTransform


class IntegratedLayerGradCam(GradCamPath):
    r"""
    Computes Integrated Grad-CAM attribution for a chosen layer.

    Grad-CAM weights each channel ``k`` of a layer's activations ``A(x)`` by
    the spatial mean of the target score's gradient,
    ``w_k(x) = mean_{ij} dS(x)/dA_{kij}(x)``, and sums the weighted channels.
    Integrated Grad-CAM evaluates the Grad-CAM term along the straight path
    ``x_a = x' + a (x - x')`` from a baseline ``x'`` to the input and
    integrates it:

    .. math::

        D_m(x) = \sum_k w_k(x_{a_m}) \, (A_k(x_{a_m}) - A_k(x'))

        \mathrm{IGC}(x) = \sum_m s_m \, \mathrm{ReLU}(D_m(x))

    where ``(a_m, s_m)`` are the points and weights of one of Captum's
    quadrature rules (``method``). This formula, with the baseline's
    activations subtracted, is the one in the paper's figure (Sattarzadeh et
    al., "Integrated Grad-CAM: Sensitivity-Aware Visual Explanation of Deep
    Convolutional Networks via Integrated Gradient-Based Scoring", ICASSP
    2021, https://arxiv.org/abs/2102.07805):
    ``subtract_baseline_activations=True``.

    The default, ``subtract_baseline_activations=False``
    (``D_m(x) = \sum_k w_k(x_{a_m}) A_k(x_{a_m})``), is the formula of the
    authors' released notebook, which reproduces the paper's results; why it
    is the default is measured in ``docs/variants.md``. The notebook also
    uses ``method="riemann_left"`` and sums the per-step maps: its map is
    ``n_steps`` times this class's map with that method.

    Captum's ``riemann_trapezoid`` weights sum to ``1 - 1/n_steps``, not 1:
    with it the map is ``(1 - 1/n_steps)`` times the trapezoid integral
    (normalised maps are unaffected).

    As in :class:`captum.attr.LayerGradCam`, no ReLU is applied to the final
    map by default; the per-step ReLU already makes it non-negative. The map
    has the layer's shape with one channel, and is usually upsampled with
    :meth:`LayerAttribution.interpolate`. A layer called several times per
    forward pass is attributed at its last call, with a warning, as
    ``LayerGradCam`` does.

    :class:`~captum_igcam.LayerSpaceIntegratedGradCam` is a faster method
    that integrates in the layer's activation space instead; it is not the
    paper's method.

    Notes:
        At a layer followed only by global average pooling and a linear
        layer (EfficientNet's head activation, ResNet's ``layer4``), the
        score's gradient is ``W_ck / (h w)`` at every position and at every
        point of the path, so ``w_k`` is the same everywhere and
        ``IGC(x) = sum_m s_m ReLU(CAM(x_{a_m}) [- CAM(x')]) / (h w)``: the
        average of ReLU'd CAM maps along the path, with nothing left to
        integrate in the gradient. There Grad-CAM, XGrad-CAM and HiResCAM
        give one map (``ReLU(CAM) / (h w)``), LayerCAM is CAM over the
        channels with ``W_ck > 0`` and Grad-CAM++ CAM over those channels
        with weights ``W_ck / (2 + W_ck m_k)`` (``m_k`` the pooled
        feature); ``tests/test_peers.py`` checks these equalities in float64
        and ``docs/peers.md`` compares the methods where they differ.
        :func:`captum_igcam.app.layer_gradient.gradient_is_constant_over_positions`
        tells whether a layer is such a layer.
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
        subtract_baseline_activations: bool = False,
    ) -> Tensor | tuple[Tensor, ...]:
        r"""
        The parameters of ``LayerGradCam.attribute`` come first, in its order;
        the path's follow, shared with
        :class:`~captum_igcam.LayerSpaceIntegratedGradCam`.

        Args:
            inputs (Tensor or tuple[Tensor, ...]): Input for which attributions
                        are computed: a tensor, or a tuple of tensors for a
                        model with several inputs. Dimension 0 indexes the
                        examples. Floating point and finite.
            target (int, tuple, Tensor, or list, optional): Output index (or one
                        per example) whose score ``S`` is explained, as in
                        :class:`captum.attr.LayerGradCam`; None when the model
                        returns one scalar per example.
                        Default: None
            additional_forward_args (Any, optional): Further arguments of
                        forward_func after the inputs, not attributed to.
                        Tensors among them are repeated along dimension 0 for
                        the path points, as in IntegratedGradients.
                        Default: None
            attribute_to_layer_input (bool, optional): Explain the layer's input
                        instead of its output.
                        Default: False
            relu_attributions (bool, optional): Apply a ReLU to the final map.
                        Default: False
            attr_dim_summation (bool, optional): Sum over channels. With False,
                        the per-channel maps, masked by the per-step ReLU of
                        the summed term, so that they add up to the summed map.
                        Default: True
            grad_kwargs (dict[str, Any], optional): Further keyword arguments
                        of ``torch.autograd.grad``.
                        Default: None
            baselines (scalar, Tensor, or tuple, optional): The path's start
                        ``x'``: a number, a tensor that broadcasts to the input
                        (the input's number of dims with batch size N or 1, or
                        one example's, e.g. per-channel values ``(3, 1, 1)``),
                        or a tuple of these, one per input tensor. None: zeros.
                        Default: None
            n_steps (int, optional): Number of path points ``M``: at least 2 for
                        the Riemann rules, at most 1000 for ``gausslegendre``
                        (Captum builds its nodes in time cubic in ``M``).
                        Default: 50
            method (str, optional): Captum's quadrature rule:
                        ``riemann_right`` (the paper's figure),
                        ``riemann_left`` (the authors' notebook),
                        ``riemann_middle``, ``riemann_trapezoid`` (weights
                        summing to ``1 - 1/M``) or ``gausslegendre``.
                        Default: ``gausslegendre``
            internal_batch_size (int, optional): At most this many examples x
                        path points per forward pass, to bound memory; the maps
                        do not depend on it. Below N it is raised to N with
                        Captum's warning. None: all points in one pass.
                        Default: None
            per_step_relu (bool, optional): Apply the ReLU to each path point's
                        term before integrating, as the paper does; False
                        integrates the signed term.
                        Default: True
            reshape_transform (Callable, optional): Maps the layer's tensor
                        (batch first) to ``(N, channels, *spatial)`` before the
                        Grad-CAM term, e.g. ``vit_tokens()`` for a ViT block or
                        ``channels_last_grid()`` for Swin (see
                        :mod:`captum_igcam.reshapes`). None: the layer's tensor
                        as it is.
                        Default: None
            subtract_baseline_activations (bool, optional): Use
                        ``A(x_a) - A(x')`` as in the paper's figure; False uses
                        ``A(x_a)`` as the authors' notebook does.
                        Default: False

        Returns:
            *Tensor* or *tuple[Tensor, ...]* of **attributions**:
            - **attributions** (*Tensor* or *tuple[Tensor, ...]*):
                        Maps with the layer's shape (one channel when summed),
                        detached, in the layer's dtype or float32 if that is
                        narrower; a tuple when the layer's output (or input)
                        is a tuple of tensors.

        Examples::

            >>> # ImageClassifier takes a batch of images Nx3x32x32 and returns
            >>> # Nx10 class scores; its last convolution conv4 outputs Nx50x8x8.
            >>> net = ImageClassifier().eval()
            >>> inputs = torch.randn(2, 3, 32, 32)
            >>> igcam = IntegratedLayerGradCam(net, net.conv4)
            >>> attr = igcam.attribute(inputs, target=3, n_steps=50)  # Nx1x8x8
            >>> upsampled = LayerAttribution.interpolate(attr, (32, 32))
            >>> # The authors' released notebook, exactly:
            >>> notebook = 50 * igcam.attribute(
            ...     inputs, target=3, n_steps=50, method="riemann_left")
        """
        arguments = (inputs, baselines, additional_forward_args, target)
        options = (n_steps, method, internal_batch_size, reshape_transform)
        inputs, baselines, args, target = self._formatted(*arguments, options)
        probe = LayerProbe(self, attribute_to_layer_input)
        baseline_activations = None
        if subtract_baseline_activations:
            _, leaves = probe.run(baselines, args)
            baseline_activations = tuple(leaf.detach() for leaf in leaves)
        n_examples = len(inputs[0])
        maps = _batch_attribution(
            self,
            n_examples,
            internal_batch_size or n_examples * n_steps,
            n_steps,
            inputs=inputs,
            baselines=baselines,
            term=Term(reshape_transform, attr_dim_summation, per_step_relu),
            target=target,
            additional_forward_args=args,
            grad_kwargs=grad_kwargs or {},
            method=method,
            probe=probe,
            baseline_activations=baseline_activations,
        )
        return self._output(maps, probe, relu_attributions)

    def _attribute(
        self,
        inputs: Tensors,
        baselines: Tensors,
        target: Any,
        additional_forward_args: Any,
        grad_kwargs: dict[str, Any] | None,
        probe: LayerProbe,
        term: Term,
        baseline_activations: Tensors | None,
        step_sizes_and_alphas: tuple[Sequence[float], Sequence[float]],
        **_: Any,
    ) -> Tensors:
        """One chunk of path points, all examples (Captum's
        ``_batch_attribution`` passes the chunk's weights and points, and the
        call's ``method`` and the chunk's ``n_steps``, which are not needed)."""
        step_sizes, alphas = step_sizes_and_alphas
        n_examples = len(inputs[0])

        def scores(output: Tensor) -> Tensor:
            checked = check_target(target, output, n_examples)
            return _select_targets(output, _expand_target(checked, len(alphas)))

        _, leaves, gradients = self._gradients(
            probe,
            tuple(points_on_line(b, x, alphas) for b, x in zip(baselines, inputs)),
            _expand_additional_forward_args(additional_forward_args, len(alphas)),
            scores,
            grad_kwargs,
        )
        bases = baseline_activations or (None,) * len(leaves)
        return tuple(
            term.integral(n_examples, step_sizes, gradient, leaf, base)
            for leaf, gradient, base in zip(leaves, gradients, bases)
        )


__all__ = ["IntegratedLayerGradCam"]
