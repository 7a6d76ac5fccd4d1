"""Sphinx configuration of the documentation site.

Build it from the repository root::

    pip install -e ".[docs]"
    sphinx-build -W -b html -c docs . docs/_build/html

The source folder is the repository root, so that the README, the guides in
``docs/``, the results page and the tutorials' index are one site whose
relative links work as they do on GitHub; ``include_patterns`` picks those
pages, and the API reference (``docs/api.md``) is rendered from the
docstrings by autodoc.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import captum_igcam  # noqa: E402

project = "captum-igcam"
author = "captum_igcam developers"
copyright = "captum_igcam developers"  # noqa: A001
release = version = captum_igcam.__version__

root_doc = "docs/index"
include_patterns = [
    "README.md",
    "CHANGELOG.md",
    "docs/*.md",
    "docs/images/*",
    "benchmarks/README.md",
    "benchmarks/RESULTS.md",
    "benchmarks/studies/variant_study.md",
    "tutorials/README.md",
]
exclude_patterns = ["docs/_build"]

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.intersphinx",
    "sphinx.ext.viewcode",
]
source_suffix = {".md": "markdown"}
myst_enable_extensions = ["colon_fence"]
myst_heading_anchors = 3
# Some guides start at level 2 (they are also sections of other pages).
suppress_warnings = ["myst.header"]

# Captum-style docstrings: "Args:" sections with the type in parentheses.
napoleon_google_docstring = True
napoleon_numpy_docstring = False
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True}

# Offline by default: the links to Python's, torch's and Captum's references
# are added with `-D intersphinx_disabled_reftypes=` where the network is up.
intersphinx_mapping: dict[str, tuple[str, str | None]] = {}
# Type names in signatures that autodoc cannot resolve offline.
nitpicky = False

html_theme = "alabaster"
html_title = f"captum-igcam {release}"
