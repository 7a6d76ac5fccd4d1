"""The Captum versions the package supports, and where it touches Captum's privates.

``.ci/run`` runs the core and interop tests once per supported Captum release
(0.7, 0.8, 0.9), each in its own virtual environment; these tests keep the
declared range, the compatibility module and the imports in step.
"""

from __future__ import annotations

import ast
from pathlib import Path

import captum
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


def test_compat_module_exports_every_name_it_imports() -> None:
    imported = {
        name.rsplit(".", 1)[1] for name in _private_captum_imports(COMPAT_MODULE)
    }
    assert imported <= set(_captum_compat.__all__)
    for name in _captum_compat.__all__:
        assert getattr(_captum_compat, name) is not None
