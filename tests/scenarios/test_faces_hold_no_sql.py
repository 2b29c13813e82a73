"""Faces call domain functions; they do not write SQL (docs/architecture.md). Read from
the code itself: no module of api/, directory/ or graph/ calls a database method, nor
holds a string that reads as an SQL statement or a piece of one. Transactions and
scopes (`merci.db.scoped`, `ctx.tx()`) stay in the faces; the statements do not."""

from __future__ import annotations

import ast
import re

from tests.conftest import ROOT

FACES = ("api", "directory", "graph")
# asyncpg's (and the DB-API's) ways to run a statement.
RUNS_SQL = frozenset({"fetch", "fetchrow", "fetchval", "execute", "executemany", "cursor", "prepare"})
# A statement's opening, as SQL reads and prose does not ("Set the budget", "DELETE" as
# an HTTP method and "set-cookie" stay prose), or a statement's parameter ($1) anywhere:
# a WHERE clause appended to a domain's SELECT is SQL written in the face all the same.
STATEMENT = re.compile(
    r"""^\s*\(?\s*(?:
        select\s+(?:\S+\s*$|.*\bfrom\s)
      | insert\s+into\s
      | update\s+\w+\s+set\s
      | delete\s+from\s
      | with\s+(?:recursive\s+)?\w+(?:\s*\([^)]*\))?\s+as\s*(?:not\s+)?(?:materialized\s*)?\(
      | (?:copy|truncate|lock|listen|notify|vacuum|analyze|merge)\s+\w
      | set\s+(?:local\s+|session\s+)?[\w.]+\s*(?:=|to\s)
      | (?:create|alter|drop)\s+(?:or\s+replace\s+)?(?:unique\s+)?(?:table|index|view|function|role|schema
            |extension|trigger|policy|type|sequence|materialized)\b
    )""",
    re.IGNORECASE | re.VERBOSE | re.DOTALL,
)
PARAMETER = re.compile(r"\$\d+\b")


def looks_like_sql(text: str) -> bool:
    """A statement's opening (SQL is written in lower or upper case; a sentence starts with
    a capital: "Select the sites you like from the list." is prose), or a parameter."""
    first = text.lstrip(" \n(").split(" ", 1)[0]
    sentence = first[:1].isupper() and first[1:].islower()
    return bool(STATEMENT.match(text) and not sentence) or bool(PARAMETER.search(text))


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the docstrings' nodes: prose, which may well name a statement."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def _text(node: ast.Constant | ast.JoinedStr) -> str:
    """A literal's text; an f-string's with each replacement field read as a name."""
    if isinstance(node, ast.Constant):
        return str(node.value)
    return "".join(str(v.value) if isinstance(v, ast.Constant) else "x" for v in node.values)


def sql_in(source: str) -> list[tuple[int, str]]:
    """(line, what) for each database call and each SQL-looking string in `source`."""
    tree = ast.parse(source)
    skip = _docstrings(tree)
    for node in ast.walk(tree):  # an f-string is read whole, not as its pieces
        if isinstance(node, ast.JoinedStr):
            skip |= {id(v) for v in node.values}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            name = node.func.attr
            if name in RUNS_SQL or name.startswith("copy_"):
                found.append((node.lineno, f"calls .{name}()"))
        elif (isinstance(node, ast.JoinedStr) or (isinstance(node, ast.Constant) and isinstance(node.value, str))) \
                and id(node) not in skip:
            text = _text(node)
            if looks_like_sql(text):
                found.append((node.lineno, f"SQL {' '.join(text.split())[:40].rstrip()!r}"))
    return sorted(found)


def violations(modules: dict[str, str]) -> list[str]:
    """`path:line: what` for each face module (path -> source) that runs or writes SQL."""
    return [f"{path}:{line}: {what}" for path, source in sorted(modules.items())
            if path.split("/")[0] in FACES for line, what in sql_in(source)]


def test_no_face_runs_sql() -> None:
    modules = {str(p.relative_to(ROOT)): p.read_text() for face in FACES for p in (ROOT / face).rglob("*.py")}
    assert len(modules) > 60 and {p.split("/")[0] for p in modules} == set(FACES)
    assert violations(modules) == []


def test_the_check_catches_each_kind() -> None:
    calls = "".join(f"    await conn.{name}(q)\n" for name in [*sorted(RUNS_SQL), "copy_records_to_table"])
    deliberate = {
        "api/calls.py": "async def f(conn, q, t):\n" + calls,
        "directory/statements.py": (
            'A = "select id from things where url = x"\n'
            'B = ("insert into clicks (supporter_id, thing_id)"\n     " values (1, 2)")\n'
            'C = "UPDATE budgets SET amount = 1"\n'
            'D = "delete from sessions where expires_at < now()"\n'
            'E = """\n  with recent as (select 1) select * from recent"""\n'
            'F = f"select {COLUMNS} from sites"\n'
            'G = LINK_SELECT + " where l.id = $1"\n'
            'H = "select 1"\n'
            'I = "set local merci.tenant_id = 1"\n'
        ),
        "graph/allowed.py": (
            '"""A face may say in prose how a query works: select ... from, where id = $1."""\n'
            "async def f(ctx, pool, scope):\n"
            '    """Set the budget; UPDATE nothing here."""\n'
            "    async with ctx.tx() as conn, scoped(pool, scope):\n"
            "        await things.by_url(conn, url=URL)\n"
            '    return ["set-cookie", "DELETE", "Set when the words matched nothing.", f"select {n} of {m}",\n'
            '            "Select the sites you like from the directory.", "Update your profile."]\n'
        ),
        "merci/domain.py": 'async def f(conn):\n    await conn.fetch("select 1")\n',  # the domain's own
        "workers/actor.py": 'SQL = "select 1"\n',  # not a face
    }
    assert violations(deliberate) == [
        "api/calls.py:2: calls .cursor()",
        "api/calls.py:3: calls .execute()",
        "api/calls.py:4: calls .executemany()",
        "api/calls.py:5: calls .fetch()",
        "api/calls.py:6: calls .fetchrow()",
        "api/calls.py:7: calls .fetchval()",
        "api/calls.py:8: calls .prepare()",
        "api/calls.py:9: calls .copy_records_to_table()",
        "directory/statements.py:1: SQL 'select id from things where url = x'",
        "directory/statements.py:2: SQL 'insert into clicks (supporter_id, thing_'",
        "directory/statements.py:4: SQL 'UPDATE budgets SET amount = 1'",
        "directory/statements.py:5: SQL 'delete from sessions where expires_at <'",
        "directory/statements.py:6: SQL 'with recent as (select 1) select * from'",
        "directory/statements.py:8: SQL 'select x from sites'",
        "directory/statements.py:9: SQL 'where l.id = $1'",
        "directory/statements.py:10: SQL 'select 1'",
        "directory/statements.py:11: SQL 'set local merci.tenant_id = 1'",
    ]
