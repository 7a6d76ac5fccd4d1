"""Explain a few photos: what ``captum-igcam explain`` writes, as functions.

For every photo, :func:`explain_images` writes into the output folder

- ``<name>.png``: the photo, then one overlay per method, with a colour bar;
- ``<name>_<method>_layer.npy``: the raw map at the layer's resolution;
- ``<name>_<method>_upsampled.npy``: the raw map upsampled bilinearly to the
  photo's size (unless ``upsampled_maps=False``);

and one ``summary.json`` for the whole run.

The run only ever creates new files: every file is written atomically under
a name that nothing in the folder has (an exclusive create, see
:func:`captum_igcam.app._atomic.atomic_open`). When
a name is taken (by the photo itself with ``--out`` its own folder, by an
earlier run, by anything), the photo's files get the next free name
(``<name>-2.png``, ...) and the summary ``summary-2.json``, and a note on
stderr says so; the summary lists every file the run wrote.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from captum_igcam.app import images
from captum_igcam.app.settings import MethodSettings

if TYPE_CHECKING:
    import torch

    from captum_igcam.app.methods import MapFunction
    from captum_igcam.app.models import ModelBundle
    from captum_igcam.app.task_settings import TaskTarget

DEFAULT_METHODS = ("gradcam", "igcam")
FIGURE_DPI = 90

#: ``(label, loader)``: the loader returns an ``HxWx3`` uint8 RGB array.
ImageSource = tuple[str, Callable[[], np.ndarray]]


def image_sources(
    paths: Sequence[str],
) -> tuple[list[ImageSource], list[dict[str, str]]]:
    """Sources for image files (or the bundled photos), and the paths refused.

    Paths that do not exist or are folders are refused here, without reading
    any image, so a caller can report them before it loads a model.

    Args:
        paths (Sequence[str]): Image files; empty for the photos bundled with
            scikit-image (:func:`~captum_igcam.app.images.bundled_images`).

    Returns:
        tuple: ``(sources, errors)``; each error is
        ``{"image": path, "error": message}``, the message naming the path.

    Example::

        >>> sources, errors = image_sources(["cat.jpg", "nothing.png"])
        >>> errors[0]["error"]
        "image 'nothing.png' does not exist"
    """
    if not paths:
        bundled = images.bundled_images()
        return [
            (f"skimage:{name}", lambda array=array: array)
            for name, array in bundled.items()
        ], []
    sources, errors = [], []
    for path in paths:
        if Path(path).is_dir():
            message = (
                f"image {path!r} is a directory; explain takes image files "
                f"(for a folder use: captum-igcam explain-dataset {path} --out DIR)"
            )
        elif not Path(path).is_file():
            message = f"image {path!r} does not exist"
        else:
            sources.append(
                (path, lambda path=path: np.asarray(images.load_image(path)))
            )
            continue
        errors.append({"image": path, "error": message})
    return sources, errors


def explain_images(
    bundle: ModelBundle,
    sources: Sequence[ImageSource],
    out: str | os.PathLike[str],
    settings: MethodSettings | None = None,
    methods: Sequence[str] = DEFAULT_METHODS,
    target: int | None = None,
    upsampled_maps: bool = True,
    errors: Sequence[dict[str, str]] = (),
    task_target: TaskTarget | None = None,
) -> dict[str, Any]:
    """Explain each photo with each method; write figures, maps and a summary.

    A photo that cannot be read is reported on stderr by name, listed in the
    summary's ``errors``, and skipped; the others are explained.

    Args:
        bundle (ModelBundle): The model, e.g. from
            :meth:`MethodSettings.load_model`.
        sources (Sequence[ImageSource]): From :func:`image_sources`.
        out (str or os.PathLike): Existing output folder.
        settings (MethodSettings, optional): Steps, approximation method,
            internal batch size and baseline; ``model``, ``weights`` and
            ``random_weights`` are recorded in the summary.
            Default: None (``MethodSettings()``)
        methods (Sequence[str], optional): Names in
            :data:`~captum_igcam.app.methods.METHODS`, shown left to right.
            Default: :data:`DEFAULT_METHODS`
        target (int, optional): Class to explain; ``None`` for each photo's
            prediction.
            Default: None
        upsampled_maps (bool, optional): Also save the maps upsampled to the
            photo's size.
            Default: True
        errors (Sequence[dict[str, str]], optional): Errors found before (by
            :func:`image_sources`), listed first in the summary.
            Default: ()
        task_target (TaskTarget, optional): For a segmentation model or a
            detector, the region or box to explain
            (:mod:`captum_igcam.app.tasks`).
            Default: None (``TaskTarget()``)

    Returns:
        dict[str, Any]: The summary, as written to ``out/summary.json`` (or,
        when that name is taken, to the file its ``"summary"`` entry names).

    Example::

        >>> settings = MethodSettings(n_steps=16)
        >>> sources, errors = image_sources(["cat.jpg"])
        >>> summary = explain_images(settings.load_model(), sources, "out", settings)
        >>> summary["images"][0]["predicted_label"]
        'Egyptian cat'
    """
    from tqdm import tqdm

    from captum_igcam.app import _atomic
    from captum_igcam.app.methods import METHODS

    started = time.perf_counter()
    settings = (settings or MethodSettings()).for_model(bundle)
    if bundle.task != "classification" and task_target is None:
        from captum_igcam.app.task_settings import TaskTarget

        task_target = TaskTarget()
    folder = Path(out)
    layer = bundle.layer()
    explainers = {
        name: METHODS[name].build(bundle.model, layer, settings) for name in methods
    }
    records, failed = [], list(errors)
    stems: set[str] = set()
    suffixes = _file_suffixes(methods, upsampled_maps)
    for label, loader in tqdm(
        sources, desc="explaining", unit="image", disable=len(sources) <= 1
    ):
        try:
            photo = loader()
        except images.ImageLoadError as error:
            tqdm.write(f"captum-igcam: error: {error}", file=sys.stderr)
            failed.append({"image": label, "error": str(error)})
            continue
        stem = _free_stem(folder, label, suffixes, stems)
        wanted = _base_stem(label)
        if stem != wanted:
            tqdm.write(
                f"captum-igcam: note: names {wanted}.png and {wanted}_*.npy are "
                f"taken in {str(folder)!r}; the files of {label!r} are named "
                f"{stem}* instead (existing files are left as they are)",
                file=sys.stderr,
            )
        if bundle.task != "classification":
            from captum_igcam.app import tasks

            try:
                records.append(
                    tasks.explain_photo(
                        folder,
                        settings,
                        bundle,
                        methods,
                        target,
                        task_target,
                        label,
                        stem,
                        photo,
                        upsampled_maps,
                    )
                )
            except tasks.NothingToExplainError as error:
                tqdm.write(f"captum-igcam: error: {label}: {error}", file=sys.stderr)
                failed.append({"image": label, "error": str(error)})
            continue
        records.append(
            _explain_photo(
                folder,
                settings,
                bundle,
                explainers,
                target,
                label,
                stem,
                photo,
                upsampled_maps,
            )
        )
    summary = {
        "model": bundle.name,
        "task": bundle.task,
        "task_target": task_target and task_target.describe(),
        "random_weights": settings.random_weights,
        "weights": settings.weights,
        "layer": bundle.layer_name,
        "methods": list(methods),
        "steps": settings.n_steps,
        "approximation_method": settings.method,
        "baseline": settings.baseline,
        "batch_size": settings.internal_batch_size,
        "memory_budget_mb": settings.memory_budget_mb,
        "device": settings.device,
        "images": records,
        "errors": failed,
        "seconds": round(time.perf_counter() - started, 3),
    }
    summary_name = _free_stem(folder, "summary", (".json",), set()) + ".json"
    summary["summary"] = summary_name
    _atomic.atomic_write_json(folder / summary_name, summary)
    return summary


def _file_suffixes(methods: Sequence[str], upsampled: bool) -> tuple[str, ...]:
    """What follows a photo's name in the names of its files."""
    kinds = ("layer", "upsampled") if upsampled else ("layer",)
    return (".png", *(f"_{m}_{kind}.npy" for m in methods for kind in kinds))


