"""No growth in live tensors or memory over many calls."""

from __future__ import annotations

import ctypes
import gc
import tracemalloc
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psutil
import pytest
import torch
from helpers import (
    CLASSES,
    N_EXAMPLES,
    ProbeNet,
)
from torch import Tensor, nn

from captum_igcam import IntegratedLayerGradCam

# --------------------------------------------------------------------------
# No growth in live tensors or memory over many calls.
#
# Memory is sampled after a warm-up and after each of two equal halves of
# the loop: the live tensors (exact), the Python heap (tracemalloc) and the C
# heap in use, where CPU tensors keep their data. These are current measures:
# a peak such as ru_maxrss cannot see growth below an earlier peak, and the
# resident set size cannot see memory that reuses pages freed by earlier
# tests. A leak grows them in both halves, while one-off caches fill during
# the warm-up and the first half, so the second half is held to a limit.


@dataclass(frozen=True)
class MemoryUse:
    live_tensors: int
    python_bytes: int
    native_bytes: int

    def __sub__(self, other: MemoryUse) -> MemoryUse:
        return MemoryUse(
            self.live_tensors - other.live_tensors,
            self.python_bytes - other.python_bytes,
            self.native_bytes - other.native_bytes,
        )


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


try:  # glibc >= 2.33
    _MALLINFO2 = ctypes.CDLL(None).mallinfo2
    _MALLINFO2.restype = _MallInfo2
except (AttributeError, OSError, TypeError):
    _MALLINFO2 = None


def _native_heap_bytes() -> int:
    """Bytes allocated on the C heap: glibc's mallinfo2 over all arenas plus
    mmapped blocks; the resident set size where mallinfo2 is missing."""
    if _MALLINFO2 is None:
        return psutil.Process().memory_info().rss
    info = _MALLINFO2()
    return info.uordblks + info.hblkhd


def _live_tensor_count() -> int:
    return sum(1 for obj in gc.get_objects() if issubclass(type(obj), Tensor))


def _memory_use() -> MemoryUse:
    gc.collect()
    return MemoryUse(
        _live_tensor_count(),
        tracemalloc.get_traced_memory()[0],
        _native_heap_bytes(),
    )


LEAK_CALLS = 100
LEAK_WARM_UP = 16
LEAK_SIZE = 16
LEAK_STEPS = 4
# One leaked float32 activation tensor of the path points every second call
# would be 2 examples x 4 steps x 4 channels x 16 x 16 x 4 bytes = 32 KiB,
# i.e. 1.6 MiB over LEAK_CALLS calls. Observed over the second half without
# a leak: 12 to 13 KiB of C heap and 5 to 7 KiB of Python heap (caches still
# filling, at a falling rate).
NATIVE_HEAP_GROWTH_LIMIT = 256 * 2**10
PYTHON_HEAP_GROWTH_LIMIT = 32 * 2**10


def memory_growth(run: Callable[[int], None]) -> tuple[MemoryUse, MemoryUse]:
    """Growth over each half of ``2 * LEAK_CALLS`` calls, after a warm-up."""
    run(LEAK_WARM_UP)
    tracing = tracemalloc.is_tracing()
    if not tracing:
        tracemalloc.start()
    try:
        start = _memory_use()
        run(LEAK_CALLS)
        middle = _memory_use()
        run(LEAK_CALLS)
        end = _memory_use()
    finally:
        if not tracing:
            tracemalloc.stop()
    return middle - start, end - middle


def repeated_calls() -> Callable[[int], None]:
    """Plain, chunked, whole-graph (layer called twice) and failing calls."""
    model = ProbeNet().eval()
    twice = ProbeNet(share_relu=True).eval()
    inputs = torch.randn(N_EXAMPLES, 3, LEAK_SIZE, LEAK_SIZE)
    variants: list[tuple[ProbeNet, nn.Module, dict[str, Any]]] = [
        (model, model.conv2, {"target": [1, 2]}),
        (model, model.conv2, {"internal_batch_size": 3, "attr_dim_summation": False}),
        (twice, twice.relu1, {"target": 3}),
        (model, model.conv2, {"target": [0, CLASSES + 4]}),
    ]

    def run(n_calls: int) -> None:
        for index in range(n_calls):
            net, layer, kwargs = variants[index % len(variants)]
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    IntegratedLayerGradCam(net, layer).attribute(
                        inputs, **{"target": 0, "n_steps": LEAK_STEPS, **kwargs}
                    )
            except ValueError:
                pass
            net.batch_sizes.clear()  # the probe's own record must not grow

    return run


def assert_no_growth(first_half: MemoryUse, second_half: MemoryUse) -> None:
    assert first_half.live_tensors <= 0, first_half
    assert second_half.live_tensors <= 0, second_half
    assert second_half.python_bytes < PYTHON_HEAP_GROWTH_LIMIT, second_half
    assert second_half.native_bytes < NATIVE_HEAP_GROWTH_LIMIT, second_half


def test_memory_growth_measure_notices_a_leak():
    """Every second call keeps one activation of the path points and 1 KiB."""
    model, leak = ProbeNet().eval(), []
    inputs = torch.randn(N_EXAMPLES * LEAK_STEPS, 3, LEAK_SIZE, LEAK_SIZE)

    def leaking_calls(n_calls: int) -> None:
        for index in range(n_calls):
            with torch.no_grad():
                activation = model.conv2(model.relu1(model.conv1(inputs)))
            if index % 2:
                leak.append((activation, bytes(1024)))

    first_half, second_half = memory_growth(leaking_calls)
    assert second_half.live_tensors >= LEAK_CALLS // 2
    assert second_half.python_bytes >= PYTHON_HEAP_GROWTH_LIMIT
    assert second_half.native_bytes >= NATIVE_HEAP_GROWTH_LIMIT
    with pytest.raises(AssertionError):
        assert_no_growth(first_half, second_half)


def test_repeated_calls_do_not_leak_tensors_or_memory():
    assert_no_growth(*memory_growth(repeated_calls()))
