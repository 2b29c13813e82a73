"""schema.graphql is generated from the code (any drift fails), and the subgraphs' federation
directives read from their SDL hold together."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

from graphql import (
    DirectiveNode,
    GraphQLField,
    GraphQLObjectType,
    GraphQLSchema,
    GraphQLString,
    GraphQLSyntaxError,
    ListValueNode,
    NamedTypeNode,
    NonNullTypeNode,
    ObjectTypeDefinitionNode,
    ScalarTypeDefinitionNode,
    SchemaDefinitionNode,
    StringValueNode,
    parse,
    print_ast,
)

from runtime.faces import build_schema, public_sdl, subgraph_sdl
from tests.conftest import ROOT


def test_schema_graphql_matches_code() -> None:
    committed = (ROOT / "schema.graphql").read_text()
    assert committed == public_sdl(), "schema.graphql drifted: run `merci schema export`"


def test_schema_check_command_fails_on_drift(tmp_path) -> None:  # type: ignore[no-untyped-def]
    stale = tmp_path / "schema.graphql"
    stale.write_text(public_sdl().replace("type Query", "type Query @deprecated", 1))
    r = subprocess.run([sys.executable, "-m", "runtime.cli", "schema", "check", "--path", str(stale)],
                       capture_output=True, text=True)
    assert r.returncode == 1 and "drifted" in r.stderr
    ok = subprocess.run([sys.executable, "-m", "runtime.cli", "schema", "check", "--path",
                         str(ROOT / "schema.graphql")], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr


FEDERATION = "https://specs.apollo.dev/federation/v2."
# The entities each subgraph resolves by key (a type both define is one of these or shareable).
ENTITIES = {"api": {"Creator", "Site", "Thing"}, "directory": {"Creator", "Site"}}


def _directives(node: Any) -> list[DirectiveNode]:
    return list(getattr(node, "directives", None) or [])


def _argument(directive: DirectiveNode, name: str) -> Any:
    return next((a.value for a in directive.arguments if a.name.value == name), None)


def federation_problems(sdl: str) -> tuple[list[str], dict[str, str], dict[str, dict[str, Any]]]:
    """What is wrong with a subgraph's federation directives, read from its SDL: the
    schema links Federation 2, imports exactly the directives it uses, and every @key
    selects fields its type has, each a non-null scalar or ID. Also its entities (type ->
    key fields) and object types (name -> {field: type text, @shareable}), to compare
    subgraphs."""
    document = parse(sdl)
    problems: list[str] = []
    schemas = [d for d in document.definitions if isinstance(d, SchemaDefinitionNode)]
    links = [d for s in schemas for d in _directives(s) if d.name.value == "link"]
    if len(links) != 1 or not isinstance(_argument(links[0], "url"), StringValueNode) \
            or not _argument(links[0], "url").value.startswith(FEDERATION):
        return ["the schema does not @link Federation 2 once"], {}, {}
    imports = _argument(links[0], "import")
    imported = {v.value for v in imports.values} if isinstance(imports, ListValueNode) else set()
    known = {"@key", "@shareable", "@external", "@requires", "@provides", "@override", "@inaccessible",
             "@tag", "@interfaceObject", "@composeDirective", "@authenticated", "@requiresScopes", "@policy",
             "@cost", "@listSize", "@context", "@fromContext"}
    used: set[str] = set()
    scalars = {"ID", "String", "Int", "Float", "Boolean"} | {
        d.name.value for d in document.definitions if isinstance(d, ScalarTypeDefinitionNode)}
    entities: dict[str, str] = {}
    objects: dict[str, dict[str, Any]] = {}
    for definition in document.definitions:
        for node in [definition, *(getattr(definition, "fields", None) or [])]:
            used |= {f"@{d.name.value}" for d in _directives(node)} & known
        if not isinstance(definition, ObjectTypeDefinitionNode):
            continue
        name = definition.name.value
        fields = {f.name.value: f.type for f in definition.fields or []}
        objects[name] = {"fields": {f: print_ast(t) for f, t in fields.items()},
                         "shareable": any(d.name.value == "shareable" for d in _directives(definition))}
        for key in (d for d in _directives(definition) if d.name.value == "key"):
            selection = _argument(key, "fields")
            if not isinstance(selection, StringValueNode):
                problems.append(f"{name}: @key without a fields string")
                continue
            entities[name] = selection.value
            try:
                selected = parse("{" + selection.value + "}").definitions[0].selection_set.selections  # type: ignore[attr-defined]
            except GraphQLSyntaxError:
                problems.append(f"{name}: @key(fields: {selection.value!r}) does not parse")
                continue
            for field in selected:
                kind = fields.get(field.name.value)
                if kind is None:
                    problems.append(f"{name}: @key selects {field.name.value}, which {name} does not have")
                elif not (isinstance(kind, NonNullTypeNode) and isinstance(kind.type, NamedTypeNode)
                          and kind.type.name.value in scalars):
                    problems.append(f"{name}: @key field {field.name.value} is {print_ast(kind)}, "
                                    "not a non-null scalar")
    problems += [f"uses {d} without importing it" for d in sorted(used - imported)]
    problems += [f"imports {d} and never uses it" for d in sorted(imported - used)]
    return problems, entities, objects


def test_subgraphs_federation_directives() -> None:
    read = {face: federation_problems(subgraph_sdl(face)) for face in ("api", "directory")}  # type: ignore[arg-type]
    for face, (problems, entities, _) in read.items():
        assert problems == [], face
        assert set(entities) == ENTITIES[face], face
    (_, api_keys, api_types), (_, dir_keys, dir_types) = read["api"], read["directory"]
    for name in set(api_types) & set(dir_types) - {"Query", "Mutation", "_Service"}:  # _Service: federation's own
        if name in api_keys or name in dir_keys:  # an entity: both resolve it by the same key
            assert api_keys.get(name) == dir_keys.get(name), name
        else:  # a value type both serve: shareable in both, the same fields where both have them
            assert api_types[name]["shareable"] and dir_types[name]["shareable"], name
            common = set(api_types[name]["fields"]) & set(dir_types[name]["fields"])
            assert all(api_types[name]["fields"][f] == dir_types[name]["fields"][f] for f in common), name


def test_federation_check_sees_each_problem() -> None:
    """Positive control: each kind of mistake is reported."""
    good = subgraph_sdl("api")  # type: ignore[arg-type]
    assert federation_problems(good)[0] == []
    cases = {
        'type Site implements Node @key(fields: "id")': ('type Site implements Node @key(fields: "slug")',
                                                         "Site: @key selects slug, which Site does not have"),
        'import: ["@key", "@shareable"]': ('import: ["@key"]', "uses @shareable without importing it"),
        "type PageInfo @shareable {": ("type PageInfo {", "imports @shareable and never uses it"),
        "federation/v2.11": ("federation/v1.0", "the schema does not @link Federation 2 once"),
    }
    for old, (new, problem) in cases.items():
        assert old in good, old
        broken = good.replace(old, new)
        if "PageInfo" in old:
            broken = broken.replace("type UserError @shareable {", "type UserError {")
        assert problem in federation_problems(broken)[0], new
    bad_kind = good.replace('type Thing implements Node @key(fields: "id")',
                            'type Thing implements Node @key(fields: "owner")')
    assert any("@key field owner is" in p for p in federation_problems(bad_kind)[0])


ROOT_NAMES = {"query": "Query", "mutation": "Mutation", "subscription": "Subscription"}


def root_name_problems(schema: GraphQLSchema) -> list[str]:
    """Object types named after a root operation type without being that root: composition
    takes them as the root (a data type `Subscription` became the supergraph's
    subscription root and broke every gateway's answers for it)."""
    roots = {"query": schema.query_type, "mutation": schema.mutation_type, "subscription": schema.subscription_type}
    return [f"{name} is not the {operation} root" for operation, name in ROOT_NAMES.items()
            if name in schema.type_map and schema.type_map[name] is not roots[operation]]


def test_no_type_is_named_after_a_root_operation_type() -> None:
    for face in ("all", "api", "directory"):
        schema = build_schema(face)._schema
        assert root_name_problems(schema) == [], face
        assert schema.subscription_type is None, face  # Merci serves no GraphQL subscriptions
    # The check sees such a type (positive control).
    field = {"id": GraphQLField(GraphQLString)}
    named_like_a_root = GraphQLSchema(query=GraphQLObjectType("Query", field),
                                      types=[GraphQLObjectType("Subscription", field)])
    assert root_name_problems(named_like_a_root) == ["Subscription is not the subscription root"]
