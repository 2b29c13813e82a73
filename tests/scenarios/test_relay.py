"""Every paginated field of schema.graphql is a connection relay-compiler accepts.

The fragments are generated from the schema: one with `@connection` paging forward
(`first`/`after`) on every field that returns a connection, and one paging backward
(`last`/`before`) on every field that takes those arguments, so a new connection is
checked without anyone writing its fragment. relay-compiler (npm, pinned in
tests/scenarios/relay/) compiles them and must refuse none. Relay's pagination containers need
`@refetchable` too: on the parent when it is a Node (or Query), else through a root
field that returns the parent.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from graphql import (
    GraphQLField,
    GraphQLInterfaceType,
    GraphQLNamedType,
    GraphQLObjectType,
    build_schema,
    get_named_type,
    is_non_null_type,
)

from tests.conftest import ROOT, need

RELAY = ROOT / "tests" / "scenarios" / "relay"
COMPILER = RELAY / "node_modules" / ".bin" / "relay-compiler"


@dataclass(frozen=True)
class Paginated:
    parent: str
    field: str
    backward: bool  # takes `last` and `before`


def paginated_fields(sdl: str) -> list[Paginated]:
    schema = build_schema(sdl, assume_valid_sdl=True)
    found = []
    for type_ in schema.type_map.values():
        if type_.name.startswith("__") or not isinstance(type_, GraphQLObjectType | GraphQLInterfaceType):
            continue
        for name, field in type_.fields.items():
            target = get_named_type(field.type)
            if isinstance(target, GraphQLObjectType) and {"edges", "pageInfo"} <= target.fields.keys():
                found.append(Paginated(type_.name, name, {"last", "before"} <= field.args.keys()))
    return sorted(found, key=lambda p: (p.parent, p.field))


def _extra_arguments(field: GraphQLField) -> tuple[list[str], list[str]]:
    """(argument definitions, arguments) for the field's required arguments without a default."""
    definitions, arguments = [], []
    for name, arg in field.args.items():
        if name in ("first", "after", "last", "before") or not is_non_null_type(arg.type) or arg.default_value:
            continue
        definitions.append(f'{name}: {{type: "{arg.type}"}}')
        arguments.append(f"{name}: ${name}")
    return definitions, arguments


def fragment(sdl: str, module: str, p: Paginated) -> str:
    schema = build_schema(sdl, assume_valid_sdl=True)
    parent: GraphQLNamedType = schema.type_map[p.parent]
    assert isinstance(parent, GraphQLObjectType | GraphQLInterfaceType)
    field = parent.fields[p.field]
    definitions, arguments = _extra_arguments(field)
    paging = "last: $count, before: $cursor" if p.backward else "first: $count, after: $cursor"
    args = ", ".join([paging, *arguments])
    selection = (f"{p.field}({args}) @connection(key: \"{module}_{p.field}\") "
                 "{ edges { node { __typename } } }")
    on, wrapped = p.parent, selection
    node_like = p.parent == "Query" or any(i.name == "Node" for i in getattr(parent, "interfaces", ()))
    if not node_like:
        root = next((name for name, f in schema.query_type.fields.items()  # type: ignore[union-attr]
                     if get_named_type(f.type) is parent and not any(
                         is_non_null_type(a.type) and a.default_value is None for a in f.args.values())), None)
        if root is not None:
            on, wrapped, node_like = "Query", f"{root} {{ {selection} }}", True
    refetchable = f' @refetchable(queryName: "{module}RefetchQuery")' if node_like else ""
    argdefs = ", ".join(['count: {type: "Int", defaultValue: 2}', 'cursor: {type: "String"}', *definitions])
    return (f"import {{graphql}} from 'react-relay';\n\nexport const fragment = graphql`\n"
            f"  fragment {module}_list on {on} @argumentDefinitions({argdefs}){refetchable} {{\n"
            f"    {wrapped}\n  }}\n`;\n")


def compile_fragments(sdl: str, tmp: Path) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    src = tmp / "src"
    generated = tmp / "__generated__"
    src.mkdir()
    generated.mkdir()
    (tmp / "schema.graphql").write_text(sdl)
    (tmp / "relay.config.json").write_text(
        '{"src": "./src", "schema": "./schema.graphql", "language": "typescript",'
        ' "artifactDirectory": "./__generated__"}')
    modules = []
    for i, p in enumerate(paginated_fields(sdl)):
        for backward in sorted({False, p.backward}):
            module = f"Page{i}{'Back' if backward else 'Fwd'}{p.parent}{p.field[0].upper()}{p.field[1:]}"
            (src / f"{module}.ts").write_text(fragment(sdl, module, Paginated(p.parent, p.field, backward)))
            modules.append(module)
    run = subprocess.run([str(COMPILER)], cwd=tmp, capture_output=True, text=True, timeout=300)
    return run, modules


def compiler_ready() -> None:
    need(shutil.which("node") is not None, "node is not installed")
    need(COMPILER.exists(), "run `npm ci` in tests/scenarios/relay/")


def test_relay_compiler_accepts_a_connection_on_every_paginated_field(tmp_path: Path) -> None:
    compiler_ready()
    sdl = (ROOT / "schema.graphql").read_text()
    fields = paginated_fields(sdl)
    # The crawl finds the connections there are (a positive control on the finder)...
    names = {f"{p.parent}.{p.field}" for p in fields}
    assert {"Account.clicks", "Account.months", "Account.payouts", "Creator.things", "Query.searchSites",
            "PartnerAnalytics.things", "WebhookEndpoint.deliveries"} <= names, names
    # ...and the ones a frontend pages backwards take last/before.
    backward = {f"{p.parent}.{p.field}" for p in fields if p.backward}
    assert {"Account.clicks", "Account.months", "Account.payouts", "Creator.things"} <= backward, backward
    run, modules = compile_fragments(sdl, tmp_path)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-6000:]
    made = {p.name.removesuffix(".graphql.ts") for p in (tmp_path / "__generated__").glob("*_list.graphql.ts")}
    assert made == {f"{m}_list" for m in modules}, sorted({f"{m}_list" for m in modules} - made)


def test_relay_compiler_refuses_a_page_info_without_start_cursor(tmp_path: Path) -> None:
    """The check has teeth: the PageInfo of before issue 14 (no startCursor nor
    hasPreviousPage) is refused on every connection."""
    compiler_ready()
    sdl = (ROOT / "schema.graphql").read_text()
    start = sdl.index("type PageInfo")
    end = sdl.index("}", start)
    old = ("type PageInfo @shareable {\n  hasNextPage: Boolean!\n  endCursor: String\n")
    run, _ = compile_fragments(sdl[:start] + old + sdl[end:], tmp_path)
    assert run.returncode != 0
    assert "pageInfo { startCursor }" in run.stdout + run.stderr
