"""Explain a few photos: what ``captum-igcam explain`` writes, as functions.

The heavy modules (torch, the method registry) are imported inside the
functions, so that the command line can import this one for ``--help``.

For every photo, :func:`explain_images` writes into the output folder

- ``<name>.png``: the photo, then one overlay per method, with a colour bar;
- ``<name>_<method>_layer.npy``: the raw map at the layer's resolution;
- ``<name>_<method>_upsampled.npy``: the raw map upsampled bilinearly to the
  photo's size (unless ``upsampled_maps=False``);

and one ``summary.json`` for the whole run, which records for every photo
the SHA-256 of the file's bytes the maps were computed from.

The run only ever creates new files: every file is written atomically under
a name that nothing in the folder has (an exclusive create, see
:func:`captum_igcam.app.safe_files.atomic_open`). When
a name is taken (by the photo itself with ``--out`` its own folder, by an
earlier run, by anything), the photo's files get the next free name
(``<name>-2.png``, ...) and the summary ``summary-2.json``, and a note on
stderr says so; the summary lists every file the run wrote.
"""

from __future__ import annotations

import functools
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from captum_igcam.app import images
from captum_igcam.app.settings import MethodSettings
from captum_igcam.app.task_settings import TaskTarget

if TYPE_CHECKING:
    from torch import nn

    from captum_igcam.app.methods import MapFunction
    from captum_igcam.app.models import ModelBundle

DEFAULT_METHODS = ("gradcam", "igcam")

