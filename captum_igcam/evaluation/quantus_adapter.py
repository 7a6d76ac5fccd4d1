"""Quantus metrics on the registry's methods: an ``explain_func`` adapter.

`Quantus <https://github.com/understandable-machine-intelligence-lab/Quantus>`_
evaluates an explanation method through a function it calls as
``explain_func(model=model, inputs=x_batch, targets=y_batch,
**explain_func_kwargs)`` with numpy arrays, and expects one attribution per
input back as a numpy array it can lay over the input: here
``(N, 1, H, W)`` at the input's resolution. :func:`explain` is that function
for every method of :data:`captum_igcam.app.methods.METHODS` (Grad-CAM,
Integrated Grad-CAM and its variants, Layer IG, IG): layer-resolution maps
are upsampled bilinearly, as :mod:`captum_igcam.evaluation.metrics` does.

The layer is given by its dotted name and looked up on the model Quantus
passes, so metrics that explain a changed copy of the model (e.g. Quantus's
randomisation tests) explain the copy's layer. How Quantus's pointing game
and relevance mass accuracy relate to this package's metrics is in
``docs/quantus.md``.

Example::

    >>> import quantus
    >>> from captum_igcam.evaluation.quantus_adapter import explain
    >>> metric = quantus.RelevanceMassAccuracy(disable_warnings=True)
    >>> scores = metric(
    ...     model=bundle.model, x_batch=x, y_batch=y, s_batch=masks,
    ...     explain_func=explain,
    ...     explain_func_kwargs={"method": "igcam", "layer": bundle.layer_name},
    ... )
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from captum_igcam.app.methods import METHODS, MethodSettings
from captum_igcam.app.models import resolve_layer
from captum_igcam.evaluation.metrics import to_input_size


def explain(
    model: nn.Module,
    inputs: np.ndarray | torch.Tensor,
    targets: np.ndarray | torch.Tensor | int,
    *,
    method: str = "igcam",
    layer: str,
    settings: MethodSettings | None = None,
    baselines: float | torch.Tensor | None = None,
    device: str | torch.device | None = None,
) -> np.ndarray:
    """Attribution maps of a registry method, in Quantus's array layout.

    Args:
        model (nn.Module): The classifier Quantus evaluates, in eval mode.
        inputs (np.ndarray or Tensor): ``(N, C, H, W)`` model inputs.
        targets (np.ndarray, Tensor or int): ``(N,)`` classes to explain, or
            one class for all inputs.
        method (str, optional): A key of
            :data:`captum_igcam.app.methods.METHODS`.
            Default: "igcam"
        layer (str): Dotted name of the layer to explain, as listed by
            ``model.named_modules()`` (input-space methods such as ``"ig"``
            ignore it but it must exist).
        settings (MethodSettings, optional): ``n_steps``, the quadrature rule
            and ``internal_batch_size`` of the path methods.
            Default: None (``MethodSettings()``)
        baselines (float or Tensor, optional): Start of the path, in model
            input space, as in Captum.
            Default: None (zeros)
        device (str or torch.device, optional): Where to run; Quantus passes
            its ``device`` argument here.
            Default: None (the model's device)

    Returns:
        np.ndarray: ``(N, 1, H, W)`` float32 maps at the input's resolution.

    Raises:
        ValueError: If ``method`` is not registered, ``layer`` is not in the
            model, or ``inputs`` is not ``(N, C, H, W)``.
    """
    if method not in METHODS:
        raise ValueError(
            f"method: expected one of {', '.join(sorted(METHODS))}, got {method!r}"
        )
    explained_layer = resolve_layer(model, layer)
    if device is None:
        device = next(model.parameters(), torch.empty(0)).device
    batch = torch.as_tensor(inputs, dtype=torch.float32, device=device)
    if batch.dim() != 4:
        raise ValueError(
            f"inputs: expected an (N, C, H, W) array, got shape {tuple(batch.shape)}"
        )
    target = torch.as_tensor(targets, dtype=torch.long, device=device).reshape(-1)
    maps_of = METHODS[method].build(
        model, explained_layer, settings or MethodSettings()
    )
    attributions = maps_of(batch, target.expand(len(batch)), baselines)
    upsampled = to_input_size(attributions, tuple(batch.shape[-2:]))
    return upsampled.unsqueeze(1).cpu().numpy()
