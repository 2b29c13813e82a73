"""The partner API's bulk calls and analytics: limits, scopes, revoked keys, and
malformed input refused with clear errors, changing nothing."""

from __future__ import annotations

import asyncio
from datetime import date
from typing import Any

import asyncpg

from merci.config import Settings
from merci.ids import to_global
from tests.api.partners.helpers import CREATE_KEY, World

REGISTER = """mutation($things: [RegisterThingInput!]!) { registerThings(input: {things: $things}) {
  things { id url title category tags claimed owner { handle } } userErrors { field code message } } }"""
SUBMIT_CLICKS = """mutation($clicks: [PartnerClickInput!]!) { submitClicks(input: {clicks: $clicks}) {
  clicks { status } userErrors { field code message } } }"""
ANALYTICS = """query($p: String) { partnerAnalytics(period: $p) { period closed thingsClicked clicks
  earnings { amount } things { nodes { clicks earnings { amount } thing { url } } } } }"""


def counts(world: World) -> dict[str, int]:
    return {t: int(world.scalar(f"select count(*) from {t}")) for t in ("things", "clicks", "api_keys")} | {
        "queued": int(world.scalar("select count(*) from dramatiq.queue where queue_name = 'clicks'"))}


def codes(payload: dict[str, Any]) -> list[tuple[list[str] | None, str]]:
    return [(e["field"], e["code"]) for e in payload["userErrors"]]


def test_register_things_in_bulk(world: World) -> None:
    partner = world.partner()
    key = world.api_key(partner, ["things:write"])
    owner = to_global("Creator", int(world.scalar("select id from accounts where handle = $1", partner["handle"])))
    host = f"{partner['slug']}.example"
    world.prove_site(partner, f"https://{host}/")
    items = [{"url": f"https://{host}/{i}?utm_source=feed", "title": f"Episode {i}", "category": "audio",
              "tags": ["Podcast", "podcast"], "ownerId": owner} for i in range(300)]
    out = key(REGISTER, {"things": items})["registerThings"]
    assert out["userErrors"] == []
    assert [t["url"] for t in out["things"]] == [f"https://{host}/{i}" for i in range(300)]
    assert {(t["claimed"], t["category"], tuple(t["tags"]), t["owner"]["handle"]) for t in out["things"]} == {
        (True, "audio", ("podcast",), partner["handle"])}
    # The same batch again: the same things (a partner may resend safely).
    again = key(REGISTER, {"things": items})["registerThings"]
    assert [t["id"] for t in again["things"]] == [t["id"] for t in out["things"]]

    # Another partner's URL is refused for that item only; unclaimed ones too.
    other = world.partner()
    mixed = world.api_key(other, ["things:write"])(REGISTER, {"things": [
        {"url": f"https://{host}/0", "title": "Mine now?"},
        {"url": f"https://{other['slug']}.example/a", "title": "A"},
    ]})["registerThings"]
    assert mixed["things"][0] is None and mixed["things"][1]["claimed"] is False
    assert codes(mixed) == [(["things", "0", "url"], "URL_TAKEN")]


