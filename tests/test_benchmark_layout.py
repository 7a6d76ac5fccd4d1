"""benchmarks/ as the docs describe it: every file they name is there, and
the scripts' copies of the package's limits are the package's."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest
import torch

from captum_igcam import IntegratedLayerGradCam

ROOT = Path(__file__).resolve().parents[1]


def test_every_benchmarks_path_the_product_names_exists() -> None:
    """Docs, notebooks, scripts and tests name benchmark files that are there."""
    pattern = re.compile(r"benchmarks/[\w./-]+\.(?:py|json|md|sh|gz)\b")
    texts = [
        ROOT / "README.md",
        *(ROOT / "docs").glob("*.md"),
        *(ROOT / "benchmarks").rglob("*.md"),
        *(ROOT / "benchmarks").rglob("*.py"),
        *(ROOT / "tutorials").glob("*"),
        *(ROOT / "tests").glob("*.py"),
        ROOT / ".ci" / "run",
    ]
    missing = {
        f"{path.relative_to(ROOT)}: {name}"
        for path in texts
        if path.is_file()
        for name in pattern.findall(path.read_text())
        if not (ROOT / name).exists()
    }
    assert missing == set()


def test_the_gauss_legendre_script_times_the_classes_limit() -> None:
    path = ROOT / "benchmarks" / "measurements" / "gauss_legendre_nodes.py"
    spec = importlib.util.spec_from_file_location("gauss_legendre_nodes", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    limit = script.MAX_GAUSS_LEGENDRE_STEPS
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 2, 1), torch.nn.Flatten(), torch.nn.Linear(8, 2)
    ).eval()
    explainer = IntegratedLayerGradCam(model, model[0])
    image = torch.rand(1, 1, 2, 2)
    assert explainer.attribute(image, target=0, n_steps=limit).shape == (1, 1, 2, 2)
    with pytest.raises(ValueError, match="n_steps"):
        explainer.attribute(image, target=0, n_steps=limit + 1)
