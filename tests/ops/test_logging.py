"""Structured logs: JSON lines with the request id, tenant and principal, and never a
secret, whatever path it takes (our fields, a message, another library's record)."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import structlog

from merci import observability
from tests.conftest import GraphQLClient, Service, service_env, sign_up, unique, wait_http

PASSWORD = "correct horse battery"


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """configure_logging into a buffer; the process's logging is restored afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    stream = io.StringIO()
    observability.configure_logging("test", stream=stream)
    try:
        yield stream
    finally:
        structlog.reset_defaults()
        structlog.contextvars.clear_contextvars()
        for h in list(root.handlers):
            root.removeHandler(h)
        for h in handlers:
            root.addHandler(h)
        root.setLevel(level)


def lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_redaction_of_fields_messages_and_foreign_records(captured: io.StringIO) -> None:
    token = "ms_1_" + "A" * 43
    key = "mk_7_" + "b" * 40
    observability.bind_principal(1, 42, None)
    observability.bind(request_id="req-1")
    log = structlog.get_logger("merci.test")
    log.info("logged in", token=token, password="hunter2", api_key_id=9,
             user={"email": "a@b.c", "secret": "s3cr3t-value"})
    log.warning(f"header was Bearer {token} and {key}", dsn="postgresql://merci:pw-in-url@db:5432/merci")
    logging.getLogger("uvicorn.error").error('bad query: logIn(input: {email: "a@b.c", password: "hunter2"})')
    try:
        raise RuntimeError(f"could not use {token}")
    except RuntimeError:
        log.exception("failed")

    text = captured.getvalue()
    for secret in (token, key, "hunter2", "pw-in-url", "s3cr3t-value", "A" * 43):
        assert secret not in text, secret
    first, second, foreign, failed = lines(text)
    assert first["token"] == first["password"] == "[REDACTED]"
    assert first["user"] == {"email": "a@b.c", "secret": "[REDACTED]"}
    assert first["api_key_id"] == 9  # an id, not a secret
    assert (first["request_id"], first["tenant_id"], first["account_id"]) == ("req-1", 1, 42)
    assert first["service"] == "test" and first["level"] == "info" and first["event"] == "logged in"
    assert "Bearer [REDACTED]" in str(second["event"]) and "mk_7_[REDACTED]" in str(second["event"])
    assert second["dsn"] == "postgresql://merci:[REDACTED]@db:5432/merci"
    assert foreign["logger"] == "uvicorn.error" and foreign["request_id"] == "req-1"
    assert 'password: "[REDACTED]"' in str(foreign["event"])
    assert "RuntimeError: could not use ms_1_[REDACTED]" in str(failed["exception"])


def test_request_ids() -> None:
    assert observability.request_id("abc-123") == "abc-123"
    for bad in (None, "", "x" * 200, "two words", "new\nline", '{"json": 1}'):
        generated = observability.request_id(bad)
        assert generated != bad and len(generated) == 32


FLATTR = """mutation($input: FlattrInput!) { flattr(input: $input) { click { status } userErrors { code } } }"""


def debug_api(database_url: str, tmp_path: Path) -> tuple[Service, str, Path]:
    """An API logging at DEBUG, not --quiet: the access log is on, and DEBUG shows whatever
    the libraries say. Its base URL and its log."""
    from tests.conftest import free_port

    port = free_port()
    log_file = tmp_path / "api.log"
    api = Service([sys.executable, "-m", "runtime.cli", "serve", "all", "--port", str(port)],
                  service_env(database_url, MERCI_LOG_LEVEL="DEBUG"), log_file)
    return api, f"http://127.0.0.1:{port}", log_file


def test_api_logs_json_with_request_context_and_no_secrets(database_url: str, tmp_path: Path) -> None:
    api, base, log_file = debug_api(database_url, tmp_path)
    try:
        wait_http(base + "/healthz", api)
        gql = GraphQLClient(base)
        user = sign_up(gql, unique("logs_"))
        login = gql.http.post("/graphql", headers={"x-request-id": "login-req-1"}, json={
            "query": "mutation($i: LogInInput!) { logIn(input: $i) { token } }",
            "variables": {"i": {"email": user["email"], "password": PASSWORD}}})
        assert login.headers["x-request-id"] == "login-req-1"
        token = login.json()["data"]["logIn"]["token"]
        fan = gql.as_(token)
        fan("mutation { topUp(input: {amount: 1000}) { userErrors { code } } }")
        clicked = fan.http.post("/graphql", json={
            "query": FLATTR, "variables": {"input": {"url": "https://logs.example/", "idempotencyKey": "k1"}}})
        assert clicked.json()["data"]["flattr"]["userErrors"] == []
        generated = clicked.headers["x-request-id"]
        assert len(generated) == 32
        # A password inline in a document that fails validation: Strawberry logs the document's line.
        gql.raw(f'mutation {{ logIn(input: {{email: "{user["email"]}", password: "{PASSWORD}", nope: 1}})'
                ' { token } }')
        me = fan("{ me { id } }")["me"]["id"]
        assert me
    finally:
        api.stop()

    text = log_file.read_text()
    for secret in (token, token.split("_", 2)[2], user["token"], user["token"].split("_", 2)[2], *PASSWORD.split()):
        assert secret not in text, f"a secret reached the log: {secret[:12]}…"
    records = lines(text)  # every line is JSON, uvicorn's own included
    requests = [r for r in records if r.get("event") == "request" and r.get("route") == "/graphql"]
    login_line = next(r for r in requests if r["request_id"] == "login-req-1")
    assert login_line["status"] == 200 and login_line["method"] == "POST" and login_line["service"] == "all"
    click_line = next(r for r in requests if r["request_id"] == generated)
    assert click_line["tenant_id"] == 1 and isinstance(click_line["account_id"], int)
    assert any(r["logger"] == "uvicorn.error" for r in records)
    # The client's mistake is logged at info, not as an error (an alert on errors is for bugs).
    invalid = [r for r in records if r.get("event") == "graphql_request_error"]
    assert invalid and all(r["level"] == "info" and r["logger"] == "merci.graphql" for r in invalid), invalid
    assert any("nope" in str(r.get("error")) for r in invalid), "the validation error was logged"
    assert not any(r.get("level") == "error" for r in records), [r for r in records if r.get("level") == "error"]


