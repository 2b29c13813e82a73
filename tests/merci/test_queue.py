"""merci.queue: the queues by name, in one place."""

from __future__ import annotations

import ast

from merci.queue import QUEUES
from tests.conftest import ROOT


def queue_literals(source: str) -> list[str]:
    """Queue names written as strings: `queue_name="money"`, `X_QUEUE = "money"`."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.keyword) and node.arg == "queue_name":
            values = [node.value]
        elif isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id.endswith("QUEUE")
                                                  for t in node.targets):
            values = [node.value]
        else:
            continue
        found += [v.value for v in values if isinstance(v, ast.Constant) and v.value in QUEUES]
    return found


def test_queue_names_are_the_constants() -> None:
    sources = {str(p.relative_to(ROOT)): p.read_text() for part in ("merci", "api", "directory", "graph", "workers",
                                                                    "runtime") for p in (ROOT / part).rglob("*.py")}
    del sources["merci/queue.py"]
    assert {path: queue_literals(s) for path, s in sources.items() if queue_literals(s)} == {}
    assert queue_literals('send("a", queue_name="money")\nPAYOUT_QUEUE = "money"\n') == ["money", "money"]
