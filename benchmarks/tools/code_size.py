"""Counts the plugin's code lines: not blank, not a comment, not a docstring.

Usage: ``python benchmarks/tools/code_size.py [DIRECTORY]`` (default: the plugin's
top-level modules, ``captum_igcam/*.py``). Prints one line per file and the
total: its code lines, and how many of them are the statements that refuse or
warn (``raise ...`` and ``warnings.warn(...)``, message text included), the
part of the code that the guarantees' error messages take.
"""

from __future__ import annotations

import ast
import io
import sys
import tokenize
from pathlib import Path


def docstring_lines(tree: ast.AST) -> set[int]:
    """Line numbers covered by module, class and function docstrings."""
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(
            node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
        ):
            body = node.body
            if (
                body
                and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)
            ):
                lines.update(range(body[0].lineno, body[0].end_lineno + 1))
    return lines


def code_lines(source: str) -> int:
    """Lines holding at least one token that is not a comment or docstring."""
    skipped = docstring_lines(ast.parse(source))
    ignored = {
        tokenize.COMMENT,
        tokenize.NL,
        tokenize.NEWLINE,
        tokenize.INDENT,
        tokenize.DEDENT,
        tokenize.ENDMARKER,
    }
    lines: set[int] = set()
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type in ignored:
            continue
        for line in range(token.start[0], token.end[0] + 1):
            if line not in skipped:
                lines.add(line)
    return len(lines)


def refusal_lines(source: str) -> int:
    """Code lines of ``raise`` statements and ``warnings.warn(...)`` calls."""
    lines: set[int] = set()
    for node in ast.walk(ast.parse(source)):
        is_warning = (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "warn"
        )
        if isinstance(node, ast.Raise) or is_warning:
            lines.update(range(node.lineno, node.end_lineno + 1))
    return len(lines)


def main(directory: str = "captum_igcam") -> None:
    totals = [0, 0]
    files = sorted(Path(directory).glob("*.py"))
    print("  code  refusals  file")
    for path in files:
        source = path.read_text(encoding="utf-8")
        counts = (code_lines(source), refusal_lines(source))
        totals = [total + count for total, count in zip(totals, counts)]
        print(f"{counts[0]:6d}  {counts[1]:8d}  {path}")
    print(f"{totals[0]:6d}  {totals[1]:8d}  total in {len(files)} files")


if __name__ == "__main__":
    main(*sys.argv[1:])