def test_quiet_api_has_no_access_log(database_url: str, tmp_path: Path) -> None:
    from tests.conftest import start_api

    api, base = start_api(database_url, tmp_path)
    try:
        assert httpx.get(base + "/healthz").headers["x-request-id"]
        GraphQLClient(base)("{ tenant { slug } }")
    finally:
        api.stop()
    assert '"event": "request"' not in api.log.read_text()


def test_a_bug_is_logged_as_an_error_and_a_client_s_mistake_as_info(captured: io.StringIO) -> None:
    from graphql import GraphQLError

    from graph.errors import ClientError
    from runtime.faces import build_schema

    schema = build_schema("all")
    bug = GraphQLError("boom", path=["me"], original_error=RuntimeError("boom"))
    refused = GraphQLError("`first` must be between 1 and 100", path=["sites"],
                           original_error=ClientError("`first` must be between 1 and 100", "BAD_PAGE_SIZE"),
                           extensions={"code": "BAD_PAGE_SIZE"})
    invalid = GraphQLError("Cannot query field 'nope' on type 'Query'.")
    schema.process_errors([bug, refused, invalid])
    records = lines(captured.getvalue())
    assert [(r["level"], r["logger"]) for r in records] == [
        ("error", "strawberry.execution"), ("info", "merci.graphql"), ("info", "merci.graphql")], records
    assert "RuntimeError" in str(records[0].get("exception")), "the bug keeps its traceback"
    # A request error without a code of its own gets one (graph.errors.error_code), as the client sees it.
    assert records[1]["code"] == "BAD_PAGE_SIZE" and records[2]["code"] == "GRAPHQL_VALIDATION_FAILED"


def test_api_keys_and_webhook_secrets_never_reach_the_logs(database_url: str, tmp_path: Path) -> None:
    """A tenant admin logs in, creates an API key and a webhook endpoint (its signing
    secret), uses the key, and quotes both in documents that fail validation (whose lines
    Strawberry logs): at DEBUG, with the access log on, none of them is in the output."""
    import asyncio

    import asyncpg

    api, base, log_file = debug_api(database_url, tmp_path)
    try:
        wait_http(base + "/healthz", api)
        gql = GraphQLClient(base)
        admin = sign_up(gql, unique("keys_"))

        async def make_admin() -> None:
            conn = await asyncpg.connect(database_url)
            try:
                await conn.execute("update account_private set is_tenant_admin = true where account_id ="
                                   " (select id from accounts where handle = $1)", admin["handle"])
            finally:
                await conn.close()

        asyncio.run(make_admin())
        login = gql.raw("mutation($i: LogInInput!) { logIn(input: $i) { token } }",
                        {"i": {"email": admin["email"], "password": PASSWORD}})
        token = login.json()["data"]["logIn"]["token"]
        as_admin = gql.as_(token)
        key = as_admin('mutation { createApiKey(input: {name: "ci", scopes: ["read", "webhooks:write"]})'
                       " { secret userErrors { code } } }")["createApiKey"]["secret"]
        hook = as_admin('mutation { createWebhookEndpoint(input: {url: "https://hooks.example/merci",'
                        " events: [CLICK_ACCEPTED]}) { secret userErrors { code } } }")["createWebhookEndpoint"]
        assert hook["userErrors"] == [] and hook["secret"].startswith("whsec_")
        by_key = gql.as_(key)
        assert by_key("{ me { id } }") == {"me": None}  # a key is no account, but it is taken
        for secret in (key, hook["secret"], token):  # quoted in documents that fail validation
            gql.raw(f'mutation {{ createWebhookEndpoint(input: {{url: "https://x.example/", events: [],'
                    f' description: "{secret}", nope: 1}}) {{ secret }} }}')
        r = httpx.post(base + "/graphql", headers={"authorization": f"Bearer {key}x"},  # a key that does not hold
                       json={"query": "{ __typename }"})
        assert r.status_code == 200 and "invalid_token" in r.headers["www-authenticate"]
    finally:
        api.stop()

    text = log_file.read_text()
    assert "whsec_[REDACTED]" in text and "nope" in text  # the failing documents were logged, masked
    for secret in (key, hook["secret"], token, PASSWORD):
        for part in (secret, secret.rsplit("_", 1)[-1]):
            assert part not in text, f"a secret reached the log: {part[:12]}…"
