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
#: Memory one model pass of the benchmark may use, in MiB
#: (:func:`captum_igcam.evaluation.memory.chunk_sizes`).
DEFAULT_MEMORY_BUDGET_MB = 1536
