"""What users pass to ``attribute``: numpy targets, grad_kwargs, inference
mode, wrapped models, layers called with keywords.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest
import torch
import torch.distributed as dist
from helpers import (
    N_EXAMPLES,
    ProbeNet,
    assert_same_state,
    make_inputs,
    make_model,
    model_state,
)
from tolerances import assert_close_to
from torch import Tensor, nn

from captum_igcam import IntegratedLayerGradCam, LayerSpaceIntegratedGradCam

# --------------------------------------------------------------------------

PER_EXAMPLE = [3, 1]
EQUIVALENT_TARGETS = [
    ("numpy int64", np.int64(3), 3),
    ("numpy uint8", np.uint8(3), 3),
    ("0-d numpy array", np.array(3, dtype=np.int32), 3),
    ("tuple of a numpy int", (np.int16(3),), 3),
    *[
        (f"0-d {dtype} tensor", torch.tensor(3, dtype=dtype), 3)
        for dtype in (torch.uint8, torch.int8, torch.int16, torch.int32)
    ],
    ("list of numpy ints", [np.int64(3), np.int64(1)], PER_EXAMPLE),
    ("list of 0-d arrays", [np.array(3), np.array(1)], PER_EXAMPLE),
    ("list of 0-d tensors", list(torch.tensor(PER_EXAMPLE)), PER_EXAMPLE),
    ("list of numpy int tuples", [(np.int64(3),), (np.uint16(1),)], PER_EXAMPLE),
    ("numpy int array", np.array(PER_EXAMPLE), PER_EXAMPLE),
    ("numpy uint16 array", np.array(PER_EXAMPLE, dtype=np.uint16), PER_EXAMPLE),
    # One element selects the same index for every example, as in Captum.
    ("one-element tensor", torch.tensor([3]), 3),
    ("one-element numpy array", np.array([3], dtype=np.int16), 3),
    *[
        (f"{dtype} tensor", torch.tensor(PER_EXAMPLE, dtype=dtype), PER_EXAMPLE)
        for dtype in (torch.uint8, torch.int8, torch.int16, torch.int32)
    ],
]


@pytest.mark.parametrize(
    ("target", "as_int"),
    [(target, as_int) for _, target, as_int in EQUIVALENT_TARGETS],
    ids=[name for name, _, _ in EQUIVALENT_TARGETS],
)
def test_integer_targets_of_every_kind_give_the_int_target_map(target, as_int):
    model, inputs = make_model(), make_inputs()
    igcam = IntegratedLayerGradCam(model, model.conv2)
    expected = igcam.attribute(inputs, target=as_int, n_steps=3)
    assert torch.equal(igcam.attribute(inputs, target=target, n_steps=3), expected)


def test_targets_from_numpy_argmax_give_the_int_target_map():
    model, inputs = make_model(), make_inputs()
    scores = model(inputs).detach().numpy()
    targets = list(np.argmax(scores, 1))
    assert all(type(item) is np.int64 for item in targets)
    igcam = IntegratedLayerGradCam(model, model.conv2)
    expected = igcam.attribute(inputs, target=[int(t) for t in targets], n_steps=3)
    assert torch.equal(igcam.attribute(inputs, target=targets, n_steps=3), expected)


def test_create_graph_still_returns_a_detached_map():
    model, inputs = make_model(), make_inputs()
    igcam = IntegratedLayerGradCam(model, model.conv2)
    expected = igcam.attribute(inputs, target=[1, 2], n_steps=3)
    for grad_kwargs in ({"create_graph": True}, {"retain_graph": True}):
        result = igcam.attribute(
            inputs,
            target=[1, 2],
            n_steps=3,
            internal_batch_size=3,
            grad_kwargs=grad_kwargs,
        )
        assert not result.requires_grad and result.grad_fn is None
        assert_close_to(result, expected)


class ScaledNet(ProbeNet):
    """ProbeNet whose scores are multiplied by an extra per-example input."""

    def forward(self, x: Tensor, scale: Tensor) -> Tensor:
        return super().forward(x) * scale


@pytest.mark.parametrize(
    "explainer_class", [IntegratedLayerGradCam, LayerSpaceIntegratedGradCam]
)
@pytest.mark.parametrize("inference_mode", [True, False])
def test_inference_tensors_and_inference_mode_give_the_normal_map(
    inference_mode: bool, explainer_class: type
):
    """Inputs, target, extra arguments and baselines made in inference mode."""
    input_space = explainer_class is IntegratedLayerGradCam
    model_class = ScaledNet if input_space else ProbeNet
    model, inputs = make_model(model_class), make_inputs()
    target = torch.tensor([1, 3])
    baselines = torch.rand(1, 3, 8, 8, dtype=torch.float64)
    scale = torch.rand(N_EXAMPLES, 1, dtype=torch.float64) + 0.5
    extra = (scale,) if input_space else None
    explainer = explainer_class(model, model.conv2)
    expected = explainer.attribute(
        inputs,
        target=target,
        additional_forward_args=extra,
        baselines=baselines,
        n_steps=3,
    )
    with torch.inference_mode():
        frozen = [t.clone() for t in (inputs, target, scale, baselines)]
    assert all(t.is_inference() for t in frozen)
    frozen_inputs, frozen_target, frozen_scale, frozen_baselines = frozen
    frozen_extra = (frozen_scale,) if input_space else None
    with torch.inference_mode(inference_mode):
        before = model_state(model, (frozen_inputs,))
        result = explainer.attribute(
            frozen_inputs,
            target=frozen_target,
            additional_forward_args=frozen_extra,
            baselines=frozen_baselines,
            n_steps=3,
        )
        after = model_state(model, (frozen_inputs,))
    assert_same_state(before, after)
    assert torch.equal(result, expected)


def test_model_created_in_inference_mode_is_refused_naming_inference_tensors():
    """torch refuses to record its inference-tensor parameters, and says so."""
    with torch.inference_mode():
        model = make_model()
    with pytest.raises(RuntimeError, match="Inference tensors cannot be saved"):
        IntegratedLayerGradCam(model, model.conv2).attribute(
            make_inputs(), target=1, n_steps=3
        )


class ModuleWrapper(nn.Module):
    """A DistributedDataParallel-like wrapper: the model as ``.module``."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, *args: Any) -> Any:
        return self.module(*args)


