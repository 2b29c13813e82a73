"""docs/api.md holds: its examples run against a real API (demo data, a worker) and
answer what the doc says (the lines marked `# →`), its table of userErrors codes is
every code the API raises, and its limits are the code's."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from graph import limits, relay
from merci import paging
from tests.conftest import ROOT, Service, create_database, drop_database, service_env, start_api

DOC = ROOT / "docs" / "api.md"


def section(name: str) -> str:
    text = DOC.read_text()
    start = text.index(f"<!-- {name}:")
    return text[start:text.index(f"<!-- /{name} -->")]


def raised_codes() -> set[str]:
    """Every code a UserError (or a partner batch's ItemError) is raised with."""
    found: set[str] = set()
    for package in ("merci", "api", "directory", "graph"):
        for path in (ROOT / package).rglob("*.py"):
            text = path.read_text()
            found |= set(re.findall(r'UserError\(\s*f?"([A-Z_]+)"', text))
            found |= set(re.findall(r'ItemError\([^)]*?"([A-Z_]{3,})"', text))
    return found


def test_the_user_error_codes_are_the_apis() -> None:
    documented = set(re.findall(r"^\| `([A-Z_]+)` \|", section("user-error-codes"), re.M))
    assert {"ALREADY_THIS_MONTH", "INVALID_HANDLE", "PASSWORD_TOO_SHORT"} <= raised_codes()  # the scan finds them
    assert documented == raised_codes(), (sorted(raised_codes() - documented), sorted(documented - raised_codes()))


def test_the_limits_are_the_codes() -> None:
    rows = dict(re.findall(r"^\| ([^|]+?) \| (\d+) \|$", section("limits"), re.M))
    assert rows == {"depth of an operation": str(limits.MAX_DEPTH),
                    "depth with introspection": str(limits.MAX_TOTAL_DEPTH),
                    "tokens in a document": str(limits.MAX_TOKENS), "aliases in a document": str(limits.MAX_ALIASES),
                    "page size (`first`, `last`)": str(relay.MAX_FIRST),
                    "`totalCount` counted up to": str(paging.COUNT_CAP)}


def examples() -> list[tuple[str, list[str]]]:
    """(the block's script, the lines its output must contain), in the doc's order."""
    blocks = re.findall(r"```sh\n(.*?)```", DOC.read_text(), re.S)
    return [(block, re.findall(r"^# → (.*)$", block, re.M)) for block in blocks]


@pytest.fixture(scope="module")
def merci_dev(server_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """What `merci dev` runs, on a database of its own: demo data, the API, a worker."""
    from merci.db import migrate

    dsn = create_database(server_url, "merci_doc")
    asyncio.run(migrate(dsn))
    tmp = tmp_path_factory.mktemp("doc")
    demo = subprocess.run([sys.executable, "-m", "runtime.cli", "demo"], env=service_env(dsn), cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert demo.returncode == 0, demo.stdout + demo.stderr
    api, base = start_api(dsn, tmp)
    worker = Service([sys.executable, "-m", "dramatiq", "workers", "--processes", "1", "--threads", "2"],
                     service_env(dsn), tmp / "worker.log")
    try:
        yield base, tmp
    finally:
        worker.stop()
        api.stop()
        drop_database(server_url, dsn)


def test_the_examples_answer_as_the_doc_says(merci_dev: tuple[str, Path]) -> None:
    base, tmp = merci_dev
    blocks = examples()
    assert len(blocks) >= 6 and sum(len(expected) for _, expected in blocks) >= 15
    # One shell for all, as a reader would run them: later blocks use what earlier ones set.
    script = "set -euo pipefail\n" + "".join(f"echo; echo '=====block {i}'\n{body}\n"
                                               for i, (body, _) in enumerate(blocks))
    run = subprocess.run(["bash", "-c", script], env={"PATH": "/usr/bin:/bin:/usr/local/bin", "MERCI": base},
                         cwd=tmp, capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    outputs = re.split(r"^=====block \d+\n", run.stdout, flags=re.M)[1:]
    assert len(outputs) == len(blocks)
    for (body, expected), output in zip(blocks, outputs, strict=True):
        for line in expected:
            assert line in output, (body, line, output[-2000:])
