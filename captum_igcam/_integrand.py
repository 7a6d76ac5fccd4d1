"""The Grad-CAM integrand of Integrated Grad-CAM, for a chunk of path points."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor


def grad_cam_weights(gradients: Tensor, dtype: torch.dtype | None = None) -> Tensor:
    """Spatially averaged gradients ``w_k``, as ``LayerGradCam`` computes them.

    A layer output without spatial dimensions (``N x K``) keeps its gradient
    as the weight, which is what ``LayerGradCam`` does too. ``dtype`` is the
    dtype the mean is accumulated and returned in (default: the gradients').
    """
    if gradients.dim() <= 2:
        return gradients.to(dtype or gradients.dtype)
    spatial = tuple(range(2, gradients.dim()))
    return gradients.mean(dim=spatial, keepdim=True, dtype=dtype)


def accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype the integral is accumulated in: ``dtype``, at least float32."""
    return torch.promote_types(dtype, torch.float32)


@dataclass(frozen=True)
class GradCamIntegrand:
    """The Grad-CAM term ``D_m`` and its quadrature sum over path points.

    Args:
        per_step_relu: Apply the ReLU to each ``D_m`` before summing.
        attr_dim_summation: Sum over channels; otherwise return per-channel
                    terms masked by ``D_m > 0`` so that they add up to the
                    summed map.
    """

    per_step_relu: bool
    attr_dim_summation: bool

    def along_input_path(
        self,
        activations: Tensor,
        gradients: Tensor,
        baseline_activations: Tensor | None,
        step_sizes: Sequence[float],
    ) -> Tensor:
        """Sums ``s_m * ReLU(D_m)`` over the path points of one chunk.

        Args:
            activations: Layer activations ``A(x_{a_m})`` of shape
                        ``(M * N, K, ...)``, path point major (the order in
                        which Captum stacks scaled inputs).
            gradients: ``dS/dA`` at the same points, same shape.
            baseline_activations: ``A(x')`` of shape ``(N, K, ...)``, or None
                        for a zero feature baseline.
            step_sizes: The ``M`` quadrature weights ``s_m``.

        Returns:
            Tensor of shape ``(N, 1, ...)`` (or ``(N, K, ...)`` per channel)
            in at least float32, whatever the layer's dtype.
        """
        dtype = accumulation_dtype(activations.dtype)
        weights = _per_point_weights(gradients, len(step_sizes), dtype)
        activations = activations.to(dtype).unflatten(0, weights.shape[:2])
        if baseline_activations is not None:
            baseline_activations = baseline_activations.to(dtype).unsqueeze(0)
        terms = self._terms(weights, activations, baseline_activations)
        return (_per_point(step_sizes, terms) * terms).sum(dim=0)

    def along_layer_path(
        self,
        activation_change: Tensor,
        gradients: Tensor,
        alphas: Sequence[float],
        step_sizes: Sequence[float],
    ) -> Tensor:
        """Sums ``s_m * ReLU(D_m)`` along a chunk of the layer-space path.

        At the point ``A(x') + a_m (A(x) - A(x'))`` the activations minus the
        baseline's are ``a_m (A(x) - A(x'))``, so
        ``D_m = a_m sum_k w_k(m) (A_k(x) - A_k(x'))``: the path points' own
        activations are never read.

        Args:
            activation_change: ``A(x) - A(x')`` of shape ``(N, K, ...)``.
            gradients: ``dS/dA`` at the ``M`` path points,
                        ``(M * N, K, ...)``, path point major.
            alphas: The ``M`` path points ``a_m``.
            step_sizes: The ``M`` quadrature weights ``s_m``.

        Returns:
            Tensor of shape ``(N, 1, ...)`` (or ``(N, K, ...)`` per channel)
            in at least float32.
        """
        dtype = accumulation_dtype(activation_change.dtype)
        weights = _per_point_weights(gradients, len(alphas), dtype)
        weights = weights * _per_point(alphas, weights)
        change = activation_change.to(dtype).unsqueeze(0)
        terms = self._terms(weights, change, None)
        return (_per_point(step_sizes, terms) * terms).sum(dim=0)

    def _terms(
        self, weights: Tensor, activations: Tensor, baseline: Tensor | None
    ) -> Tensor:
        """``ReLU(D_m)`` (or the masked per-channel terms) at every point.

        Args:
            weights: ``(M, N, K, 1, ...)`` (or ``(M, N, K)``).
            activations: ``(M, N, K, ...)``, or ``(1, N, K, ...)`` shared by
                        every path point.
            baseline: ``(1, N, K, ...)`` subtracted from the activations, or
                        None.

        Returns:
            ``(M, N, 1, ...)``, or ``(M, N, K, ...)`` per channel.
        """
        if self.attr_dim_summation:
            summed = _channel_sum(weights, activations)
            if baseline is not None:
                summed = summed - _channel_sum(weights, baseline)
            return summed.clamp(min=0) if self.per_step_relu else summed
        if baseline is not None:
            activations = activations - baseline
        terms = weights * activations
        if self.per_step_relu:
            terms = terms * (terms.sum(dim=2, keepdim=True) > 0)
        return terms


def _per_point_weights(gradients: Tensor, n_points: int, dtype: torch.dtype) -> Tensor:
    """``w_k`` at every path point, ``(M, N, K, 1, ...)``, in ``dtype``."""
    return grad_cam_weights(gradients, dtype).unflatten(0, (n_points, -1))


def _per_point(values: Sequence[float], like: Tensor) -> Tensor:
    """One value per path point, shaped to broadcast against ``like``."""
    return torch.tensor(values, dtype=like.dtype, device=like.device).reshape(
        -1, *([1] * (like.dim() - 1))
    )


def _channel_sum(weights: Tensor, activations: Tensor) -> Tensor:
    """``sum_k w_k A_k`` without materialising the per-channel terms.

    A matrix product over the channels, oriented so that the activations are
    read in their own memory layout: channels first for contiguous tensors,
    channels last for ``torch.channels_last`` ones (no copy in either case).

    Args:
        weights: ``(M, N, K, 1, ...)`` (or ``(M, N, K)`` without spatial dims).
        activations: ``(M, N, K, ...)`` or ``(1, N, K, ...)``.

    Returns:
        ``(M, N, 1, ...)``.
    """
    n_points, n_examples, channels = weights.shape[:3]
    spatial = activations.shape[3:]
    rows = weights.reshape(n_points, n_examples, 1, channels)
    if activations.dim() > 3 and activations.stride(2) == 1:
        # Channels are the innermost dimension: (..., positions, K) @ (K, 1).
        positions = activations.movedim(2, -1).flatten(2, -2)
        summed = torch.matmul(positions, rows.transpose(-1, -2)).transpose(-1, -2)
    else:
        summed = torch.matmul(
            rows, activations.flatten(3) if spatial else activations.unsqueeze(-1)
        )
    return summed.reshape(n_points, n_examples, 1, *spatial)
