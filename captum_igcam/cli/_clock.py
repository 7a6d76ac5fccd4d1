"""How long the running command has taken, counted from its process's start.

The commands' final lines report this total beside the time of their main
loop, so that the start-up (importing torch and torchvision, loading the
model) is not left out; :func:`announce_start_up` says at once that it has
begun, so that the first seconds are not silent.
"""

from __future__ import annotations

import os
import sys
import time

#: When this module was imported: the fallback start where /proc is missing.
_IMPORTED = time.monotonic()


def seconds_since_start() -> float:
    """Seconds since this process started.

    On Linux the start is the kernel's record of it (``/proc/self/stat``,
    clock-tick precision), so it includes the interpreter's own start-up and
    every import; elsewhere it is counted from this module's import.

    Returns:
        float: Elapsed wall-clock seconds.

    Example::

        >>> seconds_since_start() > 0
        True
    """
    try:
        with open("/proc/self/stat", encoding="ascii") as handle:
            # Field 22 (starttime), counted after the ")" that ends field 2.
            fields = handle.read().rpartition(")")[2].split()
        started = int(fields[19]) / os.sysconf("SC_CLK_TCK")
        return time.clock_gettime(time.CLOCK_BOOTTIME) - started
    except (OSError, ValueError, IndexError, AttributeError):
        return time.monotonic() - _IMPORTED


def announce_start_up(model: str | None) -> None:
    """Tell the user, on stderr, that torch and the model are being loaded.

    Only the first process of a ``torchrun`` job (``RANK`` 0 or unset) prints.

    Args:
        model (str, optional): The ``--model`` value (None: the default).
    """
    if os.environ.get("RANK", "0") == "0":
        name = model or "the default model"
        print(f"loading torch and {name} ...", file=sys.stderr, flush=True)
