"""Grad-CAM with a reshape transform: Integrated Grad-CAM's one-point counterpart."""

from __future__ import annotations

from typing import Any

import captum
import torch
from captum.attr import LayerGradCam
from captum.log import log_usage
from torch import Tensor

from captum_igcam import _captum_compat
from captum_igcam._captum_compat import (
    TargetType,
    _format_additional_forward_args,
    _format_output,
    _format_tensor_into_tuples,
    compute_layer_gradients_and_eval,
)
from captum_igcam._checks import bad_value
from captum_igcam.reshapes import (
    ReshapeTransform,
    check_reshape_transform,
    to_channel_grid,
)


class ReshapedLayerGradCam(LayerGradCam):
    r"""
    :class:`captum.attr.LayerGradCam` that also explains layers not laid out
    as ``(N, channels, *spatial)``, such as vision transformer blocks.

    Grad-CAM weights each channel ``k`` of the layer's activations ``A(x)`` by
    the mean over positions of the target score's gradient and sums the
    weighted channels:

    .. math::

        G(x) = \sum_k w_k(x) \, A_k(x), \qquad
        w_k(x) = \mathrm{mean}_{p} \, \frac{\partial S(x)}{\partial A_{kp}(x)}

    ``LayerGradCam`` takes positions to be every dimension after the second,
    which on a ViT block's ``(N, tokens, channels)`` output averages over
    channels instead. ``attribute`` here takes a ``reshape_transform`` (see
    :mod:`captum_igcam.reshapes`), applied to the activations and the
    gradients before the term above, as
    :class:`~captum_igcam.IntegratedLayerGradCam` does. Without one it
    computes exactly what ``LayerGradCam`` computes.
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
        reshape_transform: ReshapeTransform | None = None,
    ) -> Tensor | tuple[Tensor, ...]:
        r"""
        ``inputs``, ``target``, ``additional_forward_args``,
        ``attribute_to_layer_input``, ``relu_attributions``,
        ``attr_dim_summation`` and ``grad_kwargs`` are those of
        :meth:`captum.attr.LayerGradCam.attribute`.

        Args:
            reshape_transform (Callable, optional): Maps the layer's tensor
                        (batch first) to ``(N, channels, *spatial)``, e.g.
                        ``vit_tokens()`` or ``channels_last_grid()``.
                        Default: None

        Returns:
            *Tensor* or *tuple[Tensor, ...]* of **attributions**:
            - **attributions** (*Tensor* or *tuple[Tensor, ...]*):
                        Grad-CAM maps of shape ``(N, 1, *spatial)`` in the
                        reshaped layout (``(N, channels, *spatial)`` with
                        ``attr_dim_summation=False``).

        Examples::

            >>> vit = torchvision.models.vit_b_16().eval()
            >>> grad_cam = ReshapedLayerGradCam(vit, vit.encoder.layers[-1].ln_1)
            >>> maps = grad_cam.attribute(images, target=281,
            ...                           reshape_transform=vit_tokens())
            >>> maps.shape  # one 14 x 14 map per image
            torch.Size([2, 1, 14, 14])
        """
        check_reshape_transform(reshape_transform)
        options = {"grad_kwargs": grad_kwargs}
        if not _captum_compat.HAS_GRAD_KWARGS:
            if grad_kwargs:
                got = f"a dict with Captum {captum.__version__}"
                raise bad_value("grad_kwargs", "None before Captum 0.8", got)
            options = {}
        gradients, evaluations = compute_layer_gradients_and_eval(
            self.forward_func,
            self.layer,
            _format_tensor_into_tuples(inputs),
            target,
            _format_additional_forward_args(additional_forward_args),
            device_ids=self.device_ids,
            attribute_to_layer_input=attribute_to_layer_input,
            **options,
        )
        maps = []
        for gradient, evaluation in zip(gradients, evaluations):
            gradient = to_channel_grid(reshape_transform, gradient)
            evaluation = to_channel_grid(reshape_transform, evaluation.detach())
            # LayerGradCam's own operations, in its order.
            if gradient.dim() > 2:
                gradient = torch.mean(
                    gradient, dim=tuple(range(2, gradient.dim())), keepdim=True
                )
            scaled = gradient * evaluation
            if attr_dim_summation:
                scaled = torch.sum(scaled, dim=1, keepdim=True)
            maps.append(torch.relu(scaled) if relu_attributions else scaled)
        return _format_output(len(maps) > 1, tuple(maps))


__all__ = ["ReshapedLayerGradCam"]
