"""The layer to explain, and how to read it, for known vision transformers.

- ViT / DeiT: the last block's first LayerNorm, the input of the last
  attention (torchvision ``encoder.layers[-1].ln_1``, timm
  ``blocks[-1].norm1``), as in the ``pytorch-grad-cam`` library's ViT
  example. The head reads only the class token, and after the last
  attention the patch tokens no longer reach it: at the last block's output
  their gradient, hence the map, is zero.
- Swin: the final LayerNorm ``norm``, the last stage's normalised
  ``(N, H, W, C)`` output. The head averages it over positions and applies
  a linear layer, so the gradient is the same at every position and
  Grad-CAM there is exactly CAM (Zhou et al., CVPR 2016): the map's values
  sum to the class score minus the head's bias. It is the counterpart of a
  CNN's last feature map. ``pytorch-grad-cam``'s Swin example explains the
  last block's first norm instead (``features[-1][-1].norm1`` in
  torchvision, ``layers[-1].blocks[-1].norm1`` in timm): the same 7 x 7 grid
  before the block's attention and MLP, which ``--layer`` selects.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from captum_igcam.reshapes import ReshapeTransform, channels_last_grid, vit_tokens

# timm is optional: its models are recognised by the module of their class.
_TIMM_VIT_MODULES = ("timm.models.vision_transformer", "timm.models.deit")
_TIMM_SWIN_MODULE = "timm.models.swin_transformer"


@dataclass(frozen=True)
class TransformerLayer:
    """A transformer's default layer and the reshape transform its tensor needs.

    Args:
        name (str): Dotted name of the layer, as in ``model.named_modules()``.
        reshape_transform (ReshapeTransform): Maps its tensor to
            ``(N, channels, height, width)``.
    """

    name: str
    reshape_transform: ReshapeTransform


def transformer_layer(model: nn.Module) -> TransformerLayer | None:
    """The layer to explain in a torchvision or timm ViT or Swin.

    Args:
        model (nn.Module): Any classifier.

    Returns:
        TransformerLayer or None: None when ``model`` is not one of
        torchvision's ``VisionTransformer`` / ``SwinTransformer`` or timm's
        ``VisionTransformer`` (ViT, DeiT) / ``SwinTransformer``.

    Example::

        >>> transformer_layer(torchvision.models.vit_b_16())
        TransformerLayer(name='encoder.layers.encoder_layer_11.ln_1', ...)
    """
    from torchvision.models import SwinTransformer, VisionTransformer

    module = type(model).__module__
    if isinstance(model, VisionTransformer):
        return TransformerLayer(
            _name_of(model, model.encoder.layers[-1].ln_1), vit_tokens()
        )
    if module in _TIMM_VIT_MODULES and hasattr(model, "blocks"):
        prefix = int(model.num_prefix_tokens)
        reshape = vit_tokens(
            drop_class_token=prefix > 0, extra_prefix_tokens=max(prefix - 1, 0)
        )
        return TransformerLayer(_name_of(model, model.blocks[-1].norm1), reshape)
    if isinstance(model, SwinTransformer) or module == _TIMM_SWIN_MODULE:
        return TransformerLayer("norm", channels_last_grid())
    return None


def randomise_zero_vit_head(model: nn.Module) -> None:
    """Give a randomly initialised torchvision ViT a random head.

    torchvision initialises a ViT's classification head to zeros, so with
    random weights every score is constant, every gradient zero and every
    map blank. The head gets normal(0, 0.02) weights instead, the scale
    torchvision uses for Swin's head, so that random-weight maps show the
    method's mechanics. Models other than torchvision ViTs are left alone.

    Args:
        model (nn.Module): A freshly built model (``weights=None``).
    """
    from torchvision.models import VisionTransformer

    if isinstance(model, VisionTransformer):
        nn.init.normal_(model.heads.head.weight, std=0.02)


def _name_of(model: nn.Module, layer: nn.Module) -> str:
    return next(name for name, module in model.named_modules() if module is layer)
