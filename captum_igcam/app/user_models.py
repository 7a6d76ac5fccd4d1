"""A user's own model: ``package.module:callable`` or a ``torch.save`` file.

.. warning::
    Both loaders run code: importing a module runs it, and a whole pickled
    module is read with ``torch.load(weights_only=False)``, which can execute
    anything the file contains. :func:`captum_igcam.app.models.load_model`
    reaches them only for names that are not registered models.
"""

from __future__ import annotations

import importlib
import os
import re
import warnings
from pathlib import Path

import torch
from torch import nn

from captum_igcam.app.devices import device_of
from captum_igcam.app.model_bundle import (
    DEFAULT_INPUT_SIZE,
    IMAGENET_MEAN,
    IMAGENET_STD,
    ModelBundle,
)

#: ``package.module:callable`` (dotted names on both sides).
CALLABLE_SPEC = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*")
#: Suffixes that make a name a model file even where it also reads as
#: ``module:callable`` (``best:v2.pt``).
MODEL_FILE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".bin", ".ckpt", ".tar")


def is_model_file_name(name: str) -> bool:
    """Whether ``name`` is surely a file: a path separator or a model-file suffix."""
    separators = {os.sep, "/"} | ({os.altsep} if os.altsep else set())
    return any(separator in name for separator in separators) or (
        Path(name).suffix.lower() in MODEL_FILE_SUFFIXES
    )


def is_path_like(name: str) -> bool:
    """Whether ``name`` can only be a file: a path separator or any suffix."""
    return is_model_file_name(name) or bool(Path(name).suffix)


def load_callable(spec: str, task: str) -> ModelBundle:
    """Import ``package.module`` and call ``callable`` (runs the user's code)."""
    module_name, _, attribute = spec.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as error:
        raise ValueError(
            f"model: cannot import {spec!r} as 'module:callable' ({error})"
        ) from error
    built = factory()
    if isinstance(built, ModelBundle):
        return built
    return bundle_for_user_model(spec, built, task)


def load_file(path: str, task: str) -> ModelBundle:
    """Unpickle a whole module saved with ``torch.save`` (runs the file's code)."""
    if not os.path.isfile(path):
        raise ValueError(
            f"model: tried {path!r} as a model file (it has a suffix or a path "
            "separator) but there is no such file"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.jit.load is deprecated
            torch.jit.load(path, map_location="cpu")
    except RuntimeError:
        pass  # not TorchScript: load it as a pickled module below
    else:
        raise ValueError(
            f"model: {path!r} is a TorchScript module, whose layers cannot "
            "be hooked as Captum's layer methods need; save the eager module "
            "with torch.save(model, path) or give 'module:callable'"
        )
    try:
        # A whole pickled module cannot be loaded with weights_only=True; the
        # user names their own file, as with any torch.load of a model.
        model = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:
        raise ValueError(
            f"model: cannot load {path!r} as a torch.save file "
            f"({' '.join(str(error).split())})"
        ) from error
    return bundle_for_user_model(path, model, task)


def bundle_for_user_model(name: str, model: object, task: str) -> ModelBundle:
    """A bundle for a user's module: ImageNet preprocessing at 224 pixels.

    The classes are counted from one forward pass (a classifier's last
    dimension, a segmenter's channels); a detector's are not known.
    """
    from captum_igcam.app.torchvision_models import imagenet_categories

    if not isinstance(model, nn.Module):
        raise ValueError(
            f"model: {name!r} gave a {type(model).__name__}, expected an "
            "nn.Module (a state_dict alone is not enough: save the whole module "
            "or use 'module:callable')"
        )
    model.eval()
    size = DEFAULT_INPUT_SIZE
    probe = torch.zeros(1, 3, size, size, device=device_of(model))
    mean, std = IMAGENET_MEAN, IMAGENET_STD
    if task == "detection":
        n_outputs, mean, std = 0, (0.0,) * 3, (1.0,) * 3
    else:
        with torch.no_grad():
            output = model(probe)
        if task == "segmentation":
            output = output["out"] if isinstance(output, dict) else output
        n_outputs = output.shape[1 if task == "segmentation" else -1]
    categories = (
        imagenet_categories()
        if task == "classification" and n_outputs == 1000
        else [f"class {index}" for index in range(n_outputs)]
    )
    return ModelBundle.with_default_layer(
        name, model, size, mean, std, categories, task
    )
