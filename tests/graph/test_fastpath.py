"""The precompiled `flattr` (graph.fastpath) answers exactly as Strawberry does: the
same requests go to an API with the fast path and one without it (MERCI_FAST_PATH=0),
on one database, and the answers are compared byte for byte. /metrics shows which
requests the fast path took, so a plan that silently never matches fails here."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import (
    GraphQLClient,
    budget_left,
    create_database,
    drop_database,
    fast_and_slow_apis,
    fast_path_count,
    prove_site,
    sign_up,
    unique,
)

FLATTR = """mutation Click($input: FlattrInput!) { flattr(input: $input) {
  click { status idempotencyKey period reason } userErrors { field code message } } }"""
SUBMIT = """mutation($input: SubmitThingInput!) { submitThing(input: $input) { thing { id } userErrors { code } } }"""
TOP_UP = "mutation { topUp(input: {amount: 5000}) { userErrors { code } } }"


@pytest.fixture(scope="module")
def fast_db(server_url: str) -> Iterator[str]:
    from merci.db import migrate

    dsn = create_database(server_url, "merci_fast")
    asyncio.run(migrate(dsn))
    try:
        yield dsn
    finally:
        drop_database(server_url, dsn)


@pytest.fixture(scope="module")
def apis(fast_db: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    with fast_and_slow_apis(fast_db, tmp_path_factory.mktemp("fast")) as urls:
        yield urls


def fast_count(base: str) -> float:
    return fast_path_count(base, "flattr")


def cases(thing: str, own: str) -> list[tuple[dict[str, Any], bool, str]]:
    """(request body, whether the fast path takes it, token: fan | poor | anon)"""
    def flattr(input: dict[str, Any], query: str = FLATTR, **extra: Any) -> dict[str, Any]:
        return {"query": query, "variables": {"input": input}, **extra}

    return [
        (flattr({"thingId": thing, "idempotencyKey": "a1"}), True, "fan"),
        (flattr({"thingId": thing, "idempotencyKey": "a1"}, operationName="Click"), True, "fan"),
        (flattr({"url": "https://Example.org:443/p?utm_source=x#top", "idempotencyKey": "u1"}), True, "fan"),
        (flattr({"thingId": own, "idempotencyKey": "o1"}), True, "fan"),  # OWN_THING
        (flattr({"thingId": "VGhpbmc6OTk5OTk5OQ", "idempotencyKey": "x"}), True, "fan"),  # UNKNOWN_THING
        (flattr({"thingId": "not-an-id", "idempotencyKey": "x"}), True, "fan"),
        (flattr({"url": "notaurl", "idempotencyKey": "x"}), True, "fan"),  # INVALID_URL
        (flattr({"url": "ftp://x.example/", "idempotencyKey": "x"}), True, "fan"),
        (flattr({"idempotencyKey": "x"}), True, "fan"),  # INVALID_TARGET
        (flattr({"url": "https://a.example/", "thingId": thing, "idempotencyKey": "x"}), True, "fan"),
        (flattr({"url": "https://a.example/", "idempotencyKey": ""}), True, "fan"),
        (flattr({"url": "https://a.example/", "idempotencyKey": "k" * 201}), True, "fan"),
        (flattr({"thingId": "not-an-id", "idempotencyKey": ""}), True, "fan"),  # two refusals at once
        (flattr({"url": "notaurl", "idempotencyKey": " "}), True, "fan"),
        (flattr({"url": "https://a.example/", "idempotencyKey": "p1"}), True, "poor"),  # NO_MEANS
        (flattr({"url": "https://a.example/", "idempotencyKey": "n1"}), True, "anon"),  # UNAUTHENTICATED
        # aliases and __typename at every level
        (flattr({"thingId": thing, "idempotencyKey": "a2"},
                "mutation($input: FlattrInput!) { __typename f: flattr(input: $input) { __typename "
                "c: click { __typename s: status k: idempotencyKey } e: userErrors { __typename code } } }"),
         False, "fan"),  # a root __typename beside flattr: not planned
        (flattr({"thingId": thing, "idempotencyKey": "a2"},
                "mutation($input: FlattrInput!) { f: flattr(input: $input) { __typename "
                "c: click { __typename s: status k: idempotencyKey } e: userErrors { __typename code } } }"),
         True, "fan"),
        # input written inline
        ({"query": 'mutation { flattr(input: {url: "https://inline.example/", idempotencyKey: "i1"}) '
                   "{ click { status } userErrors { code } } }"}, True, "fan"),
        # not planned: a field the plan does not fill, fragments, directives, bad variables, wrong name
        (flattr({"thingId": thing, "idempotencyKey": "a3"},
                "mutation($input: FlattrInput!) { flattr(input: $input) { click { thing { id } } } }"), False, "fan"),
        (flattr({"thingId": thing, "idempotencyKey": "a3"},
                "mutation($input: FlattrInput!) { flattr(input: $input) { ...P } } "
                "fragment P on FlattrPayload { click { status } }"), False, "fan"),
        (flattr({"thingId": thing, "idempotencyKey": "a3"},
                "mutation($input: FlattrInput!, $no: Boolean = false) { flattr(input: $input) "
                "{ click { status @skip(if: $no) } } }"), False, "fan"),
        (flattr({"thingId": 7, "idempotencyKey": "a3"}), True, "fan"),  # an ID may be sent as an Int
        (flattr({"thingId": thing, "idempotencyKey": 5}), False, "fan"),
        (flattr({"thingId": thing}), False, "fan"),
        (flattr({"thingId": thing, "idempotencyKey": "a3"}, operationName="Other"), False, "fan"),
        (flattr({"thingId": thing, "idempotencyKey": "a3"},
                "mutation($input: FlattrInput!) { flattr(input: $input) { click { nope } } }"), False, "fan"),
        ({"query": "mutation { flattr(input: {}) { click { status } } }"}, False, "fan"),
        ({"query": "mutation { flattr("}, False, "fan"),
    ]


def test_the_fast_path_answers_as_strawberry_does(apis: tuple[str, str], fast_db: str) -> None:
    fast_url, slow_url = apis
    gql = GraphQLClient(fast_url)
    fan, poor, maker = sign_up(gql), sign_up(gql), sign_up(gql)
    GraphQLClient(fast_url, fan["token"])(TOP_UP)
    submit = GraphQLClient(fast_url, maker["token"])
    thing = submit(SUBMIT, {"input": {"url": f"https://{unique('blog')}.example/", "title": "A blog"}})
    thing = thing["submitThing"]["thing"]["id"]
    own_url = f"https://{unique('mine')}.example/"
    prove_site(fast_db, fan["handle"], own_url)
    own = GraphQLClient(fast_url, fan["token"])(
        SUBMIT, {"input": {"url": own_url, "title": "Mine"}})["submitThing"]["thing"]["id"]
    tokens = {"fan": fan["token"], "poor": poor["token"], "anon": None}
    taken = 0
    for body, planned, who in cases(thing, own):
        headers = {"authorization": f"Bearer {tokens[who]}"} if tokens[who] else {}
        before = fast_count(fast_url)
        answers = [httpx.post(base + "/graphql", json=body, headers=headers, timeout=30)
                   for base in (fast_url, slow_url)]
        assert answers[0].status_code == answers[1].status_code, body
        # (Each process keeps its own budget of query cost, refilled by the clock: what is left may differ.)
        if planned:
            assert budget_left(answers[0].content) == budget_left(answers[1].content), body
        elif answers[1].headers["content-type"].startswith("application/json"):
            assert json.loads(budget_left(answers[0].content)) == json.loads(budget_left(answers[1].content)), body
        else:  # e.g. a syntax error
            assert answers[0].text == answers[1].text, body
        assert fast_count(fast_url) - before == (1 if planned else 0), body
        taken += planned
    assert fast_count(slow_url) == 0
    assert taken >= 15


values = st.none() | st.text(max_size=3) | st.integers() | st.booleans() | st.floats(allow_nan=False)
inputs = st.dictionaries(st.sampled_from(["thingId", "url", "idempotencyKey", "other"]), values, max_size=4)


@settings(max_examples=300, deadline=None)
@given(variables=st.dictionaries(st.sampled_from(["i", "j"]), st.none() | inputs | values, max_size=2))
def test_quick_variable_coercion_agrees_with_graphql_core(variables: dict[str, Any]) -> None:
    from graphql.execution.values import get_argument_values, get_variable_values

    from api.clicks.mutations import FAST_MUTATIONS
    from graph.fastpath import Planner
    from graph.limits import has_nul
    from runtime.faces import build_schema

    schema = _schema(build_schema)
    plan = Planner(schema, FAST_MUTATIONS).plan(
        "mutation($i: FlattrInput!) { flattr(input: $i) { click { status } } }", None)
    assert plan is not None and plan.inputs is not None
    values = get_variable_values(schema, plan.operation.variable_definitions or (), variables)
    expected = None if isinstance(values, list) else get_argument_values(
        schema.mutation_type.fields["flattr"], plan.root, values)
    quick = plan.quick_arguments(variables)
    assert quick is None or quick == expected  # when sure, right
    # A NUL anywhere: the normal path refuses the request (graph.limits), so no plan takes it.
    assert plan.arguments(schema, variables) == (None if has_nul(variables) else expected)
    if isinstance(variables.get("i"), dict) and all(isinstance(v, str) for v in variables["i"].values()) \
            and "idempotencyKey" in variables["i"] and "other" not in variables["i"] and "j" not in variables:
        assert quick is not None  # the usual case is the quick one


_schemas: dict[str, Any] = {}


def _schema(build: Any) -> Any:
    if "all" not in _schemas:
        _schemas["all"] = build("all")._schema
    return _schemas["all"]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-2**63, max_value=2**63 - 1) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=8)


@settings(max_examples=500, deadline=None)
@given(value=json_values | st.integers())
def test_one_encoder_writes_utf8_json_for_both_paths(value: Any) -> None:
    import json

    from graph.fastpath import encode_json
    from graph.http import MerciGraphQL

    written = encode_json(value)
    assert json.loads(written) == value  # any value, an integer beyond 64 bits too
    assert MerciGraphQL.encode_json(None, value) == written  # type: ignore[arg-type]  # Strawberry's path
    if isinstance(value, str) and value.isprintable() and '"' not in value and "\\" not in value:
        assert written == b'"' + value.encode() + b'"'  # text as UTF-8, not \\u escapes


def test_non_ascii_text_is_written_as_utf8() -> None:
    from graph.fastpath import encode_json

    assert encode_json({"title": "Café crème 😀"}) == '{"title":"Café crème 😀"}'.encode()


def test_a_fast_path_datetime_is_written_alike_either_way() -> None:
    from graph.fastpath import encode_json

    at = datetime(2026, 11, 27, 6, 5, 26, 120, tzinfo=UTC)
    assert encode_json([at]) == b'["2026-11-27T06:05:26.000120+00:00"]'  # orjson, as Strawberry's isoformat
    assert encode_json([at, 2**70]) == b'["2026-11-27T06:05:26.000120+00:00",1180591620717411303424]'  # fallback
