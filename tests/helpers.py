"""Models shared by several test files (import from here, not from conftest)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn
from torchvision.models import VisionTransformer


class TinyCNN(nn.Module):
    """A small CNN: conv -> relu -> conv -> relu -> pool -> linear."""

    def __init__(self, channels: int = 4, classes: int = 5) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, channels, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.relu2 = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu2(self.conv2(self.relu1(self.conv1(x))))
        return self.fc(self.pool(x).flatten(1))


def small_vit(classes: int = 5) -> VisionTransformer:
    """Two blocks on a 4 x 4 grid of 8 x 8 patches of a 32 x 32 image, float64."""
    vit = VisionTransformer(
        image_size=32,
        patch_size=8,
        num_layers=2,
        num_heads=2,
        hidden_dim=16,
        mlp_dim=32,
        num_classes=classes,
    )
    randomise_zero_head(vit)
    return vit.double().eval()


def randomise_zero_head(vit: VisionTransformer) -> None:
    # torchvision initialises the ViT head to zeros: every score would be
    # constant and every gradient zero.
    nn.init.normal_(vit.heads.head.weight, std=0.5)


# --------------------------------------------------------------------------
# ProbeNet: a TinyCNN that records its passes and fails on request.

N_EXAMPLES = 2
N_STEPS = 4
CLASSES = 5


class InjectedFailure(RuntimeError):
    """Raised on purpose inside the user's model."""


FailurePredicate = Callable[[list[int]], bool]


def nth_pass_with_batch(n: int, batch_size: int) -> FailurePredicate:
    """Fails the ``n``-th forward pass (1-based) that sees ``batch_size`` rows.

    The internal passes are told apart by their batch size, not by their
    order, so that the tests do not depend on how many passes a call makes.
    """

    def predicate(batch_sizes: list[int]) -> bool:
        return batch_sizes[-1] == batch_size and batch_sizes.count(batch_size) == n

    return predicate


class _FailingBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, tensor: Tensor) -> Tensor:
        return tensor.clone()

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        raise InjectedFailure("backward pass")


class ProbeNet(TinyCNN):
    """TinyCNN that records its passes and fails where a test asks it to.

    Args:
        fail_when: Called with the batch sizes of the passes so far (this one
                    last); the pass fails when it returns True.
        fail_where: ``"before_layer"``, ``"after_layer"`` (after conv2, whose
                    hook has switched grad mode on) or ``"grad_off"`` (the
                    model switches grad mode off itself, then fails).
        share_relu: Use ``relu1`` for both activations, so that ``relu1`` is
                    called twice per pass.
        fail_in_backward: Put an operation whose backward pass raises after
                    conv2.
    """

    def __init__(
        self,
        fail_when: FailurePredicate | None = None,
        fail_where: str = "after_layer",
        share_relu: bool = False,
        fail_in_backward: bool = False,
    ) -> None:
        super().__init__(classes=CLASSES)
        self.fail_when = fail_when
        self.fail_where = fail_where
        self.share_relu = share_relu
        self.fail_in_backward = fail_in_backward
        self.batch_sizes: list[int] = []

    def _maybe_fail(self, where: str, failing: bool) -> None:
        if failing and self.fail_where == where:
            if where == "grad_off":
                torch.set_grad_enabled(False)
            raise InjectedFailure(f"forward pass {len(self.batch_sizes)}, {where}")

    def forward(self, x: Tensor) -> Tensor:
        self.batch_sizes.append(x.shape[0])
        failing = self.fail_when is not None and self.fail_when(self.batch_sizes)
        self._maybe_fail("before_layer", failing)
        second_relu = self.relu1 if self.share_relu else self.relu2
        hidden = self.conv2(self.relu1(self.conv1(x)))
        self._maybe_fail("after_layer", failing)
        self._maybe_fail("grad_off", failing)
        if self.fail_in_backward:
            hidden = _FailingBackward.apply(hidden)
        return self.fc(self.pool(second_relu(hidden)).flatten(1))