def _base_stem(label: str) -> str:
    return Path(label.removeprefix("skimage:")).stem or "image"


def _free_stem(
    folder: Path, label: str, suffixes: Sequence[str], taken: set[str]
) -> str:
    """The first of ``name``, ``name-2``, ... that names none of the files
    in ``folder`` (in any form, a dangling link too) nor one in ``taken``."""
    base = _base_stem(label)
    stem, number = base, 2
    while stem in taken or any(
        os.path.lexists(folder / f"{stem}{suffix}") for suffix in suffixes
    ):
        stem, number = f"{base}-{number}", number + 1
    taken.add(stem)
    return stem


def _save_maps(
    folder: Path,
    stem: str,
    method: str,
    layer_map: torch.Tensor,
    size: tuple[int, ...],
    upsampled: bool,
) -> tuple[list[str], np.ndarray]:
    """Save one method's raw maps; return the file names and the overlay map."""
    from captum_igcam.app import _atomic, maps

    full_map = maps.upsample(layer_map, size)
    saved = [("layer", layer_map)] + ([("upsampled", full_map)] if upsampled else [])
    names = []
    for kind, array in saved:
        path = folder / f"{stem}_{method}_{kind}.npy"
        _atomic.atomic_save_npy(path, array[0, 0].numpy())
        names.append(path.name)
    return names, maps.normalize(full_map.clamp(min=0))[0, 0].numpy()


