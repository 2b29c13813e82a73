"""Reviewing flagged clicks through the API (docs/fraud.md): platform admins list them
across tenants and release or reject each once; anyone else sees an empty list and is
refused. The money side (held clicks out of the close) is tests/scenarios/test_click_fraud.py."""

from __future__ import annotations

from typing import Any

from merci.ids import to_global
from tests.conftest import GraphQLClient, sign_up, system_fetch, system_scalar, unique

FLAGGED = """query($status: FlagStatus) { flaggedClicks(status: $status, first: 10) { totalCount nodes {
  clickId period reasons status late reviewedAt reviewedBy { handle } supporter { handle } thing { url } } } }"""
REVIEW = """mutation($id: ID!, $decision: ClickReview!) {
  reviewFlaggedClick(input: {clickId: $id, decision: $decision}) {
  flaggedClick { status late reviewedBy { handle } } userErrors { code field } } }"""


def flagged_click(database_url: str, supporter: dict[str, Any]) -> int:
    """A click of the supporter's, held as detection would hold it (in a month of 2039: no close)."""
    pk = int(system_scalar(database_url, "select id from accounts where handle = $1", supporter["handle"]))
    url = f"https://{unique('ring')}.example/p"
    rows = system_fetch(database_url, """
        with t as (insert into things (tenant_id, url, title) select tenant_id, $2, 'ring' from accounts where id = $1
                   returning id, tenant_id),
             c as (insert into clicks (tenant_id, supporter_id, thing_id, period, accepted_at, idempotency_key)
                   select a.tenant_id, $1, t.id, '2039-03-01', '2039-03-05T10:00:00Z', $3 from t, accounts a
                    where a.id = $1 returning *)
        insert into click_flags (click_id, tenant_id, period, supporter_id, thing_id, accepted_at, reasons)
        select id, tenant_id, period, supporter_id, thing_id, accepted_at, array['burst', 'ring'] from c
        returning click_id""", pk, url, unique("k"))
    return int(rows[0]["click_id"])


def test_platform_admins_review_flagged_clicks(gql: GraphQLClient, database_url: str) -> None:
    admin, fan = sign_up(gql), sign_up(gql)
    system_fetch(database_url, "update account_private set is_platform_admin = true where account_id ="
                 " (select id from accounts where handle = $1)", admin["handle"])
    click = flagged_click(database_url, fan)
    gid = to_global("Click", click)
    as_admin, as_fan = gql.as_(admin["token"]), gql.as_(fan["token"])

    held = as_admin(FLAGGED, {"status": "HELD"})["flaggedClicks"]["nodes"]
    mine = [n for n in held if n["clickId"] == gid]
    assert mine == [{"clickId": gid, "period": "2039-03", "reasons": ["BURST", "RING"], "status": "HELD",
                     "late": False, "reviewedAt": None, "reviewedBy": None, "supporter": {"handle": fan["handle"]},
                     "thing": mine[0]["thing"]}] and mine[0]["thing"]["url"].startswith("https://ring")
    # Nobody else sees a flag, nor reviews one.
    assert as_fan(FLAGGED, {"status": None})["flaggedClicks"] == {"totalCount": 0, "nodes": []}
    assert gql(FLAGGED)["flaggedClicks"]["nodes"] == []
    refused = as_fan(REVIEW, {"id": gid, "decision": "RELEASE"})["reviewFlaggedClick"]
    assert refused == {"flaggedClick": None, "userErrors": [{"code": "FORBIDDEN", "field": None}]}

    done = as_admin(REVIEW, {"id": gid, "decision": "RELEASE"})["reviewFlaggedClick"]
    assert done == {"flaggedClick": {"status": "RELEASED", "late": False, "reviewedBy": {"handle": admin["handle"]}},
                    "userErrors": []}
    assert as_admin(REVIEW, {"id": gid, "decision": "RELEASE"})["reviewFlaggedClick"] == done  # idempotent
    other = as_admin(REVIEW, {"id": gid, "decision": "REJECT"})["reviewFlaggedClick"]
    assert other == {"flaggedClick": None, "userErrors": [{"code": "ALREADY_REVIEWED", "field": ["clickId"]}]}
    assert gid not in [n["clickId"] for n in as_admin(FLAGGED, {"status": "HELD"})["flaggedClicks"]["nodes"]]
    released = as_admin(FLAGGED, {"status": "RELEASED"})["flaggedClicks"]["nodes"]
    assert [n["reviewedBy"] for n in released if n["clickId"] == gid] == [{"handle": admin["handle"]}]
    assert system_scalar(database_url, "select holds from click_flags where click_id = $1", click) is False

    missing = as_admin(REVIEW, {"id": to_global("Click", 2**40), "decision": "REJECT"})["reviewFlaggedClick"]
    assert missing["userErrors"] == [{"code": "NOT_FOUND", "field": ["clickId"]}]
