"""Advisory lock ids live in merci/locks.py: the migrations' SQL, which cannot import
it, writes the same numbers, and no Python module writes one of its own."""

from __future__ import annotations

import ast
import re

from merci import locks
from tests.conftest import ROOT

ONE_KEY = {"MIGRATIONS": locks.MIGRATIONS, "RANKINGS": locks.RANKINGS}
TWO_KEY_SPACES = {"MONTH": locks.MONTH, "CLOSE_SHARD": locks.CLOSE_SHARD, "OWNERSHIP": locks.OWNERSHIP[0]}
LOCK_CALL = re.compile(r"pg_(?:try_)?advisory_(?:xact_)?(?:un)?lock(?:_shared)?\s*\(([^()]*)\)", re.IGNORECASE)


def sql_locks(text: str) -> list[tuple[int, ...]]:
    """The literal keys of every advisory lock call in SQL text (calls with expressions are skipped)."""
    found = []
    for args in LOCK_CALL.findall(text):
        parts = [a.strip() for a in args.split(",")]
        if all(p.isdigit() for p in parts):
            found.append(tuple(int(p) for p in parts))
    return found


def test_the_ids_are_distinct_in_each_space() -> None:
    assert len(set(ONE_KEY.values())) == len(ONE_KEY)
    assert len(set(TWO_KEY_SPACES.values())) == len(TWO_KEY_SPACES)


def test_the_migrations_write_the_constants() -> None:
    found = {p.name: sql_locks(p.read_text()) for p in sorted((ROOT / "merci" / "sql").glob("*.sql"))}
    assert found["0015_ownership.sql"] == [locks.OWNERSHIP] * 3  # the positive control
    known = {(v,) for v in ONE_KEY.values()} | {locks.OWNERSHIP}
    assert {name: keys for name, keys in found.items() if set(keys) - known} == {}
    assert sql_locks("select pg_advisory_xact_lock(7310006, 0)") == [(7310006, 0)]


def bare_ids(source: str) -> list[int]:
    """Integers in Merci's lock range written in Python source."""
    return [n.value for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Constant)
            and type(n.value) is int and 7_310_000 <= n.value < 7_311_000]


def test_no_module_writes_a_lock_id_of_its_own() -> None:
    sources = {str(p.relative_to(ROOT)): p.read_text() for part in ("merci", "api", "directory", "graph", "workers",
                                                                    "runtime") for p in (ROOT / part).rglob("*.py")}
    assert bare_ids(sources.pop("merci/locks.py"))  # the one place they are written
    assert {path: bare_ids(source) for path, source in sources.items() if bare_ids(source)} == {}
    assert bare_ids("LOCK = 73_100_04\n") == [7_310_004]


def test_sql_in_python_takes_locks_by_parameter() -> None:
    for path in (ROOT / "merci").rglob("*.py"):
        assert sql_locks(path.read_text()) == [], path
