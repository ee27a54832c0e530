"""Sphinx configuration for the vi_vae documentation site.

Built with ``make docs`` (HTML in ``docs/_build/html``, warnings are errors) and
once per ``make test`` by ``tests/test_docs.py``. It never needs the network:
MathJax comes from the ``sphinx-mathjax-offline`` package of the ``docs`` extra,
and intersphinx uses only inventories found on disk.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
# the checkout being documented comes first, ahead of any installed vi_vae
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(DOCS / "_ext"))

import vi_vae  # noqa: E402

project = "vi_vae"
author = "the vi_vae developers"
copyright = "the vi_vae developers"
release = vi_vae.__version__
version = release

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.intersphinx",
    "sphinx.ext.viewcode",
    "vi_vae_api",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "_ext", "**/__pycache__"]
# every warning fails the build (-W), and so does every reference that does not resolve
nitpicky = True

# --- MyST (the Markdown pages) ---------------------------------------------------------
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3
myst_dmath_double_inline = True

# --- autodoc and napoleon (Google-style docstrings with `.. math::`) ---------------------
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_typehints_format = "short"
autodoc_preserve_defaults = True
autodoc_default_options = {"exclude-members": "__init__, __new__"}
autoclass_content = "both"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
napoleon_attr_annotations = True

# --- references to other projects --------------------------------------------------------
# There is no network in CI, so an inventory is used only when a copy is on disk: put
# NAME.inv (e.g. torch.inv) in docs/_inventories/ or in $VI_VAE_INTERSPHINX_DIR. Without
# it, references to that project are left as plain text (and exempt from nitpicky below).
INTERSPHINX_SITES = {
    "python": "https://docs.python.org/3/",
    "torch": "https://docs.pytorch.org/docs/stable/",
    "pyro": "https://docs.pyro.ai/en/stable/",
    "arviz": "https://python.arviz.org/en/stable/",
    "numpy": "https://numpy.org/doc/stable/",
}
INVENTORY_DIRS = [DOCS / "_inventories"]
if os.environ.get("VI_VAE_INTERSPHINX_DIR"):
    INVENTORY_DIRS.insert(0, Path(os.environ["VI_VAE_INTERSPHINX_DIR"]))
# Debian's python3-doc ships the standard library's inventory
SYSTEM_INVENTORIES = {"python": Path(f"/usr/share/doc/python{sys.version_info.major}/html")}


def _local_inventory(name: str) -> str | None:
    candidates = [directory / f"{name}.inv" for directory in INVENTORY_DIRS]
    if name in SYSTEM_INVENTORIES:
        candidates.append(SYSTEM_INVENTORIES[name] / "objects.inv")
    return next((str(path) for path in candidates if path.is_file()), None)


intersphinx_mapping = {
    name: (url, inventory)
    for name, url in INTERSPHINX_SITES.items()
    if (inventory := _local_inventory(name)) is not None
}
intersphinx_timeout = 1
# Python references outside vi_vae resolve through intersphinx when an inventory is
# there; otherwise they are plain text, not errors. References into vi_vae must resolve.
nitpick_ignore_regex = [(r"py:.*", r"(?!vi_vae(\.|$)).*")]
# --- MathJax, offline ----------------------------------------------------------------
MATHJAX_PACKAGE = "sphinx-mathjax-offline"  # its wheel ships MathJax 3 in static/mathjax
_mathjax_spec = importlib.util.find_spec(MATHJAX_PACKAGE)
if _mathjax_spec is None or not _mathjax_spec.submodule_search_locations:
    raise RuntimeError(
        f"{MATHJAX_PACKAGE} is not installed: pip install -e '.[docs]' (the docs extra)"
    )
MATHJAX_STATIC = Path(next(iter(_mathjax_spec.submodule_search_locations))) / "static"
mathjax_path = "mathjax/tex-chtml.js"
mathjax3_config = {"tex": {"tags": "ams"}}

# --- HTML ------------------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = f"vi_vae {release}"
html_static_path = ["_static", str(MATHJAX_STATIC)]
html_css_files = ["vi_vae.css"]
# pages without sub-pages get no left-hand navigation column
html_sidebars = {page: [] for page in ("index", "getting-started", "glossary", "gallery/index")}
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "header_links_before_dropdown": 7,
    "navbar_align": "left",
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version"],
    "secondary_sidebar_items": ["page-toc", "sourcelink"],
}
html_show_sourcelink = True
html_last_updated_fmt = None
