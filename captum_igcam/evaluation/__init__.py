"""Evaluation of attribution maps: metrics, data sources, the benchmark loop and
its statistics.

The loop's public names are re-exported here, so ``from captum_igcam import
evaluation; evaluation.evaluate(...)`` works without naming the module.
"""

from captum_igcam.evaluation.runner import (
    DEFAULT_METHODS,
    EvaluationResult,
    MethodRecord,
    compare,
    evaluate,
    summarize,
)

__all__ = [
    "DEFAULT_METHODS",
    "EvaluationResult",
    "MethodRecord",
    "compare",
    "evaluate",
    "summarize",
]
