"""pytorch-grad-cam's CAM methods in the method registry (the ``peers`` extra).

The methods users pick instead of Integrated Grad-CAM, from the library they
use: ``pip install "captum-igcam[peers]"`` installs ``grad-cam``
(pytorch-grad-cam) and :func:`register_peer_methods` registers
:data:`PEER_METHODS` under the names below, so that ``explain``, ``benchmark``
and the sanity checks run them at the same layer, on the same inputs and for
the same targets as the Captum methods. Nothing is reimplemented: each map is
computed by the library's own class.

What a map is. pytorch-grad-cam returns, per example, its layer map with a
ReLU, min-max scaled to ``[0, 1]`` and resized to the input with OpenCV. The
adapter keeps the map the library computes *before* that scaling and
resizing (the output of the class's ``get_cam_image`` at the layer's
resolution) and applies the library's own ReLU to it, so a peer map has the
shape and the meaning of ``gradcam``'s: ``(N, 1, h, w)``, non-negative, in the
layer's units. The benchmark's metrics then treat every method alike (see
``docs/peers.md`` for what the library's scaling would have changed).

Targets. A class target (an int, or one per example) becomes the library's
``ClassifierOutputTarget``; ``None`` (a detection score: the forward function
returns one score per example) becomes the score itself. Segmentation and
detection run through the same bound forward functions as the Captum methods
(:mod:`captum_igcam.app.tasks`).

Memory. Score-CAM and Ablation-CAM score many perturbed copies of an image
in no-grad passes; their ``batch_size`` is the number of perturbed images
whose pass fits ``settings.memory_budget_mb``
(:func:`~captum_igcam.app.memory.chunk_sizes`, as for the benchmark's
deletion curves).

The user's model. The library sets the model to ``eval()``, registers hooks,
accumulates parameter gradients with ``backward()`` and (Ablation-CAM) swaps
the explained layer for its ablation layer; every call restores the training
flags, hooks, parameter gradients and submodules it found, also when the call
fails.

This module imports neither ``pytorch_grad_cam`` nor anything else optional
at import time: the names are always registered, and a call without the
extra raises an error that names ``methods`` and the extra.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import importlib.util
import sys
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from captum_igcam.app.memory import chunk_sizes
from captum_igcam.app.settings import MethodSettings

#: The distribution the extra installs, and the module it provides.
DISTRIBUTION = "grad-cam"
MODULE = "pytorch_grad_cam"
#: The pip command named in the error when the extra is missing.
INSTALL_HINT = 'pip install "captum-igcam[peers]"'


class PeersNotInstalledError(ValueError):
    """A peer method was asked for without the ``peers`` extra installed."""


@dataclass(frozen=True)
class PeerMethod:
    """A pytorch-grad-cam class registered as a method.

    Args:
        name (str): Registry key (``--methods``).
        class_name (str): The class in ``pytorch_grad_cam``.
        title (str): Short name for figure panels.
        description (str): One line for tables and help texts.
        batched (bool): The class scores perturbed images in passes of
            ``batch_size`` (set from the memory budget).
        class_specific (bool): The map depends on the target (False for the
            methods that read the activations alone).
        reshapes (bool): The library applies a reshape transform for it
            (False: only ``(N, C, h, w)`` feature maps).
        options (dict): Further constructor arguments, fixed.
    """

    name: str
    class_name: str
    title: str
    description: str
    batched: bool = False
    class_specific: bool = True
    reshapes: bool = True
    options: dict[str, Any] = field(default_factory=dict)


#: The registered peer methods. Left out: FullGrad (all bias layers at once,
#: not one layer), FinerCAM (explains the difference to similar classes, not
#: the target's score), RefineCAM (several layers), SESS (sliding windows
#: over the image, not a layer map), RandomCAM (random weights: a control,
#: drawn from NumPy's global generator) and SegEigenCAM (EigenCAM with a
#: sign rule; EigenCAM is registered).
PEER_METHODS = (
    PeerMethod(
        "pgc-gradcam",
        "GradCAM",
        "Grad-CAM (pgc)",
        "pytorch-grad-cam's Grad-CAM (the same map as gradcam)",
    ),
    PeerMethod(
        "gradcam++",
        "GradCAMPlusPlus",
        "Grad-CAM++",
        "Grad-CAM++ (pytorch-grad-cam): positive gradients, second-order weights",
    ),
    PeerMethod(
        "xgradcam",
        "XGradCAM",
        "XGrad-CAM",
        "XGrad-CAM (pytorch-grad-cam): activation-weighted gradient average",
    ),
    PeerMethod(
        "layercam",
        "LayerCAM",
        "LayerCAM",
        "LayerCAM (pytorch-grad-cam): positive gradient times activation, per position",
    ),
    PeerMethod(
        "hirescam",
        "HiResCAM",
        "HiResCAM",
        "HiResCAM (pytorch-grad-cam): gradient times activation, per position",
    ),
    PeerMethod(
        "gradcam-elementwise",
        "GradCAMElementWise",
        "Grad-CAM element-wise",
        "Grad-CAM element-wise (pytorch-grad-cam): ReLU of gradient times "
        "activation, per position",
    ),
    PeerMethod(
        "shapleycam",
        "ShapleyCAM",
        "ShapleyCAM",
        "ShapleyCAM (pytorch-grad-cam): gradient and Hessian-vector product weights",
        reshapes=False,
    ),
    PeerMethod(
        "scorecam",
        "ScoreCAM",
        "Score-CAM",
        "Score-CAM (pytorch-grad-cam): softmax of the scores of channel-masked "
        "inputs; no gradient",
        batched=True,
    ),
    PeerMethod(
        "ablationcam",
        "AblationCAM",
        "Ablation-CAM",
        "Ablation-CAM (pytorch-grad-cam): score drop when a channel is zeroed; "
        "no gradient",
        batched=True,
        reshapes=False,
    ),
    PeerMethod(
        "eigencam",
        "EigenCAM",
        "EigenCAM",
        "EigenCAM (pytorch-grad-cam): first principal component of the "
        "activations; not class-specific",
        class_specific=False,
    ),
    PeerMethod(
        "eigengradcam",
        "EigenGradCAM",
        "EigenGrad-CAM",
        "EigenGrad-CAM (pytorch-grad-cam): first principal component of "
        "gradient times activation",
    ),
    PeerMethod(
        "kpcacam",
        "KPCA_CAM",
        "KPCA-CAM",
        "KPCA-CAM (pytorch-grad-cam): first kernel principal component of the "
        "activations; not class-specific",
        class_specific=False,
    ),
    PeerMethod(
        "fem",
        "FEM",
        "FEM",
        "FEM (pytorch-grad-cam): activations over mean + 2 std; not class-specific",
        class_specific=False,
    ),
)


def library(method: str = "a peer method") -> types.ModuleType:
    """``pytorch_grad_cam``, imported on first use.

    Args:
        method (str, optional): The method that needs it, for the message.
            Default: "a peer method"

    Returns:
        module: The installed ``pytorch_grad_cam``.

    Raises:
        PeersNotInstalledError: It is not installed; the message names
            ``methods`` (the command line's ``--methods``) and the extra.
    """
    try:
        return importlib.import_module(MODULE)
    except ImportError as error:
        raise PeersNotInstalledError(
            f"methods: {method} is one of the peer methods "
            f"({', '.join(m.name for m in PEER_METHODS)}), which need "
            f"pytorch-grad-cam ({error}); install the extra with {INSTALL_HINT}, "
            "or leave them out of --methods"
        ) from None


def installed() -> bool:
    """Whether pytorch-grad-cam can be imported (the ``peers`` extra).

    Returns:
        bool: True when the peer methods can run.
    """
    return importlib.util.find_spec(MODULE) is not None


def library_versions() -> dict[str, str | None]:
    """The installed versions of pytorch-grad-cam and what it computes with.

    Returns:
        dict: ``grad-cam``, ``ttach``, ``opencv-python-headless``, ``torch``
        and ``numpy`` -> version, or None when not installed.
    """
    names = (DISTRIBUTION, "ttach", "opencv-python-headless", "torch", "numpy")
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def peer_targets(target: Any, n_examples: int) -> list[Callable[[Tensor], Tensor]]:
    """The library's targets for the registry's ``target`` (Captum's forms).

    Args:
        target (int, tuple, Tensor, list or None): One class for all
            examples, one per example (a ``(N,)`` tensor or a list), or None
            for a forward function that returns one score per example.
        n_examples (int): Examples in the batch.

    Returns:
        list: One ``ClassifierOutputTarget`` (or the score itself) per example.

    Raises:
        ValueError: A target form the library cannot take (a tuple of
            indices into a multi-dimensional output, or a count that is not
            one or ``n_examples``).
    """
    if target is None:
        return [_whole_score] * n_examples
    if isinstance(target, Tensor):
        target = target.tolist() if target.dim() else int(target)
    if isinstance(target, int):
        target = [target] * n_examples
    if isinstance(target, list) and len(target) == n_examples:
        if all(isinstance(value, int) for value in target):
            classifier_target = library().utils.model_targets.ClassifierOutputTarget
            return [classifier_target(value) for value in target]
    raise ValueError(
        f"target: expected a class index, one per example ({n_examples}) or None "
        f"for the peer methods, got {target!r}"
    )


def _whole_score(output: Tensor) -> Tensor:
    """The target of a forward function that returns one score per example."""
    if output.numel() != 1:
        raise ValueError(
            "target: None needs a forward function with one score per example "
            f"for the peer methods; this one returns {tuple(output.shape)} per "
            "example: give a class"
        )
    return output.reshape(())


class _PerturbedRows:
    """Perturbed images per no-grad pass within the budget, per input shape."""

    def __init__(self, model: nn.Module, settings: MethodSettings) -> None:
        self.model, self.budget_mb = model, settings.memory_budget_mb
        self.measured: dict[tuple[int, ...], int] = {}

    def __call__(self, inputs: Tensor) -> int:
        shape = tuple(inputs.shape[1:])
        if shape not in self.measured:
            sizes = chunk_sizes(self.model, inputs[:1], self.budget_mb)
            self.measured[shape] = sizes.curve_rows
        return self.measured[shape]


def _keeping_raw_maps(cam_class: type) -> type:
    """``cam_class`` recording each map of ``get_cam_image`` before scaling."""

    class RawMaps(cam_class):  # type: ignore[misc, valid-type]
        raw_maps: list[np.ndarray]

        def get_cam_image(self, *args: Any, **kwargs: Any) -> np.ndarray:
            cam = super().get_cam_image(*args, **kwargs)
            self.raw_maps.append(np.asarray(cam))
            return cam

    RawMaps.__name__ = RawMaps.__qualname__ = f"Raw{cam_class.__name__}"
    return RawMaps


_HOOK_DICTS = (
    "_forward_hooks",
    "_forward_hooks_with_kwargs",
    "_forward_hooks_always_called",
    "_forward_pre_hooks",
    "_forward_pre_hooks_with_kwargs",
    "_backward_hooks",
    "_backward_pre_hooks",
    "_state_dict_hooks",
    "_load_state_dict_pre_hooks",
)


@contextlib.contextmanager
def model_kept(model: nn.Module) -> Iterator[None]:
    """Put back what a pytorch-grad-cam call changes in ``model``.

    On exit, also after an error: every module's training flag and
    submodules, the hooks registered on any module during the block removed,
    and each parameter's ``.grad`` as it was (the library calls
    ``zero_grad()`` and ``backward()``).

    Args:
        model (nn.Module): The user's model.
    """
    modules = list(model.modules())
    training = [module.training for module in modules]
    children = [dict(module._modules) for module in modules]
    hooks = [
        {name: set(getattr(module, name, {})) for name in _HOOK_DICTS}
        for module in modules
    ]
    parameters = list(model.parameters())
    grads = [parameter.grad for parameter in parameters]
    try:
        yield
    finally:
        for module, flag, kids, known in zip(
            modules, training, children, hooks, strict=True
        ):
            if module._modules != kids:
                module._modules.clear()
                module._modules.update(kids)
            for name, keys in known.items():
                registered = getattr(module, name, None)
                for key in [key for key in registered or {} if key not in keys]:
                    del registered[key]
            module.training = flag
        for parameter, grad in zip(parameters, grads, strict=True):
            parameter.grad = grad


@contextlib.contextmanager
def _quiet_progress(cam_module: types.ModuleType) -> Iterator[None]:
    """The library's per-image tqdm bars (Score-CAM, Ablation-CAM) hidden."""
    progress = getattr(cam_module, "tqdm", None)
    if progress is None:
        yield
        return
    quiet = types.SimpleNamespace(
        tqdm=lambda *args, **kwargs: progress.tqdm(*args, disable=True, **kwargs)
    )
    cam_module.tqdm = quiet
    try:
        yield
    finally:
        cam_module.tqdm = progress


def _release(helper: Any) -> None:
    """Remove the library's hooks and drop its captured tensors.

    Its own ``release()`` detaches them in place first, which fails for a
    layer whose output is a view (ShapleyCAM keeps them attached).
    """
    for handle in helper.handles:
        handle.remove()
    helper.handles.clear()
    helper.activations, helper.gradients = [], []


def _ablation_layer(module: types.ModuleType) -> nn.Module:
    """The library's ``AblationLayer``, callable as the layer it stands in for.

    It returns the layer's cached activations with channels ablated and
    ignores its input; the library calls it with the input alone, which
    fails for a layer its parent calls with more arguments (EfficientNet's
    blocks take ``drop_connect_rate``). This one takes and ignores them.
    """

    class AnyArguments(module.AblationLayer):
        def __call__(self, inputs: Tensor, *args: Any, **kwargs: Any) -> Tensor:
            return super().__call__(inputs)

    return AnyArguments()


def _peer_builder(peer: PeerMethod) -> Callable[..., Callable[..., Tensor]]:
    def build(model: nn.Module, layer: nn.Module, settings: MethodSettings):
        module = library(peer.name)  # fails before any image is explained
        if not peer.reshapes and settings.reshape_transform is not None:
            raise ValueError(
                f"methods: {peer.name} reads (N, C, h, w) feature maps only in "
                "pytorch-grad-cam; this layer's tensor needs a reshape transform "
                "(a transformer's tokens): leave it out of --methods here"
            )
        rows = _PerturbedRows(model, settings) if peer.batched else None

        def maps(inputs: Tensor, target: Any, baselines: Any = None) -> Tensor:
            targets = peer_targets(target, len(inputs))
            cam_class = getattr(module, peer.class_name)
            options = dict(peer.options)
            if peer.class_name == "AblationCAM":
                # A fresh ablation layer per call (the constructor's default
                # instance is shared by every AblationCAM).
                options["ablation_layer"] = _ablation_layer(module)
            raw_class = _keeping_raw_maps(cam_class)
            with model_kept(model):
                cam = raw_class(
                    model,
                    [layer],
                    reshape_transform=settings.reshape_transform,
                    **options,
                )
                cam.raw_maps = []
                try:
                    with _quiet_progress(sys.modules[cam_class.__module__]):
                        if rows is None:
                            cam(inputs, targets)
                        else:
                            # One image per call: the library builds all of an
                            # image's perturbed copies before it batches them.
                            cam.batch_size = rows(inputs)
                            for index, example_target in enumerate(targets):
                                cam(inputs[index : index + 1], [example_target])
                finally:
                    _release(cam.activations_and_grads)
            raw = np.concatenate(cam.raw_maps)
            layer_map = torch.from_numpy(np.maximum(raw, 0)).unsqueeze(1)
            return layer_map.to(device=inputs.device, dtype=inputs.dtype)

        return maps

    return build


def register_peer_methods(
    register: Callable[[str, str, str], Callable[[Any], Any]],
) -> None:
    """Register :data:`PEER_METHODS` with the registry's decorator factory.

    Args:
        register (Callable): :func:`captum_igcam.app.methods.register_method`.
    """
    for peer in PEER_METHODS:
        register(peer.name, peer.title, peer.description)(_peer_builder(peer))


__all__ = [
    "DISTRIBUTION",
    "INSTALL_HINT",
    "PEER_METHODS",
    "PeerMethod",
    "PeersNotInstalledError",
    "library",
    "installed",
    "library_versions",
    "model_kept",
    "peer_targets",
    "register_peer_methods",
]
