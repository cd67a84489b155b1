"""Every public object has a numpydoc docstring with an Examples section (run as a doctest)."""

import importlib
import inspect

import pytest

MODULES = [
    "skhydra",
    "skhydra.ensembles",
    "skhydra.losses",
    "skhydra.metrics",
    "skhydra.nn",
    "skhydra.plotting",
    "skhydra.uncertainty",
]

PUBLIC = [
    (module, name)
    for module in MODULES
    for name in importlib.import_module(module).__all__
    if name != "__version__"
]


@pytest.mark.parametrize("module, name", PUBLIC, ids=[f"{m}.{n}" for m, n in PUBLIC])
def test_public_object_has_examples(module, name):
    doc = inspect.getdoc(getattr(importlib.import_module(module), name)) or ""
    assert "Examples\n--------\n>>> " in doc, f"{module}.{name} has no Examples section"
