"""Helpers for layer attribution maps: upsampling, normalisation, overlays.

The maps are what ``LayerGradCam`` and ``IntegratedLayerGradCam`` return: a
tensor of shape ``(N, 1, h, w)`` at the explained layer's resolution.
Figures are built with :class:`matplotlib.figure.Figure` directly (no pyplot
state), so they render with the Agg backend on machines without a display.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


def upsample(maps: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """Resize layer maps to the input resolution with bilinear interpolation.

    Bilinear upsampling is what the Grad-CAM and Integrated Grad-CAM papers use
    to lay a map over the input image.

    Args:
        maps (torch.Tensor): Maps of shape ``(N, C, h, w)``, usually ``C = 1``.
        size (int or tuple[int, int]): Output ``(H, W)``, or one int for a
            square.

    Returns:
        torch.Tensor: Maps of shape ``(N, C, H, W)``, detached.

    Example::

        >>> attr = LayerGradCam(model, model.layer4).attribute(x, target=3)
        >>> upsample(attr, x.shape[-2:]).shape
        torch.Size([1, 1, 224, 224])
    """
    if maps.dim() != 4:
        raise ValueError(
            f"maps: expected a 4-D tensor (N, C, h, w), got shape {tuple(maps.shape)}"
        )
    if isinstance(size, int):
        size = (size, size)
    return F.interpolate(
        maps.detach().float(), size=tuple(size), mode="bilinear", align_corners=False
    )


def normalize(maps: torch.Tensor) -> torch.Tensor:
    """Min-max normalise each example's map to ``[0, 1]``.

    A map without contrast (all zeros, or any constant) becomes all zeros
    rather than dividing by zero.

    Args:
        maps (torch.Tensor): Tensor whose first dimension indexes examples,
            e.g. ``(N, 1, H, W)``.

    Returns:
        torch.Tensor: Same shape, values in ``[0, 1]``; each example's maximum
        is 1 unless its map is constant.

    Example::

        >>> normalize(torch.tensor([[1.0, 3.0], [2.0, 2.0]]))
        tensor([[0., 1.],
                [0., 0.]])
    """
    flat = maps.detach().float().reshape(maps.shape[0], -1)
    low = flat.min(dim=1, keepdim=True).values
    span = flat.max(dim=1, keepdim=True).values - low
    safe_span = torch.where(span > 0, span, torch.ones_like(span))
    scaled = torch.where(span > 0, (flat - low) / safe_span, torch.zeros_like(flat))
    return scaled.reshape(maps.shape)


def overlay_heatmap(
    ax: Axes,
    image: np.ndarray,
    heatmap: np.ndarray,
    title: str | None = None,
    alpha: float = 0.5,
    cmap: str = "jet",
) -> None:
    """Draw a heat map over an image on a matplotlib axis.

    Args:
        ax (matplotlib.axes.Axes): Where to draw.
        image (np.ndarray): ``HxWx3`` RGB image, uint8 or floats in [0, 1].
        heatmap (np.ndarray): ``HxW`` map with values in [0, 1] (see
            :func:`normalize`), at the image's resolution.
        title (str, optional): Axis title.
            Default: None
        alpha (float, optional): Opacity of the heat map.
            Default: 0.5
        cmap (str, optional): Matplotlib colour map of the heat map.
            Default: "jet"
    """
    if heatmap.shape != image.shape[:2]:
        raise ValueError(
            f"heatmap: expected shape {image.shape[:2]} (the image's height and "
            f"width), got {heatmap.shape}"
        )
    ax.imshow(image)
    ax.imshow(heatmap, cmap=cmap, alpha=alpha, vmin=0.0, vmax=1.0)
    ax.set_axis_off()
    if title is not None:
        ax.set_title(title, fontsize=9)


def explanation_figure(
    image: np.ndarray,
    panels: Sequence[tuple[str, np.ndarray]],
    image_title: str = "input",
    panel_size: float = 3.0,
    colorbar_label: str = "attribution / its maximum",
    cmap: str = "jet",
) -> Figure:
    """One row: the image, then one heat-map overlay per explanation, and a colour bar.

    Args:
        image (np.ndarray): ``HxWx3`` RGB image.
        panels (Sequence[tuple[str, np.ndarray]]): ``(title, heatmap)`` pairs;
            each heat map is ``HxW`` with values in [0, 1].
        image_title (str, optional): Title of the first panel.
            Default: "input"
        panel_size (float, optional): Width and height of a panel in inches.
            Default: 3.0
        colorbar_label (str, optional): Label of the colour bar, which maps
            the heat maps' colours to values in [0, 1]; shared by all panels.
            Default: "attribution / its maximum"
        cmap (str, optional): Matplotlib colour map of the heat maps.
            Default: "jet"

    Returns:
        matplotlib.figure.Figure: The figure (save it with
        :func:`captum_igcam.app.safe_files.atomic_save_figure` or ``savefig``).

    Example::

        >>> heat = normalize(upsample(attr, 224).clamp(min=0))[0, 0].numpy()
        >>> explanation_figure(photo, [("Grad-CAM", heat)]).savefig("cat.png")
    """
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    height = panel_size * image.shape[0] / image.shape[1] + 0.6  # room for titles
    width = panel_size * (1 + len(panels)) + (0.8 if panels else 0.0)  # colour bar
    figure = Figure(figsize=(width, height), layout="constrained")
    axes = figure.subplots(1, 1 + len(panels), squeeze=False)[0]
    axes[0].imshow(image)
    axes[0].set_axis_off()
    axes[0].set_title(image_title, fontsize=9)
    for ax, (title, heatmap) in zip(axes[1:], panels, strict=True):
        overlay_heatmap(ax, image, heatmap, title=title, cmap=cmap)
    if panels:
        scale = ScalarMappable(norm=Normalize(vmin=0.0, vmax=1.0), cmap=cmap)
        colorbar = figure.colorbar(scale, ax=list(axes[1:]), shrink=0.8)
        colorbar.set_label(colorbar_label, fontsize=8)
        colorbar.ax.tick_params(labelsize=7)
    return figure


def visualize_image_attr_safe(
    attr: np.ndarray,
    original_image: np.ndarray,
    method: str = "blended_heat_map",
    sign: str = "positive",
    **kwargs: Any,
) -> tuple[Figure, Axes]:
    """Call Captum's ``visualize_image_attr``, guarding against empty maps.

    Captum asserts when the part of the map selected by ``sign`` is all zeros
    (e.g. a Grad-CAM map with no positive evidence). Then this shows the
    original image alone, titled to say the map is empty.

    Args:
        attr (np.ndarray): ``HxW`` or ``HxWxC`` map at the image's resolution
            (see :func:`upsample`); channels are summed, as Captum does.
        original_image (np.ndarray): ``HxWx3`` image.
        method (str, optional): Captum visualisation method.
            Default: "blended_heat_map"
        sign (str, optional): ``"positive"``, ``"negative"``,
            ``"absolute_value"`` or ``"all"``, as in Captum.
            Default: "positive"
        **kwargs: Passed on to ``visualize_image_attr`` (``title``,
            ``plt_fig_axis``, ...). ``use_pyplot`` defaults to ``False``.

    Returns:
        tuple[Figure, Axes]: What ``visualize_image_attr`` returns.

    Example::

        >>> heat = upsample(attr, 224)[0].permute(1, 2, 0).numpy()
        >>> fig, ax = visualize_image_attr_safe(heat, photo_224)
    """
    from captum.attr import visualization

    # Captum before 0.9 takes only HxWxC maps; a channel axis suits every version.
    attr = attr if attr.ndim == 3 else attr[..., np.newaxis]
    summed = attr.sum(axis=2)  # as Captum does
    kwargs.setdefault("use_pyplot", False)
    selected = {
        "positive": np.maximum(summed, 0),
        "negative": np.minimum(summed, 0),
        "absolute_value": np.abs(summed),
        "all": summed,
    }
    if sign not in selected:
        raise ValueError(
            "sign: expected 'positive', 'negative', 'absolute_value' or 'all', "
            f"got {sign!r}"
        )
    if not np.any(selected[sign]):
        kwargs["title"] = f"{kwargs.get('title') or ''} (empty {sign} map)".strip()
        # Captum normalises the map even for "original_image", which does not
        # draw it; a stand-in map of ones keeps that step from asserting.
        return visualization.visualize_image_attr(
            np.ones_like(attr), original_image, method="original_image", **kwargs
        )
    return visualization.visualize_image_attr(
        attr, original_image, method=method, sign=sign, **kwargs
    )


def visualize_image_attr_multiple_safe(
    attr: np.ndarray,
    original_image: np.ndarray,
    methods: Sequence[str],
    signs: Sequence[str],
    titles: Sequence[str] | None = None,
    fig_size: tuple[float, float] = (8, 6),
    **kwargs: Any,
) -> tuple[Figure, np.ndarray]:
    """Captum's ``visualize_image_attr_multiple``, guarding every panel.

    Integrated Grad-CAM maps (and Grad-CAM maps with ``relu_attributions``)
    are non-negative, so the ``"negative"`` panel of the layouts in Captum's
    tutorials (e.g. methods ``["original_image", "blended_heat_map",
    "blended_heat_map"]`` with signs ``["all", "positive", "negative"]``) has
    nothing to draw and Captum's ``visualize_image_attr_multiple`` stops with
    an ``AssertionError`` for the whole figure. Here each panel is drawn by
    :func:`visualize_image_attr_safe`: a panel whose sign selects nothing shows
    the original image, titled "(empty <sign> map)", and the other panels
    are drawn as Captum draws them.

    Args:
        attr (np.ndarray): ``HxW`` or ``HxWxC`` map at the image's resolution.
        original_image (np.ndarray): ``HxWx3`` image.
        methods (sequence of str): Captum visualisation method per panel.
        signs (sequence of str): Sign per panel (``"positive"``,
            ``"negative"``, ``"absolute_value"`` or ``"all"``).
        titles (sequence of str, optional): Title per panel.
            Default: None
        fig_size (tuple[float, float], optional): Figure size in inches.
            Default: (8, 6)
        **kwargs: Passed on to ``visualize_image_attr`` for every panel
            (``cmap``, ``alpha_overlay``, ``show_colorbar``, ...).

    Returns:
        tuple[Figure, np.ndarray]: The figure (no pyplot state) and its axes,
        one per panel, as ``visualize_image_attr_multiple`` returns them.

    Raises:
        ValueError: If ``signs`` or ``titles`` do not have one entry per
            method.

    Example::

        >>> heat = upsample(igcam_map, 224)[0].permute(1, 2, 0).numpy()
        >>> fig, axes = visualize_image_attr_multiple_safe(
        ...     heat, photo_224,
        ...     ["original_image", "blended_heat_map", "blended_heat_map"],
        ...     ["all", "positive", "negative"],
        ... )
        >>> axes[2].get_title()
        '(empty negative map)'
    """
    from matplotlib.figure import Figure

    for name, values in (("signs", signs), ("titles", titles)):
        if values is not None and len(values) != len(methods):
            raise ValueError(
                f"{name}: expected one entry per method ({len(methods)}), "
                f"got {len(values)}"
            )
    figure = Figure(figsize=fig_size)
    axes = figure.subplots(1, len(methods), squeeze=False)[0]
    for index, (method, sign, axis) in enumerate(zip(methods, signs, axes)):
        visualize_image_attr_safe(
            attr,
            original_image,
            method=method,
            sign=sign,
            plt_fig_axis=(figure, axis),
            title=titles[index] if titles is not None else None,
            **kwargs,
        )
    figure.tight_layout()
    return figure, axes
