"""Who may import whom (docs/architecture.md), read from the code itself: every import
of every module of the application's packages, at any depth (function-level imports
count), checked against one rule per arrow."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import ROOT

# Each part, and the parts it may import. Everything else it imports is a violation.
MAY_IMPORT: dict[str, frozenset[str]] = {
    "merci": frozenset(),  # the domain: rules, money, ledger, queries, the queue by actor name
    "graph": frozenset({"merci"}),  # GraphQL and HTTP plumbing both faces share
    "api": frozenset({"merci", "graph"}),  # a face never imports the other, nor the workers
    "directory": frozenset({"merci", "graph"}),
    "workers": frozenset({"merci"}),  # thin actors over the domain
    "runtime": frozenset({"merci", "graph", "api", "directory", "workers"}),  # the composition root
}
PARTS = frozenset(MAY_IMPORT)
# The domain is no web application: it knows neither GraphQL nor HTTP frameworks.
NOT_IN_THE_DOMAIN = frozenset({"strawberry", "graphql", "starlette", "uvicorn"})


def imported(source: str) -> set[str]:
    """The top-level names of every module `source` imports."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def violations(modules: dict[str, str]) -> list[str]:
    """`path: imports X` for each module (path -> source) that breaks the rules."""
    found = []
    for path, source in sorted(modules.items()):
        part = path.split("/")[0]
        for name in sorted(imported(source)):
            if name in PARTS and name != part and name not in MAY_IMPORT[part]:
                found.append(f"{path}: imports {name}")
            if part == "merci" and name in NOT_IN_THE_DOMAIN:
                found.append(f"{path}: imports {name} (the domain has no GraphQL or HTTP)")
    return found


def application() -> dict[str, str]:
    return {str(p.relative_to(ROOT)): p.read_text() for part in PARTS for p in (ROOT / part).rglob("*.py")}


def test_every_import_follows_the_rules() -> None:
    modules = application()
    assert len(modules) > 100 and {p.split("/")[0] for p in modules} == PARTS
    assert violations(modules) == []


def test_the_rules_catch_each_kind_of_violation() -> None:
    deliberate = {
        "api/x.py": "import directory.page\n",
        "directory/x.py": "def f():\n    from api.http import create_app\n",
        "merci/x.py": "from graph.errors import attempt\nimport strawberry\n",
        "workers/x.py": "from api.schema import build\n",
        "graph/x.py": "from runtime.faces import app\n",
        "api/y.py": "from merci import things\nfrom graph.relay import Connection\n",  # allowed
    }
    assert violations(deliberate) == [
        "api/x.py: imports directory",
        "directory/x.py: imports api",
        "graph/x.py: imports runtime",
        "merci/x.py: imports graph",
        "merci/x.py: imports strawberry (the domain has no GraphQL or HTTP)",
        "workers/x.py: imports api",
    ]


def test_nothing_imports_the_composition_root() -> None:
    outside = {p: s for p, s in application().items() if not p.startswith("runtime/")}
    assert [p for p, s in outside.items() if "runtime" in imported(s)] == []
    assert Path(ROOT / "runtime" / "__init__.py").exists()