def _explain_photo(
    folder: Path,
    settings: MethodSettings,
    bundle: ModelBundle,
    explainers: dict[str, MapFunction],
    target: int | None,
    label: str,
    stem: str,
    photo: np.ndarray,
    upsampled_maps: bool,
) -> dict[str, Any]:
    import torch

    from captum_igcam.app import _atomic, maps
    from captum_igcam.app.baselines import baseline_input
    from captum_igcam.app.methods import METHODS

    inputs = bundle.preprocess(photo).unsqueeze(0)
    with torch.no_grad():
        probabilities = bundle.model(inputs).softmax(dim=1)[0].cpu()
    predicted = int(probabilities.argmax())
    explained = predicted if target is None else target
    baseline = baseline_input(bundle, photo, settings.baseline)
    figure_path = folder / f"{stem}.png"
    files, panels = [figure_path.name], []
    caption = f"{bundle.categories[explained]} {float(probabilities[explained]):.2f}"
    for name, explain_maps in explainers.items():
        layer_map = explain_maps(inputs, explained, baseline).detach().float().cpu()
        names, heat = _save_maps(
            folder, stem, name, layer_map, photo.shape[:2], upsampled_maps
        )
        files.extend(names)
        panels.append((f"{METHODS[name].title}\n{caption}", heat))
    weights_note = "\n(random weights)" if settings.random_weights else ""
    figure = maps.explanation_figure(
        photo,
        panels,
        image_title=f"{stem}\npredicted: {bundle.categories[predicted]} "
        f"{float(probabilities[predicted]):.2f}{weights_note}",
    )
    _atomic.atomic_save_figure(figure, figure_path, dpi=FIGURE_DPI)
    return {
        "image": label,
        "name": stem,
        "predicted_index": predicted,
        "predicted_label": bundle.categories[predicted],
        "probability": round(float(probabilities[predicted]), 6),
        "target_index": explained,
        "target_label": bundle.categories[explained],
        "target_probability": round(float(probabilities[explained]), 6),
        "files": files,
    }
