"""The founding story through the real API, a real worker and `merci close-month`:
a 10.00 budget clicked on five blogs pays each 1.80 and a 1.00 fee."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.conftest import (
    ROOT,
    GraphQLClient,
    Service,
    create_database,
    drop_database,
    prove_site,
    service_env,
    sign_up,
    start_api,
    unique,
    wait_for,
)

ME_MONEY = """{ me { balance { amount formatted } monthlyBudget { amount } earnings { amount }
  month { period status charge { amount } fee { amount } clicks
          shares { amount { amount } inEscrow thing { url } } } } }"""
FLATTR = """mutation($input: FlattrInput!) { flattr(input: $input) {
  click { status idempotencyKey period thing { id } } userErrors { field code message } } }"""
SUBMIT = """mutation($input: SubmitThingInput!) { submitThing(input: $input) {
  thing { id url claimed } userErrors { field code message } } }"""
TOP_UP = """mutation($amount: Int!) { topUp(input: {amount: $amount}) {
  account { balance { amount } } userErrors { field code } } }"""
BUDGET = """mutation($amount: Int!) { setMonthlyBudget(input: {amount: $amount}) {
  account { monthlyBudget { amount } } userErrors { field code message } } }"""


@dataclass
class Env:
    url: str
    database_url: str
    tmp: Path

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "runtime.cli", *args], env=service_env(self.database_url),
                              cwd=ROOT, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def env(server_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    """A database of its own: this module closes the current month."""
    from merci.db import migrate

    dsn = create_database(server_url, "merci_money")
    asyncio.run(migrate(dsn))
    tmp = tmp_path_factory.mktemp("money")
    api, base = start_api(dsn, tmp)
    worker = Service([sys.executable, "-m", "dramatiq", "workers", "--processes", "1", "--threads", "4"],
                     service_env(dsn), tmp / "worker.log")
    try:
        yield Env(base, dsn, tmp)
    finally:
        api.stop()
        worker.stop()
        drop_database(server_url, dsn)


async def counts(dsn: str) -> dict[str, int]:
    conn = await asyncpg.connect(dsn)
    try:
        return {t: int(await conn.fetchval(f"select count(*) from {t}"))
                for t in ("budget_changes", "clicks", "journals", "entries", "things", "subscriptions")}
    finally:
        await conn.close()


def test_founding_story(env: Env) -> None:
    gql = GraphQLClient(env.url)
    fan = gql.as_(sign_up(gql)["token"])
    assert fan(TOP_UP, {"amount": 5000})["topUp"]["account"]["balance"]["amount"] == 5000
    assert fan(BUDGET, {"amount": 1000})["setMonthlyBudget"]["account"]["monthlyBudget"]["amount"] == 1000

    bloggers = [sign_up(gql) for _ in range(5)]
    things = []
    for b in bloggers:
        prove_site(env.database_url, b["handle"], f"https://{b['handle']}.example/")
        data = gql.as_(b["token"])(SUBMIT, {"input": {"url": f"https://{b['handle']}.example/post?utm_source=x",
                                                      "title": "A post", "category": "text"}})["submitThing"]
        assert data["userErrors"] == [] and data["thing"]["url"] == f"https://{b['handle']}.example/post"
        things.append(data["thing"]["id"])

    for i, thing in enumerate(things):
        out = fan(FLATTR, {"input": {"thingId": thing, "idempotencyKey": f"k{i}"}})["flattr"]
        assert out["userErrors"] == [] and out["click"]["status"] == "PENDING"
    # The same request again (a retry) is not a second click.
    assert fan(FLATTR, {"input": {"thingId": things[0], "idempotencyKey": "k0"}})["flattr"]["userErrors"] == []

    month = wait_for(lambda: (m := fan(ME_MONEY)["me"]["month"])["clicks"] == 5 and m, what="5 ingested clicks")
    assert month["status"] == "OPEN"
    assert (month["charge"]["amount"], month["fee"]["amount"]) == (1000, 100)
    assert [s["amount"]["amount"] for s in month["shares"]] == [180] * 5

    period = datetime.now(UTC).strftime("%Y-%m")
    refused = env.cli("close-month", period)
    assert refused.returncode == 2 and "--force" in refused.stderr
    closed = env.cli("close-month", period, "--force")
    assert closed.returncode == 0, closed.stdout + closed.stderr

    me = fan(ME_MONEY)["me"]
    assert me["balance"]["amount"] == 4000 and me["balance"]["formatted"] == "€40.00"
    assert me["month"]["status"] == "CLOSED"
    assert [s["amount"]["amount"] for s in me["month"]["shares"]] == [180] * 5
    for b in bloggers:
        assert gql.as_(b["token"])(ME_MONEY)["me"]["earnings"]["amount"] == 180

    audit = env.cli("audit")
    assert audit.returncode == 0, audit.stderr
    before = asyncio.run(counts(env.database_url))
    again = env.cli("close-month", period, "--force")
    assert again.returncode == 0, again.stderr
    assert asyncio.run(counts(env.database_url)) == before

    # The month is closed: a click now is refused at once (issue 17), and its receipt says so.
    late = fan(FLATTR, {"input": {"url": "https://late.example/x", "idempotencyKey": "late"}})["flattr"]
    assert late["click"] is None and [e["code"] for e in late["userErrors"]] == ["MONTH_CLOSED"]
    receipt = fan('{ me { clickReceipt(idempotencyKey: "late") { status reason } } }')["me"]["clickReceipt"]
    assert receipt == {"status": "REFUSED", "reason": "MONTH_CLOSED"}


def test_bad_input_is_refused_and_changes_nothing(env: Env) -> None:
    gql = GraphQLClient(env.url)
    fan_user = sign_up(gql)
    fan = gql.as_(fan_user["token"])
    poor = gql.as_(sign_up(gql)["token"])
    fan(TOP_UP, {"amount": 2000})
    own_url = f"https://{unique('own')}.example/"
    prove_site(env.database_url, fan_user["handle"], own_url)
    mine = fan(SUBMIT, {"input": {"url": own_url, "title": "Mine"}})["submitThing"]
    before = asyncio.run(counts(env.database_url))

    def code(query: str, variables: dict[str, Any], field: str) -> str:
        errors = fan(query, variables)[field]["userErrors"]
        assert len(errors) == 1, errors
        return str(errors[0]["code"])

    assert code(BUDGET, {"amount": -5}, "setMonthlyBudget") == "AMOUNT_TOO_SMALL"
    assert code(BUDGET, {"amount": 199}, "setMonthlyBudget") == "BUDGET_TOO_SMALL"
    assert code(TOP_UP, {"amount": 0}, "topUp") == "AMOUNT_TOO_SMALL"
    assert code(TOP_UP, {"amount": 10**8}, "topUp") == "AMOUNT_TOO_LARGE"
    not_int = fan.raw(BUDGET, {"amount": 2.5}).json()
    assert "Int cannot represent non-integer value" in not_int["errors"][0]["message"]
    assert code(FLATTR, {"input": {"thingId": "VGhpbmc6OTk5OTk5OQ", "idempotencyKey": "a"}}, "flattr") \
        == "UNKNOWN_THING"
    assert code(FLATTR, {"input": {"url": "notaurl", "idempotencyKey": "b"}}, "flattr") == "INVALID_URL"
    assert code(FLATTR, {"input": {"url": "ftp://x.example/", "idempotencyKey": "b"}}, "flattr") == "INVALID_URL"
    assert code(FLATTR, {"input": {"thingId": mine["thing"]["id"], "idempotencyKey": "c"}}, "flattr") == "OWN_THING"
    assert code(FLATTR, {"input": {"idempotencyKey": "d"}}, "flattr") == "INVALID_TARGET"
    assert code(FLATTR, {"input": {"url": "https://a.example/", "idempotencyKey": ""}}, "flattr") \
        == "INVALID_IDEMPOTENCY_KEY"
    assert code(SUBMIT, {"input": {"url": "https://x.example/", "title": "x", "category": "nope"}},
                "submitThing") == "INVALID_CATEGORY"
    assert code(SUBMIT, {"input": {"url": "https://x.example/", "title": "x", "tags": [str(i) for i in range(11)]}},
                "submitThing") == "TOO_MANY_TAGS"
    no_means = poor(FLATTR, {"input": {"url": "https://a.example/", "idempotencyKey": "e"}})["flattr"]["userErrors"]
    assert [e["code"] for e in no_means] == ["NO_MEANS"]
    anon = GraphQLClient(env.url)(FLATTR, {"input": {"url": "https://a.example/", "idempotencyKey": "f"}})
    anon = anon["flattr"]["userErrors"]
    assert [e["code"] for e in anon] == ["UNAUTHENTICATED"]
    assert asyncio.run(counts(env.database_url)) == before


def test_second_click_in_month_and_subscriptions(env: Env) -> None:
    gql = GraphQLClient(env.url)
    fan = gql.as_(sign_up(gql)["token"])
    fan(TOP_UP, {"amount": 2000})
    maker = sign_up(gql)
    creator = gql.as_(maker["token"])
    urls = [f"https://{unique('s')}.example/" for _ in range(2)]
    for url in urls:
        prove_site(env.database_url, maker["handle"], url)
    thing = creator(SUBMIT, {"input": {"url": urls[0], "title": "T"}})["submitThing"]
    other = creator(SUBMIT, {"input": {"url": urls[1], "title": "U"}})["submitThing"]
    tid, oid = thing["thing"]["id"], other["thing"]["id"]
    # This module's month was force-closed above; the worker refuses the month, so
    # subscriptions are exercised through their state machine and materialization here.
    sub = fan("""mutation($t: ID!) { subscribe(input: {thingId: $t, months: 3}) {
        subscription { id months status monthsUsed } userErrors { code } } }""", {"t": tid})["subscribe"]
    assert sub["userErrors"] == [] and sub["subscription"]["status"] == "ACTIVE"
    sid = sub["subscription"]["id"]
    dup = fan("""mutation($t: ID!) { subscribe(input: {thingId: $t, months: 3}) { userErrors { code } } }""",
              {"t": tid})["subscribe"]["userErrors"]
    assert [e["code"] for e in dup] == ["ALREADY_SUBSCRIBED"]
    bad = fan("""mutation($t: ID!) { subscribe(input: {thingId: $t, months: 2}) { userErrors { code } } }""",
              {"t": oid})["subscribe"]["userErrors"]
    assert [e["code"] for e in bad] == ["INVALID_TERM"]
    for action, status in (("pauseSubscription", "PAUSED"), ("resumeSubscription", "ACTIVE"),
                           ("cancelSubscription", "CANCELLED")):
        out = fan(f"""mutation($id: ID!) {{ {action}(input: {{id: $id}}) {{
            subscription {{ status }} userErrors {{ code }} }} }}""", {"id": sid})[action]
        assert out["subscription"]["status"] == status, out
    again = fan("""mutation($id: ID!) { resumeSubscription(input: {id: $id}) { userErrors { code } } }""",
                {"id": sid})["resumeSubscription"]["userErrors"]
    assert [e["code"] for e in again] == ["INVALID_STATE"]
