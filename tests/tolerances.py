"""The error measure and the tolerances that docs/guarantees.md states.

Errors are measured relative to the largest magnitude of the expected map,
``max |actual - expected| / max |expected|``: a map's values are compared
with its peak, which is what a heat map shows. (Element-wise relative error
is meaningless near the zeros that the per-step ReLU produces.)
"""

from __future__ import annotations

import torch

# Against the naive float64 reference, and between batchings of one call.
FLOAT64_TOLERANCE = 1e-7
# A model and inputs cast to a narrower dtype, against the float64 map.
DTYPE_TOLERANCES = {
    torch.float64: FLOAT64_TOLERANCE,
    torch.float32: 1e-4,
    torch.bfloat16: 1e-1,
}


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """``max |actual - expected| / max |expected|``, in float64."""
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    actual, expected = actual.detach().double(), expected.detach().double()
    scale = expected.abs().max().clamp(min=1e-30)
    return float((actual - expected).abs().max() / scale)


def assert_close_to(
    actual: torch.Tensor, expected: torch.Tensor, tolerance: float = FLOAT64_TOLERANCE
) -> None:
    error = relative_error(actual, expected)
    assert error <= tolerance, f"relative error {error:.3g} > {tolerance:.3g}"
