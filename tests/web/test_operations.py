"""The web app's operations (web/operations/*.graphql) are valid against schema.graphql,
the public schema CI keeps in step with the code: a schema change that breaks a page
fails here. Each file holds one operation named as the file, each is used by a page, and
each is replayed through the gateways by tests/gateway/frontend.py's scenario."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
from graphql import GraphQLSchema, build_schema, parse, validate

from web import gql

ROOT = Path(__file__).resolve().parents[2]


@functools.cache
def schema() -> GraphQLSchema:
    # (Federation's directives, @link and @key, are the gateway's business: taken as written.)
    return build_schema((ROOT / "schema.graphql").read_text(), assume_valid_sdl=True)


@pytest.mark.parametrize("name", sorted(gql.operations()))
def test_operation_is_valid_against_the_public_schema(name: str) -> None:
    errors = validate(schema(), parse(gql.operations()[name]))
    assert not errors, f"{name}.graphql: " + "; ".join(e.message for e in errors)


def test_every_operation_is_used_by_a_page() -> None:
    sources = "\n".join(p.read_text() for p in (ROOT / "web").glob("*.py"))
    unused = [name for name in gql.operations() if f'"{name}"' not in sources]
    assert not unused, f"operations no page runs: {unused}"


def test_a_broken_operation_is_noticed() -> None:
    """The check can fail: a field the schema does not have."""
    errors = validate(schema(), parse("query Broken { me { handle noSuchField } }"))
    assert [e.message for e in errors] == ["Cannot query field 'noSuchField' on type 'Account'."]


def test_every_operation_is_replayed_through_the_gateways() -> None:
    """The web app runs in-process; the gateway tests replay the operation set through Hive
    Gateway and Apollo Gateway and directly, and compare (tests/gateway). This app's
    operation files are in that set, each sent, as written, by some step of the scenario:
    a new page's operation needs its step there, or this fails."""
    from tests.gateway.frontend import SCENARIO, WEB, operations, web_operations

    replayed, keys = operations(), web_operations()
    assert sorted(keys) == sorted(gql.operations())
    assert {name: key for name, key in keys.items() if replayed[key] != gql.operations()[name]} == {}
    sent = {step.operation for step in SCENARIO if step.document is None}
    assert sorted(name for name, key in keys.items() if key not in sent) == [], "web operations no step sends"
    # The check can fail: a name the gateway set holds with other text is a separate operation.
    assert keys["LogIn"] == WEB + "LogIn" and replayed["LogIn"] != gql.operations()["LogIn"]


def test_every_operation_costs_less_than_a_request_may() -> None:
    """Pages pay the query cost any client pays (graph.cost): one over the limit would be
    a page that never shows (the webhooks page asked 20 endpoints x 20 deliveries once)."""
    from graph.cost import Pricer
    from merci.config import Settings
    from runtime.faces import build_schema as merged

    schema = merged("all")._schema
    limit = Settings().query_cost_limit
    costs = {name: Pricer(schema, parse(text), name, {}).requested() for name, text in gql.operations().items()}
    assert all(cost > 0 for cost in costs.values()), costs
    assert {n: c for n, c in costs.items() if c > limit} == {}, f"over {limit}: {costs}"
    # The check can fail: the webhooks page as first written.
    first = "query W { webhookEndpoints(first: 20) { nodes { id deliveries(first: 20) { nodes { id attemptLog {" \
            " attempt statusCode } } } } } }"
    assert Pricer(schema, parse(first), "W", {}).requested() > limit
