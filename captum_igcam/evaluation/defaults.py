"""The benchmark's defaults, importable without torch (for ``--help``)."""

from __future__ import annotations

# Memory one model pass may use: the application's default.
from captum_igcam.app.settings import DEFAULT_MEMORY_BUDGET_MB

#: Methods the benchmark compares unless told otherwise.
DEFAULT_METHODS = (
    "gradcam",
    "igcam",
    "igcam-paper",
    "igcam-layer",
    "layer-ig",
    "ig",
)
__all__ = ["DEFAULT_MEMORY_BUDGET_MB", "DEFAULT_METHODS"]
