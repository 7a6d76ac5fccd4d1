"""Baseline images: where the integration path of the integrated methods starts.

The ``--baseline`` choices of the commands
(:data:`~captum_igcam.app.settings.BASELINES`):

- ``"black"``: a black image of the photo's size, preprocessed like the photo;
- ``"blur"``: the photo under a Gaussian blur of radius 1/16 of its larger side;
- ``"mean"``: the normalisation's mean colour, i.e. an all-zero model input
  (Captum's default baseline).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import numpy as np

from captum_igcam.app.settings import BASELINES

if TYPE_CHECKING:
    import torch

    from captum_igcam.app.models import ModelBundle

#: The blur radius as a fraction of the photo's larger side.
BLUR_RADIUS_FRACTION = 1 / 16


def baseline_input(
    bundle: ModelBundle, photo: np.ndarray, kind: str = "black"
) -> torch.Tensor:
    """The ``(1, 3, S, S)`` baseline of kind ``kind`` for ``photo``.

    Args:
        bundle (ModelBundle): Gives the preprocessing and the device.
        photo (np.ndarray): ``HxWx3`` uint8 RGB image being explained.
        kind (str, optional): One of :data:`BASELINES`.
            Default: "black"

    Returns:
        torch.Tensor: The baseline as a model input, on the bundle's device.

    Raises:
        ValueError: For an unknown ``kind``.

    Example::

        >>> bundle = load_model()
        >>> photo = bundled_images()["chelsea"]
        >>> baseline_input(bundle, photo, "blur").shape
        torch.Size([1, 3, 224, 224])
    """
    import torch
    from PIL import Image, ImageFilter

    if kind not in BASELINES:
        raise ValueError(
            f"baseline: expected one of {', '.join(BASELINES)}, got {kind!r}"
        )
    if kind == "mean":
        size = bundle.input_size
        return torch.zeros(1, 3, size, size, device=bundle.device)
    image = Image.fromarray(photo)
    if kind == "black":
        image = Image.new("RGB", image.size)
    else:
        radius = max(image.size) * BLUR_RADIUS_FRACTION
        image = image.filter(ImageFilter.GaussianBlur(radius=radius))
    return bundle.preprocess(image).unsqueeze(0)


@dataclasses.dataclass(frozen=True)
class InputAndBaseline:
    """Image -> ``(input, baseline)`` on the CPU, picklable for loader workers.

    Args:
        bundle (ModelBundle): Gives the resizing and normalisation; its model
            is not used (:meth:`for_model` swaps in a parameterless stand-in,
            which keeps the tensors on the CPU).
        baseline (str): One of :data:`BASELINES`.

    Example::

        >>> transform = InputAndBaseline.for_model(load_model(), "black")
        >>> inputs, baseline = transform(load_image("cat.jpg"))
    """

    bundle: ModelBundle
    baseline: str

    @classmethod
    def for_model(cls, bundle: ModelBundle, baseline: str) -> InputAndBaseline:
        """Build it from a loaded bundle without keeping a reference to its model."""
        import torch

        return cls(dataclasses.replace(bundle, model=torch.nn.Identity()), baseline)

    def __call__(self, image: Any) -> tuple[torch.Tensor, torch.Tensor]:
        photo = np.asarray(image)
        inputs = self.bundle.preprocess(photo)
        return inputs, baseline_input(self.bundle, photo, self.baseline)[0]
