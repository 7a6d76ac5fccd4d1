"""What every loaded model comes with: :class:`ModelBundle` and its constants."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from captum_igcam.app.devices import device_of
from captum_igcam.app.layers import default_task_layer, resolve_layer
from captum_igcam.reshapes import ReshapeTransform

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_INPUT_SIZE = 224
#: What a model does: the kinds of output :mod:`captum_igcam.app` explains.
TASKS = ("classification", "segmentation", "detection")


class ModelNotAvailableError(RuntimeError):
    """The model is known but cannot be built here (e.g. weights not cached)."""


@dataclass(frozen=True, eq=False)
class ModelBundle:
    """A model together with what is needed to explain it.

    Args:
        name (str): Name the model was loaded by.
        model (nn.Module): The model, in eval mode.
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
        task (str, optional): ``"classification"`` (``N x classes`` scores),
            ``"segmentation"`` (``N x classes x H x W`` logits, or a dict with
            them under ``"out"``) or ``"detection"`` (a torchvision detector:
            a list of images in, a list of dicts out; its own normalisation,
            so ``mean`` 0 and ``std`` 1 here).
            Default: "classification"

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
    task: str = "classification"

    @classmethod
    def with_default_layer(
        cls,
        name: str,
        model: nn.Module,
        input_size: int,
        mean: tuple[float, float, float],
        std: tuple[float, float, float],
        categories: list[str],
        task: str = "classification",
    ) -> ModelBundle:
        """A bundle explaining the model's default layer for its task.

        The layer and its reshape come from
        :func:`~captum_igcam.app.layers.default_task_layer`; the other
        arguments are the fields of the same names.

        Example::

            >>> bundle = ModelBundle.with_default_layer(
            ...     "resnet18", resnet18().eval(), 224, IMAGENET_MEAN, IMAGENET_STD,
            ...     categories)
            >>> bundle.layer_name
            'layer4'
        """
        layer_name, reshape_transform = default_task_layer(model, input_size, task)
        return cls(
            name=name,
            model=model,
            layer_name=layer_name,
            input_size=input_size,
            mean=mean,
            std=std,
            categories=categories,
            reshape_transform=reshape_transform,
            task=task,
        )

    @property
    def device(self) -> torch.device:
        """The device holding the model's parameters (CPU for a parameterless one)."""
        return device_of(self.model)

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
        return self.transform(image.convert("RGB")).to(device_of(self.model))

    def layer(self) -> nn.Module:
        """Return the module named by :attr:`layer_name`."""
        return resolve_layer(self.model, self.layer_name)
