"""What an attribution call costs: its time and the peak memory it adds.

:func:`measured_call` runs one call and returns its output, its wall-clock
seconds and its peak memory above what was in use before it:

- on a CUDA device, the growth of the memory allocated by torch on it
  (``torch.cuda.max_memory_allocated`` after resetting the peak);
- on the CPU under Linux, the growth of the process's resident set to its
  high-water mark (``VmHWM``, reset through ``/proc/self/clear_refs``), as
  ``benchmarks/measurements/call_memory.py`` measures it;
- elsewhere (other systems, other devices, a ``/proc`` that refuses the
  reset): ``None``, not measurable.

Memory freed by an earlier call and reused by the allocator is not counted
as growth, so on the CPU the figure is a lower bound of what the call needs
on its own; it compares methods run in the same process on the same inputs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import torch

T = TypeVar("T")
_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def measured_call(
    call: Callable[[], T], device: torch.device | str
) -> tuple[T, float, float | None]:
    """Run ``call`` and measure it.

    Args:
        call (Callable): The attribution call, without arguments.
        device (torch.device or str): Where it computes.

    Returns:
        tuple: ``(output, seconds, peak_memory_mb)``; the memory is ``None``
        where it cannot be measured (see the module's text).

    Example::

        >>> maps, seconds, peak_mb = measured_call(lambda: gradcam(x, 3), "cpu")
    """
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        started = time.perf_counter()
        output = call()
        torch.cuda.synchronize(device)
        seconds = time.perf_counter() - started
        peak = torch.cuda.max_memory_allocated(device) - before
        return output, seconds, max(peak, 0) / 2**20
    before_mb = _reset_resident_peak() if device.type == "cpu" else None
    started = time.perf_counter()
    output = call()
    seconds = time.perf_counter() - started
    if before_mb is None:
        return output, seconds, None
    return output, seconds, max(_status_mb("VmHWM") - before_mb, 0.0)


def _reset_resident_peak() -> float | None:
    """Reset the resident-set peak to the current size; that size in MiB."""
    try:
        _CLEAR_REFS.write_text("5")
        return _status_mb("VmRSS")
    except (OSError, ValueError):
        return None


def _status_mb(key: str) -> float:
    for line in _STATUS.read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024  # kB
    raise ValueError(f"{_STATUS}: no {key} line")
