"""The benchmark's defaults, importable without torch (for ``--help``)."""

from __future__ import annotations

#: Methods the benchmark compares unless told otherwise.
DEFAULT_METHODS = (
    "gradcam",
    "igcam",
    "igcam-paper",
    "igcam-layer",
    "layer-ig",
    "ig",
)