def test_malformed_or_oversized_batches_change_nothing(world: World) -> None:
    partner = world.partner()
    key = world.api_key(partner, ["things:write", "clicks:write"])
    stranger = world.partner()
    foreign = to_global("Creator", int(world.scalar("select id from accounts where handle = $1",
                                                   stranger["handle"])))
    fan = world.supporter()
    before = counts(world)

    too_many = key(REGISTER, {"things": [{"url": f"https://x.example/{i}", "title": "t"} for i in range(1001)]})
    assert codes(too_many["registerThings"]) == [(["things"], "BATCH_TOO_LARGE")]
    assert "at most 1000" in too_many["registerThings"]["userErrors"][0]["message"]
    assert codes(key(REGISTER, {"things": []})["registerThings"]) == [(["things"], "EMPTY_BATCH")]
    bad = key(REGISTER, {"things": [
        {"url": "https://ok.example/1", "title": "fine"},
        {"url": "ftp://ok.example/2", "title": "fine"},
        {"url": "https://ok.example/3", "title": "fine", "category": "podcasts"},
        {"url": "https://ok.example/4", "title": "", "language": "english"},
        {"url": "https://ok.example/1#again", "title": "fine"},
        {"url": "https://ok.example/6", "title": "fine", "ownerId": foreign},
        {"url": "https://ok.example/7", "title": "fine", "ownerId": "not-an-id"},
    ]})["registerThings"]
    assert bad["things"] is None
    assert codes(bad) == [(["things", "6", "ownerId"], "INVALID_ID")]  # ids are checked first
    bad = key(REGISTER, {"things": [
        {"url": "https://ok.example/1", "title": "fine"},
        {"url": "ftp://ok.example/2", "title": "fine"},
        {"url": "https://ok.example/3", "title": "fine", "category": "podcasts"},
        {"url": "https://ok.example/4", "title": "", "language": "english"},
        {"url": "https://ok.example/1#again", "title": "fine"},
        {"url": "https://ok.example/6", "title": "fine", "ownerId": foreign},
    ]})["registerThings"]
    assert codes(bad) == [(["things", "1", "url"], "INVALID_URL"), (["things", "2", "category"], "INVALID_CATEGORY"),
                          (["things", "3", "title"], "INVALID_TITLE"),
                          (["things", "3", "language"], "INVALID_LANGUAGE"),  # every refusal of an item
                          (["things", "4", "url"], "DUPLICATE_URL"),
                          (["things", "5", "ownerId"], "UNKNOWN_OWNER")]

    clicks = [{"supporterId": fan["id"], "url": f"https://x.example/{i}", "idempotencyKey": str(i)}
              for i in range(1001)]
    assert codes(key(SUBMIT_CLICKS, {"clicks": clicks})["submitClicks"]) == [(["clicks"], "BATCH_TOO_LARGE")]
    malformed = key(SUBMIT_CLICKS, {"clicks": [
        {"supporterId": fan["id"], "url": "https://x.example/", "idempotencyKey": "a"},
        {"supporterId": "bm9wZTox", "url": "https://x.example/", "idempotencyKey": "b"},
        {"supporterId": fan["id"], "idempotencyKey": "c"},
        {"supporterId": fan["id"], "url": "javascript:alert(1)", "idempotencyKey": "d"},
        {"supporterId": fan["id"], "url": "https://x.example/", "idempotencyKey": "k" * 181},
    ]})["submitClicks"]
    assert malformed["clicks"] is None
    assert codes(malformed) == [(["clicks", "1", "supporterId"], "INVALID_ID")]
    malformed = key(SUBMIT_CLICKS, {"clicks": [
        {"supporterId": fan["id"], "url": "https://x.example/", "idempotencyKey": "a"},
        {"supporterId": fan["id"], "idempotencyKey": "c"},
        {"supporterId": fan["id"], "url": "javascript:alert(1)", "idempotencyKey": "d"},
        {"supporterId": fan["id"], "url": "https://x.example/", "idempotencyKey": "k" * 181},
    ]})["submitClicks"]
    assert codes(malformed) == [(["clicks", "1", "thingId"], "INVALID_TARGET"), (["clicks", "2", "url"], "INVALID_URL"),
                                (["clicks", "3", "idempotencyKey"], "INVALID_IDEMPOTENCY_KEY")]
    assert counts(world) == before


def test_scopes_and_revoked_keys(world: World) -> None:
    partner = world.partner()
    reader = world.api_key(partner, ["read"])
    writer = world.api_key(partner, ["things:write"])
    before = counts(world)
    unknown = partner["client"](CREATE_KEY, {"name": "k", "scopes": ["clicks:write", "wallet:drain"]})["createApiKey"]
    assert unknown["secret"] is None and unknown["userErrors"] == [
        {"field": ["scopes"], "code": "UNKNOWN_SCOPE", "message": "unknown scopes: wallet:drain"}]
    assert counts(world) == before

    for mutation, variables in ((REGISTER, {"things": [{"url": "https://x.example/r", "title": "t"}]}),
                                (SUBMIT_CLICKS, {"clicks": [{"supporterId": partner["id"], "url": "https://x.example/",
                                                             "idempotencyKey": "r"}]})):
        out = next(iter(reader(mutation, variables).values()))
        assert [e["code"] for e in out["userErrors"]] == ["FORBIDDEN"]
        assert "scope" in out["userErrors"][0]["message"]
    assert reader(ANALYTICS, {"p": None})["partnerAnalytics"] is None  # private, like every tenant's data
    assert counts(world) == before

    key_id = world.scalar("select id from api_keys where tenant_id = $1 order by id desc limit 1", partner["tenant_id"])
    revoked = partner["client"]("""mutation($id: ID!) { revokeApiKey(input: {id: $id}) { userErrors { code } } }""",
                                {"id": to_global("ApiKey", key_id)})
    assert revoked["revokeApiKey"]["userErrors"] == []
    answer = writer.raw(REGISTER, {"things": [{"url": "https://x.example/late", "title": "t"}]})
    assert answer.status_code == 200 and "invalid_token" in answer.headers["www-authenticate"]
    assert answer.json()["data"]["registerThings"]["userErrors"] == [
        {"field": None, "code": "UNAUTHENTICATED", "message": "invalid, expired or revoked token: log in again"}]
    assert counts(world) == before


