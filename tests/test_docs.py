"""The documentation: the API reference lists every public name, every public
object has a runnable Examples section, and the README's quickstart runs.

The ``__all__`` lists and the re-exports of ``skhydra/__init__.py`` are read
with ``ast`` rather than imported for the API reference check, which needs no
Sphinx.
"""

import ast
import importlib
import inspect
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "skhydra"
DOCS = ROOT / "docs"
MODULES = [
    "skhydra",
    *(
        f"skhydra.{m}"
        for m in [
            "ensembles",
            "metrics",
            "plotting",
            "uncertainty",
            "nn",
            "losses",
            "conformal",
            "card",
        ]
    ),
]

# Directives that document one object by its (possibly relative) name.
OBJECT_DIRECTIVE = re.compile(
    r"^\s*\.\. (?:py:)?(?:auto)?(?:class|function|data|attribute|exception)::\s+(\S+)"
)
CURRENT_MODULE = re.compile(r"^\s*\.\. (?:py:)?(?:current|auto)?module::\s+(\S+)")
AUTOSUMMARY = re.compile(r"^(\s*)\.\. autosummary::\s*$")


def module_path(module):
    path = PACKAGE.joinpath(*module.split(".")[1:])
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def parse(module):
    return ast.parse(module_path(module).read_text(encoding="utf-8"))


def public_names(module):
    for node in parse(module).body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
        ):
            return list(ast.literal_eval(node.value))
    raise AssertionError(f"{module} has no literal __all__")


def reexports():
    """``{"skhydra.name": "skhydra.module.name"}`` for ``from .module import name``."""
    aliases = {}
    for module in MODULES:
        for node in parse(module).body:
            if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module:
                for alias in node.names:
                    public = f"{module}.{alias.asname or alias.name}"
                    aliases[public] = f"{module}.{node.module}.{alias.name}"
    return aliases


def documented_names():
    """Fully qualified names that the reST pages of docs/ document."""
    names = set()
    for page in sorted(DOCS.glob("*.rst")):
        current = None
        in_autosummary, indent = False, None
        for line in page.read_text(encoding="utf-8").splitlines():
            if match := CURRENT_MODULE.match(line):
                current = match.group(1)
                in_autosummary = False
                continue
            if match := AUTOSUMMARY.match(line):
                in_autosummary, indent = True, len(match.group(1))
                continue
            if in_autosummary:
                stripped = line.strip()
                if not stripped or stripped.startswith(":"):
                    continue
                if len(line) - len(line.lstrip()) <= indent:
                    in_autosummary = False
                else:
                    names.add(qualify(stripped.lstrip("~"), current))
                    continue
            if match := OBJECT_DIRECTIVE.match(line):
                names.add(qualify(match.group(1), current))
    return names


def qualify(name, current):
    if name.startswith("skhydra") or current is None:
        return name
    return f"{current}.{name}"


def test_api_reference_exists():
    pages = [p.name for p in DOCS.glob("*.rst") if ".. autosummary::" in p.read_text()]
    assert pages, "no docs/*.rst page has an autosummary table"


@pytest.mark.parametrize("module", MODULES)
def test_public_names_are_documented(module):
    documented = documented_names()
    aliases = reexports()
    # A re-exported object documented under either of its names counts once.
    for public, origin in aliases.items():
        if public in documented or origin in documented:
            documented |= {public, origin}
    missing = [n for n in public_names(module) if f"{module}.{n}" not in documented]
    assert not missing, f"{module}.__all__ names missing from the API reference: {missing}"


def test_documented_names_are_public():
    # Catches entries left behind when a public name is renamed or removed.
    public = {f"{m}.{n}" for m in MODULES for n in public_names(m)} | set(reexports())
    stale = sorted(documented_names() - public)
    assert not stale, f"the API reference documents names that are not public: {stale}"


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


README = ROOT / "README.md"


def test_readme_quickstart_runs(capsys):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "the README has no python block"
    namespace = {}
    exec(compile(blocks[0], str(README), "exec"), namespace)
    out = capsys.readouterr().out
    assert "hydra accuracy" in out and "epistemic" in out
    hydra, forest = namespace["hydra"], namespace["forest"]
    X_test, y_test = namespace["X_test"], namespace["y_test"]
    assert hydra.score(X_test, y_test) >= forest.score(X_test, y_test) - 0.03