def _assert_wrapped_eval_model_is_explained_without_warning(
    model: ProbeNet, wrapped: nn.Module
) -> None:
    assert wrapped.training and not model.training
    inputs = make_inputs()
    expected = IntegratedLayerGradCam(model, model.conv2).attribute(
        inputs, target=[1, 4], n_steps=3
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = IntegratedLayerGradCam(wrapped, model.conv2).attribute(
            inputs, target=[1, 4], n_steps=3
        )
    assert torch.equal(result, expected)


@pytest.mark.parametrize("wrapper", [nn.DataParallel, ModuleWrapper])
def test_wrapped_eval_model_does_not_warn(wrapper: type[nn.Module]):
    model = make_model()
    _assert_wrapped_eval_model_is_explained_without_warning(model, wrapper(model))


@pytest.mark.skipif(not dist.is_gloo_available(), reason="needs the gloo backend")
def test_distributed_data_parallel_eval_model_does_not_warn(tmp_path):
    dist.init_process_group(
        "gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1
    )
    try:
        model = make_model()
        wrapped = nn.parallel.DistributedDataParallel(model)
        _assert_wrapped_eval_model_is_explained_without_warning(model, wrapped)
    finally:
        dist.destroy_process_group()


def test_wrapped_training_model_still_warns_at_the_caller():
    model = make_model().train()
    wrapped = nn.DataParallel(model.eval()).train()
    wrapped.module.relu2.train()
    with pytest.warns(UserWarning, match="^forward_func: the model is in training"):
        IntegratedLayerGradCam(wrapped, model.conv2).attribute(
            make_inputs(), target=0, n_steps=2
        )


class KeywordLayerNet(ProbeNet):
    """ProbeNet that passes conv2 its input by keyword."""

    def forward(self, x: Tensor) -> Tensor:
        hidden = self.conv2(input=self.relu1(self.conv1(x)))
        return self.fc(self.pool(self.relu2(hidden)).flatten(1))


def test_layer_input_given_by_keyword_is_refused_naming_the_parameter():
    model, inputs = make_model(KeywordLayerNet), make_inputs()
    igcam = IntegratedLayerGradCam(model, model.conv2)
    before = model_state(model, (inputs,))
    with pytest.raises(
        ValueError,
        match="^attribute_to_layer_input: expected the explained layer to receive "
        "its input as positional arguments",
    ):
        igcam.attribute(inputs, target=1, n_steps=3, attribute_to_layer_input=True)
    assert_same_state(before, model_state(model, (inputs,)))
    # The layer's output, and the input of a layer called positionally, work.
    plain = make_model()
    plain.load_state_dict(model.state_dict())
    for to_input, layer in ((False, "conv2"), (True, "fc")):
        expected = IntegratedLayerGradCam(plain, plain.get_submodule(layer)).attribute(
            inputs, target=1, n_steps=3, attribute_to_layer_input=to_input
        )
        result = IntegratedLayerGradCam(model, model.get_submodule(layer)).attribute(
            inputs, target=1, n_steps=3, attribute_to_layer_input=to_input
        )
        assert torch.equal(result, expected)
