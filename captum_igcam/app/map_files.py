"""Writing one photo's maps and figure: what ``captum-igcam explain`` saves.

For a photo saved under the name ``stem``, :func:`save_maps` writes one
method's maps as ``<stem>_<method>_layer.npy`` (the raw map at the layer's
resolution) and ``<stem>_<method>_upsampled.npy`` (upsampled bilinearly to
the photo's size), and :func:`save_figure` the figure as ``<stem>.png``.
Every file is an exclusive create (:mod:`captum_igcam.app.safe_files`): a
name that is taken is never replaced.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from captum_igcam.app import maps, safe_files

if TYPE_CHECKING:
    import torch
    from matplotlib.figure import Figure

#: Resolution of the saved figures, in dots per inch.
FIGURE_DPI = 90


def map_suffixes(methods: Sequence[str], upsampled: bool) -> tuple[str, ...]:
    """What follows a photo's ``stem`` in the names of the files it gets.

    Args:
        methods (Sequence[str]): The methods' names.
        upsampled (bool): Whether the upsampled maps are saved.

    Returns:
        tuple[str, ...]: ``".png"``, then ``_<method>_<kind>.npy`` per map.

    Example::

        >>> map_suffixes(["gradcam"], upsampled=False)
        ('.png', '_gradcam_layer.npy')
    """
    kinds = ("layer", "upsampled") if upsampled else ("layer",)
    return (".png", *(f"_{m}_{kind}.npy" for m in methods for kind in kinds))


def save_maps(
    folder: Path,
    stem: str,
    method: str,
    layer_map: torch.Tensor,
    size: tuple[int, int],
    upsampled: bool = True,
) -> tuple[list[str], np.ndarray]:
    """Save one method's raw map of a photo; return the names and the overlay.

    Args:
        folder (Path): The output folder.
        stem (str): The photo's name in the folder.
        method (str): The method's name.
        layer_map (torch.Tensor): The ``(1, 1, h, w)`` map, on the CPU.
        size (tuple[int, int]): The photo's ``(H, W)``.
        upsampled (bool, optional): Also save the map upsampled to ``size``.
            Default: True

    Returns:
        tuple[list[str], np.ndarray]: The names of the files written, and the
        ``H x W`` overlay: the upsampled map's positive part scaled to
        ``[0, 1]`` (:func:`~captum_igcam.app.maps.normalize`).

    Example::

        >>> names, heat = save_maps(Path("out"), "cat", "igcam", layer_map, (300, 451))
        >>> names
        ['cat_igcam_layer.npy', 'cat_igcam_upsampled.npy']
    """
    full_map = maps.upsample(layer_map, size)
    saved = [("layer", layer_map)] + ([("upsampled", full_map)] if upsampled else [])
    names = []
    for kind, array in saved:
        path = folder / f"{stem}_{method}_{kind}.npy"
        safe_files.atomic_save_npy(path, array[0, 0].numpy())
        names.append(path.name)
    return names, maps.normalize(full_map.clamp(min=0))[0, 0].numpy()


def save_figure(figure: Figure, folder: Path, stem: str) -> str:
    """Save a photo's figure as ``<stem>.png`` at :data:`FIGURE_DPI`.

    Args:
        figure (matplotlib.figure.Figure): The figure.
        folder (Path): The output folder.
        stem (str): The photo's name in the folder.

    Returns:
        str: The file's name.
    """
    path = folder / f"{stem}.png"
    safe_files.atomic_save_figure(figure, path, dpi=FIGURE_DPI)
    return path.name