async def _seed_closed_month(dsn: str, thing_ids: list[int], supporters: list[int], period: date) -> None:
    """Clicks in a past month, then its close (as the month-close job runs it)."""
    from merci.close import close_inline

    conn = await asyncpg.connect(Settings(database_url=dsn).derived().system_database_url)
    try:
        for s in supporters:
            tenant = await conn.fetchval("select tenant_id from accounts where id = $1", s)
            await conn.execute(
                "insert into budget_changes (tenant_id, account_id, amount, currency, created_at)"
                " values ($1, $2, 1000, 'EUR', $3::date - interval '1 day')", tenant, s, period)
            for i, t in enumerate(thing_ids):
                await conn.execute(
                    "insert into clicks (tenant_id, supporter_id, thing_id, period, accepted_at, idempotency_key)"
                    " values ($1, $2, $3, $4::date, $4::date + interval '1 day' + $5 * interval '1 minute', $6)",
                    tenant, s, t, period, i, f"seed-{s}-{t}")
                await conn.execute(
                    "insert into thing_stats (thing_id, period, clicks) values ($1, $2, 1)"
                    " on conflict (thing_id, period) do update set clicks = thing_stats.clicks + 1", t, period)
        assert await close_inline(conn, period=period, shards=1, currency="EUR", default_budget=500) == "done"
    finally:
        await conn.close()


def test_analytics_per_thing_per_month(world: World) -> None:
    partner = world.partner()
    key = world.api_key(partner, ["things:write", "analytics:read"])
    owner = to_global("Creator", int(world.scalar("select id from accounts where handle = $1", partner["handle"])))
    world.prove_site(partner, f"https://{partner['slug']}.example/")
    things = key(REGISTER, {"things": [{"url": f"https://{partner['slug']}.example/{i}", "title": str(i),
                                        "ownerId": owner} for i in range(3)]})["registerThings"]["things"]
    pks = [int(world.scalar("select id from things where url = $1", t["url"])) for t in things]
    fans = [world.supporter(funds=2000)["pk"] for _ in range(2)]
    # A supporter of another tenant clicks too: their journals are private, the sums are not.
    outsider = world.partner()
    fans.append(world.supporter(funds=2000, tenant=outsider["slug"])["pk"])
    period = date(2021, 3, 1)
    asyncio.run(_seed_closed_month(world.dsn, pks[:2], fans, period))

    out = key(ANALYTICS, {"p": "2021-03"})["partnerAnalytics"]
    # Each fan: 10.00 budget, 1.00 fee, 9.00 split over 2 things = 4.50 each.
    assert (out["period"], out["closed"], out["thingsClicked"], out["clicks"]) == ("2021-03", True, 2, 6)
    assert out["earnings"] == {"amount": 3 * 900}
    assert [(n["thing"]["url"], n["clicks"], n["earnings"]["amount"]) for n in out["things"]["nodes"]] == [
        (things[0]["url"], 3, 1350), (things[1]["url"], 3, 1350)]
    # Another tenant sees none of it.
    other = world.api_key(outsider, ["analytics:read"])(ANALYTICS, {"p": "2021-03"})["partnerAnalytics"]
    assert (other["clicks"], other["things"]["nodes"]) == (0, [])
    # This month is open: clicks, no earnings yet.
    current = key(ANALYTICS, {"p": None})["partnerAnalytics"]
    assert current["closed"] is False and current["earnings"] is None
    bad = key.raw(ANALYTICS, {"p": "March"}).json()
    assert bad["errors"][0]["extensions"]["code"] == "INVALID_PERIOD"
