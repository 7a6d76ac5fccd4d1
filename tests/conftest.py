from __future__ import annotations

import functools
import os
from collections.abc import Callable

import pytest
import torch
from helpers import TinyCNN
from torch import nn


def pytest_configure(config: pytest.Config) -> None:
    """Share the cores among pytest-xdist's workers.

    Each of ``-n N`` workers (and each command line it starts) gets
    ``cores // N`` torch threads, ``cores`` being those this process may run
    on, so that the workers run side by side instead of each contending for
    every core.
    """
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if workers is None:
        return
    cores = (
        len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else os.cpu_count() or 1
    )
    threads = max(1, cores // int(workers))
    torch.set_num_threads(threads)
    os.environ["OMP_NUM_THREADS"] = str(threads)


@pytest.fixture(autouse=True)
def _seeded() -> None:
    torch.manual_seed(0)


@pytest.fixture
def tiny_cnn() -> TinyCNN:
    return TinyCNN().double().eval()


@pytest.fixture(scope="session")
def lite0():
    """The embedded EfficientNet-Lite0's ``ModelBundle``, loaded once per test
    process.

    Shared by every test that asks for it: use it read-only (the plugin
    leaves the model unchanged; a test that changes it must load its own).
    """
    from captum_igcam.app import models

    return models.load_model()


@pytest.fixture(scope="session")
def random_torchvision_model() -> Callable[..., nn.Module]:
    """``build(name, **kwargs)``: torchvision's ``name`` with random weights,
    float64, in eval mode, built once per test process for each arguments.

    Random initialisation is most of the cost of a large torchvision model in
    a test (VGG's classifier, DenseNet's blocks); the same seed makes the
    weights the same whichever test builds the model first. Use the model
    read-only.
    """
    import torchvision

    @functools.cache
    def build(name: str, **kwargs) -> nn.Module:
        with torch.random.fork_rng():
            torch.manual_seed(0)
            model = torchvision.models.get_model(name, weights=None, **kwargs)
        return model.double().eval()

    return build
