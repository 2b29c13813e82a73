"""schema.graphql is generated from the code; any drift fails."""

from __future__ import annotations

import subprocess
import sys

from graphql import GraphQLField, GraphQLObjectType, GraphQLSchema, GraphQLString

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


def test_subgraphs_are_federation_2() -> None:
    for face in ("api", "directory"):
        sdl = subgraph_sdl(face)  # type: ignore[arg-type]
        assert "specs.apollo.dev/federation/v2.11" in sdl
        assert "@key" in sdl


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
