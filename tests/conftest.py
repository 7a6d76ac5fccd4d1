from __future__ import annotations

import pytest
import torch
from helpers import TinyCNN


@pytest.fixture(autouse=True)
def _seeded() -> None:
    torch.manual_seed(0)


@pytest.fixture
def tiny_cnn() -> TinyCNN:
    return TinyCNN().double().eval()
