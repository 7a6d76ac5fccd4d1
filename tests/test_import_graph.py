"""The package's modules import each other without a circle.

The graph is read from the source, every ``import`` counted, also those
inside functions (which only postpone a circle); imports under
``if TYPE_CHECKING:`` never run and are left out.
"""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path

import networkx as nx

ROOT = Path(__file__).resolve().parents[1]


def _module_names(root: Path, package: str) -> dict[str, Path]:
    """Dotted module name -> file, for every module of ``package``."""
    modules = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """The nodes of ``tree`` outside ``if TYPE_CHECKING:`` blocks."""
    nodes, stack = [], [tree]
    while stack:
        node = stack.pop()
        nodes.append(node)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))
    return nodes


def _imported(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package's modules that module ``name`` (file ``path``) imports."""
    found = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in _runtime_nodes(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([node.module] if node.module else []))
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                # ``from package import module`` imports the module; ``from
                # module import name`` imports the module holding the name.
                found.add(submodule if submodule in modules else base)
    return {module for module in found if module in modules and module != name}


def import_graph(root: Path, package: str) -> nx.DiGraph:
    """Module -> the package's modules it imports, read from the source.

    Args:
        root (Path): The folder holding the package.
        package (str): The package's name.

    Returns:
        networkx.DiGraph: An edge ``a -> b`` where module ``a`` imports ``b``.
    """
    modules = _module_names(root, package)
    graph = nx.DiGraph()
    graph.add_nodes_from(modules)
    for name, path in modules.items():
        graph.add_edges_from(
            (name, imported) for imported in _imported(name, path, modules)
        )
    return graph


def import_cycles(root: Path, package: str) -> list[list[str]]:
    """Each circle of imports, as its modules in import order."""
    return sorted(
        sorted(cycle) for cycle in nx.simple_cycles(import_graph(root, package))
    )


def test_the_package_imports_without_a_circle() -> None:
    assert import_cycles(ROOT, "captum_igcam") == []


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(textwrap.dedent(text), encoding="utf-8")


def test_a_circle_through_a_function_local_import_is_found(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/a.py": "from pkg.b import helper\n",
            "pkg/b.py": "def helper():\n    from pkg import a\n",
            "pkg/c.py": "from . import a\n",
        },
    )
    assert import_cycles(tmp_path, "pkg") == [["pkg.a", "pkg.b"]]


def test_type_checking_imports_and_the_parent_package_are_no_circle(
    tmp_path: Path,
) -> None:
    _write(
        tmp_path,
        {
            "pkg/__init__.py": "def load():\n    from pkg import a\n",
            "pkg/a.py": (
                "from typing import TYPE_CHECKING\n"
                "from pkg import b\n"
                "if TYPE_CHECKING:\n    from pkg.c import C\n"
            ),
            "pkg/b.py": "",
            "pkg/c.py": "from pkg.a import b\n",
        },
    )
    graph = import_graph(tmp_path, "pkg")
    assert sorted(graph.edges) == [
        ("pkg", "pkg.a"),
        ("pkg.a", "pkg.b"),
        ("pkg.c", "pkg.a"),
    ]
    assert import_cycles(tmp_path, "pkg") == []
