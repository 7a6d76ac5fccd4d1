"""The Captum versions the package supports, and where it touches Captum's privates.

``.ci/run`` runs the core and interop tests once per supported Captum release
(0.7, 0.8, 0.9), each in its own virtual environment; these tests keep the
declared range, the compatibility module and the imports in step.
"""

from __future__ import annotations

import ast
import importlib
import os
import subprocess
import sys
from pathlib import Path

import captum
import pytest
import torch
from packaging.requirements import Requirement
from packaging.version import Version

import captum_igcam
from captum_igcam import _captum_compat

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the test extra installs tomli
    import tomli as tomllib

PACKAGE = Path(captum_igcam.__file__).parent
PYPROJECT = PACKAGE.parent / "pyproject.toml"
COMPAT_MODULE = PACKAGE / "_captum_compat.py"


def _captum_requirement() -> Requirement:
    project = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]
    (requirement,) = [
        Requirement(line)
        for line in project["dependencies"]
        if Requirement(line).name == "captum"
    ]
    return requirement


def _private_captum_imports(path: Path) -> list[str]:
    """``module.name`` for each private Captum name imported by ``path``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
            "captum."
        ):
            private_module = any(p.startswith("_") for p in node.module.split("."))
            found += [
                f"{node.module}.{alias.name}"
                for alias in node.names
                if private_module or alias.name.startswith("_")
            ]
    return found


def test_declared_range_is_exactly_the_supported_releases() -> None:
    specifier = _captum_requirement().specifier
    for major, minor in _captum_compat.SUPPORTED_CAPTUM:
        assert Version(f"{major}.{minor}.0") in specifier
    oldest = min(_captum_compat.SUPPORTED_CAPTUM)
    newest = max(_captum_compat.SUPPORTED_CAPTUM)
    assert Version(f"{oldest[0]}.{oldest[1] - 1}.9") not in specifier
    assert Version(f"{newest[0]}.{newest[1] + 1}.0") not in specifier


def test_installed_captum_is_a_supported_release() -> None:
    installed = Version(captum.__version__).release[:2]
    assert installed in _captum_compat.SUPPORTED_CAPTUM
    assert Version(captum.__version__) in _captum_requirement().specifier


def test_private_captum_names_are_imported_only_by_the_compat_module() -> None:
    offenders = {
        str(path.relative_to(PACKAGE)): names
        for path in sorted(PACKAGE.rglob("*.py"))
        if path != COMPAT_MODULE and (names := _private_captum_imports(path))
    }
    assert offenders == {}
    # ... and the compat module does import them (the scan is not blind).
    assert "captum._utils.common._run_forward" in _private_captum_imports(COMPAT_MODULE)


def test_compat_module_reexports_every_name_it_imports() -> None:
    """Each Captum name is re-exported explicitly (``import x as x``) and is
    there to be found."""
    tree = ast.parse(COMPAT_MODULE.read_text(encoding="utf-8"))
    aliases = [
        alias
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module.startswith("captum.")
        for alias in node.names
    ]
    assert len(aliases) > 5
    exported = vars(_captum_compat)
    for alias in aliases:
        assert alias.asname == alias.name, alias.name  # re-exported as is
        assert exported.get(alias.name) is not None, alias.name


def _plugin_private_imports(path: Path) -> list[str]:
    """Private plugin modules (``captum_igcam._x``) imported by ``path``, and
    names it imports from a public plugin module that are not in its ``__all__``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        modules = (
            [node.module or ""]
            if isinstance(node, ast.ImportFrom)
            else [alias.name for alias in node.names]
            if isinstance(node, ast.Import)
            else []
        )
        if isinstance(node, ast.ImportFrom) and node.module == "captum_igcam":
            modules += [f"captum_igcam.{alias.name}" for alias in node.names]
        found += [
            name
            for name in modules
            if name.startswith("captum_igcam.")
            and name.split(".")[1].startswith("_")
            and not name.split(".")[1].startswith("__")
        ]
        # A public plugin module's names outside its __all__ are its own.
        parts = (
            (node.module or "").split(".") if isinstance(node, ast.ImportFrom) else []
        )
        if parts[:1] == ["captum_igcam"] and len(parts) == 2:
            if (PACKAGE / f"{parts[1]}.py").is_file():
                public = importlib.import_module(node.module).__all__
                found += [
                    f"{node.module}.{alias.name}"
                    for alias in node.names
                    if alias.name not in public
                ]
    return found