class ScoreNet(ProbeNet):
    """One scalar per example: the score of class 0."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x)[:, 0]


class SumOfInputsNet(ProbeNet):
    """Two input tensors, added before the network."""

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        return super().forward(x + y)


class UnusedLayerNet(ProbeNet):
    def __init__(self) -> None:
        super().__init__()
        self.unused = nn.Conv2d(4, 4, 1)


def make_model(cls: type[ProbeNet] = ProbeNet, **kwargs: Any) -> ProbeNet:
    return cls(**kwargs).double().eval()


def make_inputs() -> Tensor:
    return torch.randn(N_EXAMPLES, 3, 8, 8, dtype=torch.float64)


# --------------------------------------------------------------------------
# The model's state, compared before and after a call.


def _hook_counts(obj: object) -> dict[str, int]:
    return {
        name: len(value)
        for name, value in vars(obj).items()
        if "hook" in name and isinstance(value, dict)
    }


def _global_hook_counts() -> dict[str, int]:
    return _hook_counts(torch.nn.modules.module)


def model_state(model: nn.Module, inputs: tuple[Tensor, ...]) -> dict[str, Any]:
    """Everything a call could change by mistake, in comparable form."""
    return {
        "grad_enabled": torch.is_grad_enabled(),
        "inference_mode": torch.is_inference_mode_enabled(),
        "training": [module.training for module in model.modules()],
        "module_hooks": [_hook_counts(module) for module in model.modules()],
        "global_hooks": _global_hook_counts(),
        "parameter_hooks": [
            (
                len(p._backward_hooks or {}),
                len(getattr(p, "_post_accumulate_grad_hooks", None) or {}),
            )
            for p in model.parameters()
        ],
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "grads_none": [p.grad is None for p in model.parameters()],
        "inputs_requires_grad": [inp.requires_grad for inp in inputs],
        "inputs_grads_none": [inp.grad is None for inp in inputs],
        "values": [t.detach().clone() for t in model.state_dict().values()]
        + [inp.detach().clone() for inp in inputs],
    }


def _assert_identical(old: Tensor, new: Tensor) -> None:
    if old.is_meta or new.is_meta:
        assert (old.shape, old.dtype, new.is_meta) == (new.shape, new.dtype, True)
    else:
        torch.testing.assert_close(new, old, rtol=0, atol=0, equal_nan=True)


def assert_same_state(before: dict[str, Any], after: dict[str, Any]) -> None:
    for key in before:
        if key == "values":
            assert len(before[key]) == len(after[key])
            for old, new in zip(before[key], after[key]):
                _assert_identical(old, new)
        else:
            assert after[key] == before[key], key


# --------------------------------------------------------------------------
# Captum's test harness. ``captum.testing`` ships from Captum 0.9 on; on 0.7
# and 0.8 (which kept it in their source tree's tests/) the stand-ins below
# provide the names tests/test_captum_harness.py uses: a seeded BaseTest, the
# tensor assertion, and the two models of Captum's Grad-CAM tests with the
# same layers and weights.
try:
    from captum.testing.helpers import BaseTest
    from captum.testing.helpers.basic import assertTensorAlmostEqual
    from captum.testing.helpers.basic_models import (
        BasicModel_ConvNet_One_Conv,
        BasicModel_MultiLayer,
    )
except ImportError:
    import unittest

    class BaseTest(unittest.TestCase):  # type: ignore[no-redef]
        def setUp(self) -> None:
            torch.manual_seed(1234)

    def assertTensorAlmostEqual(  # type: ignore[no-redef]  # noqa: N802
        test: unittest.TestCase,
        actual: Tensor,
        expected: Any,
        delta: float = 1e-4,
        mode: str = "sum",
    ) -> None:
        expected = torch.as_tensor(expected, dtype=actual.dtype)
        test.assertEqual(actual.shape, expected.shape)
        difference = (actual - expected).abs()
        total = difference.sum() if mode == "sum" else difference.max()
        test.assertAlmostEqual(total.item(), 0.0, delta=delta)

    def _fixed(linear: nn.Module, weight: Tensor, bias: Tensor) -> None:
        linear.weight = nn.Parameter(weight)
        linear.bias = nn.Parameter(bias)

    class _MultiRelu(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.relu1, self.relu2 = nn.ReLU(), nn.ReLU()

        def forward(self, a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
            return self.relu1(a), self.relu2(b)

    class BasicModel_MultiLayer(nn.Module):  # type: ignore[no-redef]  # noqa: N801
        def __init__(self, multi_input_module: bool = False) -> None:
            super().__init__()
            self.multi_input_module = multi_input_module
            self.linear0 = nn.Linear(3, 3)
            _fixed(self.linear0, torch.eye(3), torch.zeros(3))
            self.linear1 = nn.Linear(3, 4)
            self.linear1_alt = nn.Linear(3, 4)
            for linear in (self.linear1, self.linear1_alt):
                _fixed(linear, torch.ones(4, 3), torch.tensor([-10.0, 1, 1, 1]))
            self.multi_relu = _MultiRelu()
            self.relu = nn.ReLU()
            self.linear2 = nn.Linear(4, 2)
            _fixed(self.linear2, torch.ones(2, 4), torch.tensor([-1.0, 1.0]))

        def forward(self, x: Tensor, add_input: Tensor | None = None) -> Tensor:
            x = x if add_input is None else x + add_input
            hidden = self.linear1(self.linear0(x))
            if self.multi_input_module:
                first, second = self.multi_relu(hidden, self.linear1_alt(x))
                return self.linear2(first + second)
            return self.linear2(self.relu(hidden))

    class BasicModel_ConvNet_One_Conv(nn.Module):  # type: ignore[no-redef]  # noqa: N801
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(1, 2, 3, 1)
            _fixed(self.conv1, torch.ones(2, 1, 3, 3), torch.tensor([-50.0, -75.0]))
            self.relu1 = nn.ReLU()
            self.fc1 = nn.Linear(8, 4)
            weight = torch.cat([torch.ones(4, 5), -torch.ones(4, 3)], dim=1)
            _fixed(self.fc1, weight, torch.zeros(4))
            self.relu2 = nn.ReLU()

        def forward(self, x: Tensor, x2: Tensor | None = None) -> Tensor:
            x = x if x2 is None else x + x2
            return self.relu2(self.fc1(self.relu1(self.conv1(x)).view(-1, 8)))


def sha256_of(path: str | os.PathLike[str]) -> str:
    """A file's SHA-256, computed here as the reference for the product's."""
    with open(path, "rb") as file:
        return hashlib.sha256(file.read()).hexdigest()
