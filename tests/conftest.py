from __future__ import annotations

import os

import pytest
import torch
from helpers import TinyCNN


def pytest_configure(config: pytest.Config) -> None:
    """Share the cores among pytest-xdist's workers.

    Each of ``-n N`` workers (and each command line it starts) gets
    ``cpu_count // N`` torch threads, so that N workers on N cores run side by
    side instead of contending for every core each.
    """
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if workers is None:
        return
    threads = max(1, (os.cpu_count() or 1) // int(workers))
    torch.set_num_threads(threads)
    os.environ["OMP_NUM_THREADS"] = str(threads)


@pytest.fixture(autouse=True)
def _seeded() -> None:
    torch.manual_seed(0)


@pytest.fixture
def tiny_cnn() -> TinyCNN:
    return TinyCNN().double().eval()
