"""The Grad-CAM integrand of Integrated Grad-CAM, for a chunk of path points."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def grad_cam_weights(gradients: Tensor) -> Tensor:
    """Spatially averaged gradients ``w_k``, as ``LayerGradCam`` computes them.

    A layer output without spatial dimensions (``N x K``) keeps its gradient
    as the weight, which is what ``LayerGradCam`` does too.
    """
    if gradients.dim() <= 2:
        return gradients
    return gradients.mean(dim=tuple(range(2, gradients.dim())), keepdim=True)


def integrate_grad_cam(
    activations: Tensor,
    gradients: Tensor,
    baseline_activations: Tensor | None,
    step_sizes: Sequence[float],
    per_step_relu: bool,
    attr_dim_summation: bool,
) -> Tensor:
    """Sums ``s_m * ReLU(D_m)`` over the path points of one chunk.

    Args:
        activations: Layer activations ``A(x_{a_m})`` of shape
                    ``(M * N, K, ...)``, path point major (the order in which
                    Captum stacks scaled inputs).
        gradients: ``dS/dA`` at the same points, same shape.
        baseline_activations: ``A(x')`` of shape ``(N, K, ...)``, or None for
                    a zero feature baseline.
        step_sizes: The ``M`` quadrature weights ``s_m``.
        per_step_relu: Apply the ReLU to each ``D_m`` before summing.
        attr_dim_summation: Sum over channels; otherwise return per-channel
                    terms masked by ``D_m > 0`` so that they add up to the
                    summed map.

    Returns:
        Tensor of shape ``(N, 1, ...)`` (or ``(N, K, ...)`` per channel) in at
        least float32, whatever the layer's dtype.
    """
    n_points = len(step_sizes)
    accumulate_dtype = torch.promote_types(activations.dtype, torch.float32)
    per_point_shape = (n_points, -1, *activations.shape[1:])
    activations = activations.to(accumulate_dtype).reshape(per_point_shape)
    weights = grad_cam_weights(gradients.to(accumulate_dtype))
    weights = weights.reshape(n_points, -1, *weights.shape[1:])
    if baseline_activations is not None:
        activations = activations - baseline_activations.to(accumulate_dtype)
    per_channel = weights * activations
    summed = per_channel.sum(dim=2, keepdim=True)
    step_weights = torch.tensor(
        step_sizes, dtype=accumulate_dtype, device=activations.device
    ).reshape(n_points, *([1] * (summed.dim() - 1)))
    if attr_dim_summation:
        terms = summed.clamp(min=0) if per_step_relu else summed
    else:
        terms = per_channel * (summed > 0) if per_step_relu else per_channel
    return (step_weights * terms).sum(dim=0)
