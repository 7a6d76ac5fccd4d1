"""Evaluation of attribution maps: metrics, data sources, the benchmark loop,
its statistics, its result file (:mod:`.results`) and the sanity checks
(:mod:`.sanity`).

The loop's public names are available here, so ``from captum_igcam import
evaluation; evaluation.evaluate(...)`` works without naming the module. They
are imported on first use: ``captum_igcam.evaluation.defaults`` (what
``captum-igcam benchmark --help`` shows) needs neither torch nor Captum.
"""

from __future__ import annotations

import importlib
from typing import Any

from captum_igcam.evaluation.defaults import DEFAULT_METHODS

#: Public name -> the module defining it, imported on first access.
_LAZY = {
    "METRICS": "runner",
    "METRIC_FAMILIES": "runner",
    "BatchContext": "runner",
    "EvaluationResult": "runner",
    "Metric": "runner",
    "MetricFamily": "runner",
    "MethodRecord": "runner",
    "compare": "runner",
    "evaluate": "runner",
    "register_metric_family": "runner",
    "summarize": "runner",
    "top1_accuracy": "runner",
    "Estimate": "statistics",
}

#: Submodules reachable as attributes, e.g. ``evaluation.runner``.
_SUBMODULES = ("datasets", "metrics", "results", "runner", "sanity", "statistics")

__all__ = ["DEFAULT_METHODS", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = importlib.import_module(f"{__name__}.{_LAZY[name]}")
    return getattr(module, name)
