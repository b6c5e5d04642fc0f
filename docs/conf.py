"""Sphinx configuration: `sphinx-build -W --keep-going -b html docs docs/_build/html`
(README, "Documentation"; `sphinx-build`, not `python -m sphinx`, so that the
installed csoftmax is documented, never the uncompiled source tree).  API pages
come from the numpydoc docstrings (napoleon); the guide pages are MyST Markdown
whose code blocks tests/test_examples.py runs."""
import importlib.util

import csoftmax

project = "csoftmax"
author = "csoftmax developers"
copyright = "csoftmax developers"
release = csoftmax.__version__
version = release

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx-mathjax-offline",     # MathJax served from _static: math renders offline
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]
myst_enable_extensions = ["dollarmath", "colon_fence"]
myst_heading_anchors = 3

# numpydoc-style docstrings; signatures without the type hints (the
# Parameters sections say the same, in words)
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False
autodoc_typehints = "none"
autodoc_member_order = "bysource"
autodoc_default_options = {"members": True}

# The adapters' API pages document csoftmax.torch / .jax / .dask even where
# the framework is not installed (the import is mocked then).
autodoc_mock_imports = [m for m in ("torch", "jax", "dask")
                        if importlib.util.find_spec(m) is None]

html_theme = "furo"
html_title = f"csoftmax {release}"
html_static_path = []
