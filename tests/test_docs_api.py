"""Every public name is in the API reference of the documentation (docs/*.rst).

The ``__all__`` lists and the re-exports of ``skhydra/__init__.py`` are read
with ``ast`` rather than imported, so this runs in well under a second (importing
skhydra imports torch) and needs no Sphinx.
"""

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "skhydra"
DOCS = ROOT / "docs"
MODULES = [
    "skhydra",
    *(f"skhydra.{m}" for m in ["ensembles", "metrics", "plotting", "uncertainty", "nn", "losses"]),
]

# Directives that document one object by its (possibly relative) name.
OBJECT_DIRECTIVE = re.compile(
    r"^\s*\.\. (?:py:)?(?:auto)?(?:class|function|data|attribute|exception)::\s+(\S+)"
)
CURRENT_MODULE = re.compile(r"^\s*\.\. (?:py:)?(?:current|auto)?module::\s+(\S+)")
AUTOSUMMARY = re.compile(r"^(\s*)\.\. autosummary::\s*$")


def module_path(module):
    parts = module.split(".")[1:]
    return PACKAGE.joinpath(*parts[:-1], parts[-1] + ".py") if parts else PACKAGE / "__init__.py"


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
    for node in parse("skhydra").body:
        if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module:
            for alias in node.names:
                public = f"skhydra.{alias.asname or alias.name}"
                aliases[public] = f"skhydra.{node.module}.{alias.name}"
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
