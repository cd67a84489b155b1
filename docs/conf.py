"""Sphinx configuration of the skhydra documentation.

Build the HTML, warnings as errors, from the repository root::

    python -m sphinx -W --keep-going -b html docs docs/_build/html
"""

import re
from pathlib import Path

import torch

import skhydra

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent

# The gallery runs every example in this process. Its networks are tiny, so on
# the project's 2-core machines a second torch thread only adds contention: the
# four examples ran in 13.6 s with one thread and 16.2 s with two (the
# benchmarks use one thread for the same reason). With one thread, the printed
# numbers and the execution times also do not depend on the machine's cores.
torch.set_num_threads(1)

project = "skhydra"
author = "skhydra developers"
copyright = "skhydra developers"
release = skhydra.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.extlinks",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
    "myst_parser",
]
# No intersphinx: the documentation builds offline, so references to numpy,
# scikit-learn, skorch or torch objects render as plain names instead of links.

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
templates_path = ["_templates"]
exclude_patterns = ["_build", "generated/backreferences"]

# The docstrings use the :arxiv: role of scikit-learn's documentation.
extlinks = {"arxiv": ("https://arxiv.org/abs/%s", "arXiv:%s")}

# API reference: one page per public object, generated from its docstring.
autosummary_generate = True
autodoc_typehints = "none"
autodoc_default_options = {"members": False}
# scikit-learn's convention: numpydoc renders the docstring sections, the class
# template in _templates/autosummary lists the methods, so numpydoc must not
# add its own (unlinked) table of members.
numpydoc_show_class_members = False
numpydoc_validation_checks = set()
numpydoc_xref_param_type = False

# The markdown pages (method.md, benchmarks.md) use plain CommonMark with tables.
myst_enable_extensions = ["dollarmath"]
myst_heading_anchors = 3


sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    # Shortest script first, so the gallery opens with the quick start.
    "within_subsection_order": "NumberOfCodeLinesSortKey",
    "doc_module": ("skhydra",),
    "backreferences_dir": "generated/backreferences",
    "reference_url": {"skhydra": None},
    "remove_config_comments": True,
    "show_memory": False,
}

html_theme = "pydata_sphinx_theme"
html_title = f"skhydra {release}"
html_theme_options = {
    "github_url": "https://github.com/skhydra/skhydra",
    "navbar_align": "left",
    "show_toc_level": 2,
    "navigation_with_keys": False,
}
html_context = {"default_mode": "light"}
html_static_path = []
html_show_sourcelink = False


# Docstrings inherited from scikit-learn (``score``) refer to labels of
# scikit-learn's user guide, which this offline build cannot link: keep the text.
_REF = re.compile(r":ref:`([^`<]+?)\s*(?:<[^`>]+>)?`")


def _unlink_sklearn_refs(app, what, name, obj, options, lines):
    if (getattr(obj, "__module__", None) or "").startswith("sklearn."):
        lines[:] = [_REF.sub(r"\1", line) for line in lines]


def setup(app):
    app.connect("autodoc-process-docstring", _unlink_sklearn_refs)