def test_the_application_uses_only_the_plugins_public_names() -> None:
    outside = [
        path
        for path in PACKAGE.rglob("*.py")
        if path.parent != PACKAGE  # app, evaluation, dataset_job, cli
    ]
    assert outside
    offenders = {
        str(path.relative_to(PACKAGE)): imports
        for path in outside
        if (imports := _plugin_private_imports(path))
    }
    assert offenders == {}


def test_importing_and_calling_the_plugin_adds_no_module_beyond_captums() -> None:
    """In a fresh interpreter: after ``import torch, captum.attr`` (which loads
    Captum's visualisation, matplotlib included), importing the plugin and
    calling both classes adds the plugin's own modules and ``numpy.polynomial``
    (which Captum's Gauss-Legendre rule imports inside the call), nothing else:
    no ``torch._dynamo`` (and its ~900 modules) without a compiled model, and
    no module of the application."""
    script = (
        "import sys, torch, captum.attr\n"
        "before = set(sys.modules)\n"
        "from captum_igcam import IntegratedLayerGradCam, LayerSpaceIntegratedGradCam\n"
        "net = torch.nn.Sequential(\n"
        "    torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(),\n"
        "    torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),\n"
        "    torch.nn.Linear(4, 2)).eval()\n"
        "x = torch.randn(2, 3, 8, 8)\n"
        "for cls in (IntegratedLayerGradCam, LayerSpaceIntegratedGradCam):\n"
        "    cls(net, net[0]).attribute(x, target=1, n_steps=3)\n"
        "print(sorted(set(sys.modules) - before))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(PACKAGE.parent)},
    )
    added = ast.literal_eval(result.stdout.strip().splitlines()[-1])
    ours = [name for name in added if name.split(".")[0] == "captum_igcam"]
    captums = [name for name in added if name.startswith("numpy.polynomial")]
    assert sorted(set(added) - set(ours) - set(captums)) == []
    ours.remove("captum_igcam")
    assert ours == sorted(
        f"captum_igcam.{module}"
        for module in (
            "_captum_compat",
            "_checks",
            "_layer_hook",
            "_path",
            "integrated_grad_cam",
            "layer_space_grad_cam",
            "reshapes",
        )
    )


def test_no_plugin_module_imports_matplotlib() -> None:
    paths = sorted(PACKAGE.glob("*.py"))
    assert {"__init__.py", "_path.py", "targets.py"} <= {path.name for path in paths}
    for path in paths:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        imported = [
            alias.name
            for node in ast.walk(tree)
            if isinstance(node, ast.Import)
            for alias in node.names
        ] + [
            node.module or ""
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom)
        ]
        assert not [name for name in imported if name.startswith("matplotlib")], path


def test_grad_kwargs_before_captum_08_is_refused_naming_the_release(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from captum_igcam import ReshapedLayerGradCam

    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(), torch.nn.Linear(144, 2)
    )
    inputs = torch.randn(2, 3, 8, 8)
    monkeypatch.setattr(_captum_compat, "HAS_GRAD_KWARGS", False)
    plain = ReshapedLayerGradCam(net, net[0]).attribute(inputs, target=1)
    assert plain.shape == (2, 1, 6, 6)
    with pytest.raises(ValueError, match="^grad_kwargs: expected None before Captum"):
        ReshapedLayerGradCam(net, net[0]).attribute(
            inputs, target=1, grad_kwargs={"retain_graph": True}
        )
