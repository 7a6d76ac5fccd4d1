"""The model and attribution settings shared by every command.

``captum-igcam explain``, ``explain-dataset`` and ``benchmark`` build one
:class:`MethodSettings` from the same options (``--model``, ``--weights``,
``--random-weights``, ``--layer``, ``--device``, ``--steps``, ``--method``,
``--baseline``, ``--batch-size``), and the method registry
(:data:`captum_igcam.app.methods.METHODS`) reads it, so a setting means the
same everywhere. The Python API uses the same object.

This module imports neither torch nor Captum at import time, so that the
command line can show ``--help`` and check arguments quickly.
"""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from captum_igcam.app.errors import SettingValueError, UsageError

if TYPE_CHECKING:
    from captum_igcam.app.models import ModelBundle

#: Captum's approximation methods (``SUPPORTED_METHODS`` in
#: ``captum.attr._utils.approximation_methods``; a test keeps them equal).
APPROXIMATION_METHODS = (
    "riemann_right",
    "riemann_left",
    "riemann_middle",
    "riemann_trapezoid",
    "gausslegendre",
)
#: Baseline images, see :func:`captum_igcam.app.baselines.baseline_input`.
BASELINES = ("black", "blur", "mean")
DEVICES = ("cpu", "cuda")
#: What the model does (``captum_igcam.app.model_bundle.TASKS``; a test keeps
#: them equal): ``None`` takes a registered model's own task.
TASKS = ("classification", "segmentation", "detection")
#: Memory one model pass may use unless told otherwise, in MiB
#: (:func:`captum_igcam.app.memory.chunk_sizes`).
DEFAULT_MEMORY_BUDGET_MB = 1536


def check_positive_int(name: str, value: Any) -> int:
    """Return ``value`` if it is an integer >= 1, else raise naming ``name``.

    The one positive-integer check of the application (settings, command
    line, evaluation and data-set job).

    Args:
        name (str): Parameter or option named in the error.
        value (Any): Value to check; ``bool`` is refused.

    Returns:
        int: ``value`` as an ``int``.

    Raises:
        SettingValueError: If ``value`` is not an integer >= 1 (a
            ValueError whose ``parameter`` is ``name``).

    Example::

        >>> check_positive_int("n_steps", 0)
        Traceback (most recent call last):
        ValueError: n_steps: expected a positive integer, got 0
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise SettingValueError(f"expected a positive integer, got {value!r}", name)
    return int(value)


@dataclasses.dataclass(frozen=True)
class MethodSettings:
    """What a map depends on besides the image: model, layer and method options.

    Every value is checked when the object is made, with a
    :class:`~captum_igcam.app.errors.SettingValueError` (a ValueError) whose
    ``parameter`` is the field.

    Args:
        model (str, optional): Name for :func:`captum_igcam.app.models.load_model`
            (``None``: the embedded EfficientNet-Lite0).
            Default: None
        weights (str, optional): State-dict file for a torchvision
            architecture named by ``model``, loaded with ``weights_only=True``.
            Default: None
        random_weights (bool, optional): Keep a torchvision model's random
            initialisation instead of its ImageNet weights.
            Default: False
        layer (str, optional): Dotted name of the layer to explain
            (``None``: the model's default layer).
            Default: None
        device (str, optional): ``"cpu"`` or ``"cuda"``.
            Default: "cpu"
        n_steps (int, optional): Path points of the integrated methods.
            Default: 50
        method (str, optional): Captum approximation method, one of
            :data:`APPROXIMATION_METHODS`.
            Default: "gausslegendre"
        baseline (str, optional): Baseline image, one of :data:`BASELINES`.
            Default: "black"
        internal_batch_size (int, optional): Examples x path points per
            forward pass (``None``: as many as ``memory_budget_mb`` allows).
            Default: None
        memory_budget_mb (int, optional): Memory one forward and backward
            pass of a path method may use, in MiB, when
            ``internal_batch_size`` is None: the registry's methods derive
            their chunk size from it with
            :func:`captum_igcam.app.memory.chunk_sizes`.
            Default: :data:`DEFAULT_MEMORY_BUDGET_MB`
        task (str, optional): One of :data:`TASKS`; ``None`` takes a
            registered model's own task (a user's model is a classifier).
            Default: None
        reshape_transform (Callable, optional): How the layer's tensor maps to
            ``(N, channels, h, w)`` (see :mod:`captum_igcam.reshapes`); not an
            option of its own but the loaded model's
            (:meth:`for_model`); None for CNNs.
            Default: None

    Example::

        >>> settings = MethodSettings(model="resnet50", random_weights=True, n_steps=16)
        >>> bundle = settings.load_model()
        >>> maps = METHODS["igcam"].build(bundle.model, bundle.layer(), settings)
    """

    model: str | None = None
    weights: str | None = None
    random_weights: bool = False
    layer: str | None = None
    device: str = "cpu"
    n_steps: int = 50
    method: str = "gausslegendre"
    baseline: str = "black"
    internal_batch_size: int | None = None
    memory_budget_mb: int = DEFAULT_MEMORY_BUDGET_MB
    task: str | None = None
    reshape_transform: Callable[[Any], Any] | None = dataclasses.field(
        default=None, compare=False
    )

    def __post_init__(self) -> None:
        check_positive_int("n_steps", self.n_steps)
        if self.internal_batch_size is not None:
            check_positive_int("internal_batch_size", self.internal_batch_size)
        check_positive_int("memory_budget_mb", self.memory_budget_mb)
        for name, choices in (
            ("method", APPROXIMATION_METHODS),
            ("baseline", BASELINES),
            ("device", DEVICES),
        ):
            if getattr(self, name) not in choices:
                raise SettingValueError(
                    f"expected one of {', '.join(choices)}, "
                    f"got {getattr(self, name)!r}",
                    name,
                )
        if self.task is not None and self.task not in TASKS:
            raise SettingValueError(
                f"expected one of {', '.join(TASKS)}, got {self.task!r}", "task"
            )
        if self.weights is not None and self.random_weights:
            raise SettingValueError(
                "a weights file and random_weights exclude each other", "weights"
            )

    def check_device(self) -> None:
        """Raise :class:`UsageError` if ``device`` is ``"cuda"`` without CUDA."""
        if self.device != "cuda":
            return
        import torch

        if not torch.cuda.is_available():
            raise UsageError("'cuda' was asked for but CUDA is not available", "device")

    def load_model(self) -> ModelBundle:
        """The model these settings name, on ``device``, with ``layer`` applied.

        Returns:
            ModelBundle: See :func:`captum_igcam.app.models.load_model`.

        Raises:
            UsageError: CUDA asked for but not available.
            ValueError: Unknown model or layer (the message lists close names).
            ModelNotAvailableError: Pretrained weights are not cached locally.
        """
        from captum_igcam.app import models

        self.check_device()
        bundle = models.load_model(
            self.model,
            self.device,
            pretrained=not self.random_weights,
            weights=self.weights,
            task=self.task,
        )
        if self.layer is not None:
            bundle = dataclasses.replace(bundle, layer_name=self.layer)
            bundle.layer()  # an unknown name fails here, with close names
        return bundle

    def for_model(self, bundle: ModelBundle) -> MethodSettings:
        """These settings with the loaded model's ``reshape_transform``."""
        return dataclasses.replace(self, reshape_transform=bundle.reshape_transform)

    def describe(self) -> dict[str, Any]:
        """The settings as a JSON-ready dict (for ``summary.json`` and indexes)."""
        described = dataclasses.asdict(self)
        del described["reshape_transform"]  # follows from the model
        return described