#: ``(label, loader)``: the loader reads the image file
#: (:func:`~captum_igcam.app.images.read_image`).
ImageSource = tuple[str, Callable[[], images.ImageFile]]


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
        bundled = images.bundled_image_files()
        return [
            (f"skimage:{name}", functools.partial(images.read_image, path))
            for name, path in bundled.items()
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
            sources.append((path, functools.partial(images.read_image, path)))
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

    A photo that cannot be read, or on which there is nothing to explain (no
    pixel of the class, not the detection asked for, a box outside it), is
    reported on stderr by name, listed in the summary's ``errors``, and
    skipped; the others are explained. A progress bar counts the maps on
    stderr, and the summary is strict JSON (a non-finite number is
    ``null``). An error that stops the run (or an interrupt) is raised after
    the summary is written: it lists the image being explained under
    ``errors`` with the files it left, so that every file of the run is
    listed.

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
            (:mod:`captum_igcam.app.tasks`); refused for a classifier.
            Default: None (``TaskTarget()``)

    Returns:
        dict[str, Any]: The summary, as written to ``out/summary.json`` (or,
        when that name is taken, to the file its ``"summary"`` entry names).

    Raises:
        SettingValueError: ``task_target`` does not fit the model's task.

    Example::

        >>> settings = MethodSettings(n_steps=16)
        >>> sources, errors = image_sources(["cat.jpg"])
        >>> summary = explain_images(settings.load_model(), sources, "out", settings)
        >>> summary["images"][0]["predicted_label"]
        'Egyptian cat'
    """
    from tqdm import tqdm

    from captum_igcam.app import map_files, safe_files
    from captum_igcam.app.tasks import NothingToExplainError

    started = time.perf_counter()
    settings = (settings or MethodSettings()).for_model(bundle)
    task_target = task_target or TaskTarget()
    task_target.check_task(bundle.task)
    folder = Path(out)
    explainers = _explainers(bundle, settings, methods)
    records, failed = [], list(errors)
    stems: set[str] = set()
    suffixes = map_files.map_suffixes(methods, upsampled_maps)
    current: tuple[str, str] | None = None  # (label, stem) being explained
    try:
        with tqdm(
            total=len(sources) * len(methods), desc="explaining", unit="map"
        ) as progress:
            for label, loader in sources:
                progress.set_postfix_str(_base_stem(label), refresh=True)
                try:
                    photo = loader()
                except images.ImageLoadError as error:
                    progress.write(f"captum-igcam: error: {error}", file=sys.stderr)
                    failed.append({"image": label, "error": str(error)})
                    progress.update(len(methods))
                    continue
                stem = _free_stem(folder, label, suffixes, stems)
                wanted = _base_stem(label)
                if stem != wanted:
                    progress.write(
                        f"captum-igcam: note: names {wanted}.png and {wanted}_*.npy "
                        f"are taken in {str(folder)!r}; the files of {label!r} are "
                        f"named {stem}* instead (existing files are left as they are)",
                        file=sys.stderr,
                    )
                current = (label, stem)
                try:
                    record = explain_photo(
                        bundle,
                        settings,
                        explainers,
                        photo,
                        folder,
                        stem,
                        target=target,
                        task_target=task_target,
                        upsampled_maps=upsampled_maps,
                        on_map=lambda: progress.update(1),
                    )
                except NothingToExplainError as error:
                    message = f"{label}: nothing to explain: {error}"
                    progress.write(f"captum-igcam: error: {message}", file=sys.stderr)
                    failed.append({"image": label, "error": str(error)})
                    progress.update(len(methods))
                else:
                    records.append({"image": label, **record})
                    if len(records) == 1:
                        _note_constant_gradient(
                            bundle, methods, photo, record, progress
                        )
                current = None
    except BaseException as error:
        if current is not None:  # record what the stopped photo left
            label, stem = current
            failed.append(
                {
                    "image": label,
                    "error": f"the run stopped on this image: {error!r}",
                    "files": [
                        f"{stem}{suffix}"
                        for suffix in suffixes
                        if os.path.lexists(folder / f"{stem}{suffix}")
                    ],
                }
            )
        raise
    finally:
        summary = _summary(bundle, settings, task_target, methods, records, failed)
        summary["seconds"] = round(time.perf_counter() - started, 3)
        summary_name = _free_stem(folder, "summary", (".json",), set()) + ".json"
        summary["summary"] = summary_name
        safe_files.atomic_write_json(folder / summary_name, summary)
    return summary


def _summary(
    bundle: ModelBundle,
    settings: MethodSettings,
    task_target: TaskTarget,
    methods: Sequence[str],
    records: list[dict[str, Any]],
    failed: list[dict[str, Any]],
) -> dict[str, Any]:
    """``summary.json`` without its timing and name."""
    classifier = bundle.task == "classification"
    return {
        "model": bundle.name,
        "task": bundle.task,
        "task_target": None if classifier else task_target.describe(),
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
    }


def _explainers(
    bundle: ModelBundle, settings: MethodSettings, methods: Sequence[str]
) -> Callable[[nn.Module], dict[str, MapFunction]]:
    """``methods`` built for a forward function, reused while it stays the
    same (a classifier's model serves every photo; a region or box bound to
    a task model is new for each)."""
    from captum_igcam.app.methods import METHODS

    layer = bundle.layer()

    @functools.lru_cache(maxsize=1)
    def build(forward: nn.Module) -> dict[str, MapFunction]:
        return {name: METHODS[name].build(forward, layer, settings) for name in methods}

    return build


def explain_photo(
    bundle: ModelBundle,
    settings: MethodSettings,
    explainers: Callable[[nn.Module], dict[str, MapFunction]],
    photo: images.ImageFile,
    folder: Path,
    stem: str,
    *,
    target: int | None = None,
    task_target: TaskTarget | None = None,
    upsampled_maps: bool = True,
    on_map: Callable[[], object] = lambda: None,
) -> dict[str, Any]:
    """One photo's figure, maps and summary record, for a model of any task.

    The one per-photo pipeline of ``explain``: :func:`~captum_igcam.app.tasks.prepare`
    gives what to explain (the model and a class, or the model with a region
    or box bound), each method maps it, :mod:`~captum_igcam.app.map_files`
    writes the maps and the figure (the region or box outlined on every
    panel).

    Args:
        bundle (ModelBundle): The model.
        settings (MethodSettings): Its settings (:meth:`MethodSettings.for_model`).
        explainers (Callable): ``explainers(forward)`` gives the methods, by
            name, built for ``forward``.
        photo (ImageFile): The photo and the digest of its file
            (:func:`~captum_igcam.app.images.read_image`).
        folder (Path): The output folder.
        stem (str): The photo's name in the folder.
        target (int, optional): Class; None for the prediction.
            Default: None
        task_target (TaskTarget, optional): Region or box options.
            Default: None (``TaskTarget()``)
        upsampled_maps (bool, optional): Also save the upsampled maps.
            Default: True
        on_map (Callable, optional): Called after each method's map.
            Default: does nothing

    Returns:
        dict[str, Any]: The record: ``name``, ``sha256``, what was explained
        and ``files``.

    Raises:
        NothingToExplainError: Before any file is written.
    """
    from captum_igcam.app import map_files, maps
    from captum_igcam.app.baselines import baseline_input
    from captum_igcam.app.methods import METHODS
    from captum_igcam.app.tasks import draw, prepare

    array = np.asarray(photo.image)
    size = array.shape[:2]
    inputs = bundle.preprocess(array).unsqueeze(0)
    prepared = prepare(bundle, inputs, size, target, task_target)
    baseline = baseline_input(bundle, array, settings.baseline)
    files, panels = [f"{stem}.png"], []
    for name, explain_maps in explainers(prepared.forward).items():
        layer_map = explain_maps(inputs, prepared.target, baseline)
        names, heat = map_files.save_maps(
            folder, stem, name, layer_map.detach().float().cpu(), size, upsampled_maps
        )
        files.extend(names)
        panels.append((f"{METHODS[name].title}\n{prepared.caption}", heat))
        on_map()
    weights_note = "\n(random weights)" if settings.random_weights else ""
    figure = maps.explanation_figure(
        array, panels, image_title=f"{stem}\n{prepared.title}{weights_note}"
    )
    draw(figure, prepared, len(panels))
    map_files.save_figure(figure, folder, stem)
    return {"name": stem, "sha256": photo.sha256, **prepared.record, "files": files}


def _note_constant_gradient(
    bundle: ModelBundle,
    methods: Sequence[str],
    photo: images.ImageFile,
    record: dict[str, Any],
    progress: Any,
) -> None:
    """Say once, on the first photo, when the layer makes a classifier's
    Integrated Grad-CAM equal to path-averaged CAM (a note: nothing is wrong)."""
    from captum_igcam.app.layer_gradient import constant_gradient_note

    if bundle.task != "classification" or not any(
        name.startswith("igcam") for name in methods
    ):
        return
    inputs = bundle.preprocess(np.asarray(photo.image)).unsqueeze(0)
    note = constant_gradient_note(
        bundle.model,
        bundle.layer(),
        bundle.layer_name,
        inputs,
        record["target_index"],
        bundle.reshape_transform,
    )
    if note is not None:
        progress.write(f"captum-igcam: note: {note}", file=sys.stderr)


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
