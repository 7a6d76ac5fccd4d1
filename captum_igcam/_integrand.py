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
        least float32, whatever the layer's dtype, detached from autograd
        (also when the gradients carry a graph, as with ``create_graph``).
    """
    n_points = len(step_sizes)
    accumulate_dtype = torch.promote_types(activations.dtype, torch.float32)
    per_point_shape = (n_points, -1, *activations.shape[1:])
    activations = activations.to(accumulate_dtype).reshape(per_point_shape)
    weights = grad_cam_weights(gradients.detach().to(accumulate_dtype))
    weights = weights.reshape(n_points, -1, *weights.shape[1:])
    if baseline_activations is not None:
        baseline_activations = baseline_activations.to(accumulate_dtype)
    step_weights = torch.tensor(
        step_sizes, dtype=accumulate_dtype, device=activations.device
    ).reshape(n_points, *([1] * (activations.dim() - 1)))
    if attr_dim_summation:
        summed = _channel_sum(weights, activations, baseline_activations)
        terms = summed.clamp(min=0) if per_step_relu else summed
    else:
        if baseline_activations is not None:
            activations = activations - baseline_activations
        terms = weights * activations
        if per_step_relu:
            terms = terms * (terms.sum(dim=2, keepdim=True) > 0)
    return (step_weights * terms).sum(dim=0)


def _channel_sum(
    weights: Tensor, activations: Tensor, baseline_activations: Tensor | None
) -> Tensor:
    """``sum_k w_k (A_k - A'_k)`` without materialising the per-channel terms.

    Args:
        weights: ``(M, N, K, 1, ...)`` (or ``(M, N, K)`` without spatial dims).
        activations: ``(M, N, K, ...)``.
        baseline_activations: ``(N, K, ...)`` or None.

    Returns:
        ``(M, N, 1, ...)``.
    """
    n_points, n_examples, channels = activations.shape[:3]
    spatial = activations.shape[3:]
    row_weights = weights.reshape(n_points, n_examples, 1, channels)
    summed = torch.matmul(
        row_weights, activations.reshape(n_points, n_examples, channels, -1)
    )
    if baseline_activations is not None:
        summed = summed - torch.matmul(
            row_weights, baseline_activations.reshape(n_examples, channels, -1)
        )
    return summed.reshape(n_points, n_examples, 1, *spatial)
