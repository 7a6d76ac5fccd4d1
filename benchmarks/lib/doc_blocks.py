"""Generated blocks of the docs: Markdown rewritten from a committed results file.

A block sits between two marker comments::

    <!-- BEGIN generated:NAME -->
    ...
    <!-- END generated:NAME -->

The scripts that own a page rebuild every block's body from their results
file; the tests check that the committed page equals the page rebuilt from
the committed results, so that a figure cannot drift from its source.
"""

from __future__ import annotations

import re

BLOCK = re.compile(
    r"(<!-- BEGIN generated:(?P<name>[\w-]+) -->\n)(?P<body>.*?)"
    r"(<!-- END generated:(?P=name) -->)",
    re.S,
)


def names(text: str) -> list[str]:
    """The names of the generated blocks of ``text``, in order."""
    return [match["name"] for match in BLOCK.finditer(text)]


def render(text: str, generated: dict[str, str]) -> str:
    """``text`` with each generated block's body replaced (``(not run)`` when
    ``generated`` has nothing for it)."""

    def body(match: re.Match) -> str:
        content = generated.get(match["name"], "(not run)")
        return f"{match.group(1)}{content}\n{match.group(4)}"

    return BLOCK.sub(body, text)
