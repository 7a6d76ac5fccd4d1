"""Adapters that let Captum's metrics score layer-resolution maps.

:func:`input_space_attributions` and :func:`input_space_explanation` adapt a
layer-resolution method to Captum's :func:`captum.metrics.infidelity` and
:func:`captum.metrics.sensitivity_max`; :func:`noisy_perturbation` is a
perturbation for ``infidelity``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from captum_igcam.evaluation.metrics.resolution import spatial_size, to_input_size


def input_space_attributions(maps: Tensor, inputs: Tensor) -> Tensor:
    """Turn maps into attributions shaped like the inputs, for Captum metrics.

    The map is upsampled bilinearly to the input size and repeated over the
    channels, so every channel of a pixel gets the pixel's map value. Use it
    for the ``attributions`` argument of :func:`captum.metrics.infidelity`
    (with ``normalize=True``, as map scales differ between methods).

    Args:
        maps (Tensor): ``(N, 1, h, w)`` or ``(N, h, w)`` maps.
        inputs (Tensor): ``(N, C, H, W)`` inputs the maps explain.

    Returns:
        Tensor: Attributions with the shape, dtype and device of ``inputs``.

    Example::

        >>> attributions = input_space_attributions(maps, inputs)
        >>> infidelity(model, noisy_perturbation(0.1), inputs, attributions,
        ...            target=target, normalize=True)
    """
    upsampled = to_input_size(maps, spatial_size(inputs)).unsqueeze(1)
    # Contiguous: Captum's metrics ``view`` the attributions.
    expanded = upsampled.expand_as(inputs).contiguous()
    return expanded.to(dtype=inputs.dtype, device=inputs.device)


def input_space_explanation(
    explain: Callable[..., Tensor],
) -> Callable[..., tuple[Tensor]]:
    """Wrap a map-producing function as an explanation function for Captum.

    :func:`captum.metrics.sensitivity_max` calls its explanation function
    with the inputs as a tensor or as a 1-tuple, and iterates over what the
    *unperturbed* call returns: a bare tensor would be iterated over its batch
    rows, silently comparing the wrong maps (captum 0.8-0.9). The wrapper
    accepts both input forms and always returns a 1-tuple holding
    :func:`input_space_attributions` of the maps.

    Args:
        explain (Callable): ``explain(inputs, **kwargs) -> maps`` for a single
            input tensor, e.g. ``LayerGradCam(model, layer).attribute``.

    Returns:
        Callable: ``f(inputs, **kwargs) -> (attributions,)``.

    Example::

        >>> gradcam = LayerGradCam(model, layer)
        >>> sensitivity_max(input_space_explanation(gradcam.attribute),
        ...                 inputs, target=target)
    """

    def explanation(inputs: Tensor | tuple[Tensor], **kwargs: object) -> tuple[Tensor]:
        if isinstance(inputs, tuple):
            if len(inputs) != 1:
                raise ValueError(
                    f"inputs: expected one input tensor, got a tuple of {len(inputs)}"
                )
            (inputs,) = inputs
        return (input_space_attributions(explain(inputs, **kwargs), inputs),)

    return explanation


def noisy_perturbation(std: float) -> Callable[[Tensor], tuple[Tensor, Tensor]]:
    """Gaussian perturbation for :func:`captum.metrics.infidelity`.

    Args:
        std (float): Standard deviation of the noise, in model-input units.

    Returns:
        Callable: ``perturb(inputs) -> (noise, inputs - noise)``, Captum's
        ``(perturbations, perturbed_inputs)`` convention.

    Raises:
        ValueError: If ``std`` is not positive.
    """
    if not std > 0:
        raise ValueError(f"std: expected a positive number, got {std}")

    def perturb(inputs: Tensor) -> tuple[Tensor, Tensor]:
        noise = torch.randn_like(inputs) * std
        return noise, inputs - noise

    return perturb
