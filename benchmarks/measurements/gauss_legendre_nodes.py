"""Time Captum takes to build its Gauss-Legendre points and weights.

Captum computes them with ``numpy.polynomial.legendre.leggauss``, an
eigenproblem of size ``n_steps`` (cubic time), once for the weights and once
for the points. ``IntegratedLayerGradCam`` and ``LayerSpaceIntegratedGradCam``
refuse ``method="gausslegendre"`` above ``MAX_GAUSS_LEGENDRE_STEPS`` steps;
this script prints the cost around that limit next to one forward pass of
ResNet-18 on one 224 x 224 image, measured in the same process.

Usage: ``python benchmarks/measurements/gauss_legendre_nodes.py``
"""

from __future__ import annotations

import time

import torch
import torchvision
from captum.attr._utils.approximation_methods import approximation_parameters

#: The most steps the classes accept with ``method="gausslegendre"``
#: (docs/guarantees.md, ``n_steps``).
MAX_GAUSS_LEGENDRE_STEPS = 1000


def seconds(function, *args) -> float:
    start = time.perf_counter()
    function(*args)
    return time.perf_counter() - start


def main() -> None:
    step_sizes, alphas = approximation_parameters("gausslegendre")
    model = torchvision.models.resnet18(weights=None).eval()
    image = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        model(image)
        forward = min(seconds(model, image) for _ in range(3))
    print(f"one ResNet-18 forward pass on one image: {forward:.3f} s")
    limit = MAX_GAUSS_LEGENDRE_STEPS
    for n_steps in (limit // 4, limit // 2, limit, 2 * limit):
        cost = seconds(lambda n: (step_sizes(n), alphas(n)), n_steps)
        mark = " (the limit)" if n_steps == limit else ""
        print(
            f"n_steps={n_steps}{mark}: points and weights in {cost:.2f} s, "
            f"{cost / forward:.0f} forward passes"
        )


if __name__ == "__main__":
    main()
