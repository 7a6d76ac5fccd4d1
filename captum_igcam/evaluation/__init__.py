"""Evaluation of attribution maps: metrics, data sources, the benchmark loop and
its statistics.

The loop's public names are re-exported here, so ``from captum_igcam import
evaluation; evaluation.evaluate(...)`` works without naming the module.
"""

from captum_igcam.evaluation.runner import (
    DEFAULT_METHODS,
    METRICS,
    EvaluationResult,
    MethodRecord,
    compare,
    evaluate,
    summarize,
    top1_accuracy,
)
from captum_igcam.evaluation.statistics import Estimate

__all__ = [
    "DEFAULT_METHODS",
    "METRICS",
    "Estimate",
    "EvaluationResult",
    "MethodRecord",
    "compare",
    "evaluate",
    "summarize",
    "top1_accuracy",
]
