"""A fake of Stripe's HTTP API, at its boundary: the endpoints Merci's `stripe` library
calls (form-encoded in, JSON out, idempotency keys honoured as Stripe honours them), a
checkout page to pay on, and webhooks signed as Stripe signs them (`Stripe-Signature:
t=<unix time>,v1=<HMAC-SHA256 of "t.body" with the endpoint's secret>`).

Run as `python -m tests.payments.fake_stripe --port N` (the fixture in conftest.py),
with FAKE_STRIPE_WEBHOOK_URL and FAKE_STRIPE_WEBHOOK_SECRET saying where to deliver.
`/_fake/...` are the tests' own controls: the events a payment produced (to deliver
again, out of order, or not at all), a dispute, the state of everything.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import re
import secrets
import time
from typing import Any
from urllib.parse import parse_qsl

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

API_VERSION = "2024-06-20"
FEE_BPS, FEE_FIXED = 150, 25  # 1.5% + 0.25, as Stripe's European cards

objects: dict[str, dict[str, Any]] = {}  # every object by id
idempotency: dict[tuple[str, str], tuple[str, Response]] = {}  # (path, key) -> (params, answer)
calls: list[dict[str, Any]] = []  # every API call: method, path, key
events: list[dict[str, Any]] = []  # every event built, in order


def new_id(prefix: str) -> str:
    return f"{prefix}_test_{secrets.token_hex(10)}"


def sign(payload: str, secret: str, timestamp: int | None = None) -> str:
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{t}.{payload}".encode(), hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def event(kind: str, obj: dict[str, Any]) -> dict[str, Any]:
    e = {"id": new_id("evt"), "object": "event", "api_version": API_VERSION, "created": int(time.time()),
         "data": {"object": json.loads(json.dumps(obj))}, "livemode": False, "pending_webhooks": 1,
         "request": {"id": None, "idempotency_key": None}, "type": kind}
    events.append(e)
    return e


config: dict[str, str] = {}  # webhook_url: where Stripe delivers (set by the test, /_fake/config)


def deliver(e: dict[str, Any]) -> int:
    url = config.get("webhook_url") or os.environ.get("FAKE_STRIPE_WEBHOOK_URL")
    secret = os.environ.get("FAKE_STRIPE_WEBHOOK_SECRET", "")
    if not url:
        return 0
    body = json.dumps(e)
    r = httpx.post(url, content=body, headers={"Stripe-Signature": sign(body, secret),
                                               "Content-Type": "application/json"}, timeout=10)
    return r.status_code


def nested(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """Stripe's form encoding (a[b][0][c]=v) back into objects and lists."""
    root: dict[str, Any] = {}
    for key, value in pairs:
        parts = re.findall(r"[^\[\]]+", key)
        node: Any = root
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            nxt: Any = value if last else ([] if parts[i + 1].isdigit() else {})
            if isinstance(node, list):
                idx = int(part)
                while len(node) <= idx:
                    node.append(None)
                if node[idx] is None or last:
                    node[idx] = nxt
                node = node[idx]
            else:
                if part not in node or last:
                    node[part] = nxt
                node = node[part]
    return root


def error(status: int, message: str, code: str = "", kind: str = "invalid_request_error") -> JSONResponse:
    return JSONResponse({"error": {"type": kind, "message": message, "code": code}}, status_code=status)


async def params_of(request: Request) -> dict[str, Any]:
    body = (await request.body()).decode()
    return nested(parse_qsl(body, keep_blank_values=True) + list(request.query_params.multi_items()))


def authorized(request: Request) -> bool:
    return request.headers.get("authorization", "").startswith("Bearer sk_test_")


def api(handler: Any) -> Any:
    """An API endpoint: a test key, the call logged, the idempotency key honoured."""

    async def endpoint(request: Request) -> Response:
        if not authorized(request):
            return error(401, "Invalid API Key provided", kind="invalid_request_error")
        params = await params_of(request)
        key = request.headers.get("idempotency-key")
        calls.append({"method": request.method, "path": request.url.path, "key": key})
        if request.method == "POST" and key:
            seen = idempotency.get((request.url.path, key))
            fingerprint = json.dumps(params, sort_keys=True)
            if seen is not None:
                if seen[0] != fingerprint:
                    return error(400, "Keys for idempotent requests can only be used with the same parameters",
                                 "idempotency_key_in_use", "idempotency_error")
                replay = seen[1]
                return Response(replay.body, status_code=replay.status_code, media_type="application/json",
                                headers={"Idempotent-Replayed": "true"})
        answer: Response = await handler(request, params)
        if request.method == "POST" and key:
            idempotency[(request.url.path, key)] = (json.dumps(params, sort_keys=True), answer)
        return answer

    return endpoint


def as_int(value: Any) -> int:
    return int(str(value))


async def create_session(request: Request, p: dict[str, Any]) -> Response:
    item = p["line_items"][0]
    amount = as_int(item["price_data"]["unit_amount"]) * as_int(item.get("quantity", 1))
    sid = new_id("cs")
    base = str(request.base_url).rstrip("/")
    s = {"id": sid, "object": "checkout.session", "amount_total": amount, "currency": item["price_data"]["currency"],
         "client_reference_id": p.get("client_reference_id"), "metadata": p.get("metadata", {}),
         "mode": p.get("mode"), "payment_intent": None, "payment_status": "unpaid", "status": "open",
         "success_url": p["success_url"], "cancel_url": p["cancel_url"], "url": f"{base}/pay/{sid}",
         "livemode": False, "_pi_metadata": (p.get("payment_intent_data") or {}).get("metadata", {})}
    objects[sid] = s
    return JSONResponse(public(s))


def public(o: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in o.items() if not k.startswith("_")}


def pay(sid: str, *, succeed: bool) -> list[dict[str, Any]]:
    """The customer pays (or their card is declined): the objects change, and the events
    Stripe would send are built (not delivered: the caller decides)."""
    s = objects[sid]
    amount = s["amount_total"]
    pi = {"id": new_id("pi"), "object": "payment_intent", "amount": amount, "amount_received": 0,
          "currency": s["currency"], "metadata": s["_pi_metadata"], "status": "requires_payment_method",
          "latest_charge": None, "last_payment_error": None, "livemode": False}
    objects[pi["id"]] = pi
    if not succeed:
        pi["last_payment_error"] = {"code": "card_declined", "message": "Your card was declined."}
        return [event("payment_intent.payment_failed", pi)]
    fee = amount * FEE_BPS // 10_000 + FEE_FIXED
    txn = {"id": new_id("txn"), "object": "balance_transaction", "amount": amount, "fee": fee, "net": amount - fee,
           "currency": s["currency"]}
    ch = {"id": new_id("ch"), "object": "charge", "amount": amount, "amount_refunded": 0, "currency": s["currency"],
          "payment_intent": pi["id"], "balance_transaction": txn["id"], "paid": True, "status": "succeeded"}
    objects[txn["id"]], objects[ch["id"]] = txn, ch
    pi.update(status="succeeded", amount_received=amount, latest_charge=ch["id"])
    s.update(payment_intent=pi["id"], payment_status="paid", status="complete")
    return [event("payment_intent.succeeded", pi), event("checkout.session.completed", public(s))]


async def retrieve_payment_intent(request: Request, p: dict[str, Any]) -> Response:
    pi = objects.get(request.path_params["id"])
    if pi is None:
        return error(404, "No such payment_intent", "resource_missing")
    out = dict(pi)
    expand = p.get("expand") or []
    if "latest_charge" in str(expand) and out.get("latest_charge"):
        ch = dict(objects[out["latest_charge"]])
        if "latest_charge.balance_transaction" in str(expand):
            ch["balance_transaction"] = objects[ch["balance_transaction"]]
        out["latest_charge"] = ch
    return JSONResponse(out)


async def create_refund(request: Request, p: dict[str, Any]) -> Response:
    pi = objects.get(str(p.get("payment_intent")))
    if pi is None or not pi.get("latest_charge"):
        return error(400, "No such payment_intent", "resource_missing")
    ch = objects[pi["latest_charge"]]
    amount = as_int(p.get("amount", ch["amount"] - ch["amount_refunded"]))
    if ch.get("disputed"):
        return error(400, "This charge is disputed", "charge_disputed")
    if amount <= 0 or amount > ch["amount"] - ch["amount_refunded"]:
        return error(400, f"Refund amount ({amount}) is greater than unrefunded amount on charge",
                     "amount_too_large")
    ch["amount_refunded"] += amount
    r = {"id": new_id("re"), "object": "refund", "amount": amount, "charge": ch["id"], "currency": ch["currency"],
         "payment_intent": pi["id"], "status": "succeeded", "metadata": p.get("metadata", {})}
    objects[r["id"]] = r
    return JSONResponse(r)


async def create_account(request: Request, p: dict[str, Any]) -> Response:
    a = {"id": new_id("acct").replace("_test_", ""), "object": "account", "type": p.get("type"),
         "country": p.get("country"), "email": p.get("email"), "metadata": p.get("metadata", {}),
         "details_submitted": False, "payouts_enabled": False, "charges_enabled": False}
    a["id"] = "acct_" + secrets.token_hex(8)
    objects[a["id"]] = a
    return JSONResponse(a)


async def create_account_link(request: Request, p: dict[str, Any]) -> Response:
    if str(p.get("account")) not in objects:
        return error(400, "No such account", "resource_missing")
    base = str(request.base_url).rstrip("/")
    return JSONResponse({"object": "account_link", "created": int(time.time()), "expires_at": int(time.time()) + 300,
                         "url": f"{base}/onboard/{p['account']}"})


async def retrieve_account(request: Request, p: dict[str, Any]) -> Response:
    a = objects.get(request.path_params["id"])
    return JSONResponse(a) if a else error(404, "No such account", "resource_missing")


async def create_transfer(request: Request, p: dict[str, Any]) -> Response:
    dest = objects.get(str(p.get("destination")))
    if dest is None:
        return error(400, "No such destination", "resource_missing")
    if not dest.get("payouts_enabled"):
        return error(400, "The destination account cannot receive transfers", "account_invalid")
    t = {"id": new_id("tr"), "object": "transfer", "amount": as_int(p["amount"]), "currency": p["currency"],
         "destination": dest["id"], "metadata": p.get("metadata", {})}
    objects[t["id"]] = t
    return JSONResponse(t)


# ------------------------------------------------------------------ the customer's side


async def checkout_page(request: Request) -> Response:
    s = objects.get(request.path_params["id"])
    if s is None:
        return HTMLResponse("no such session", status_code=404)
    amount = f"{s['amount_total'] / 100:.2f} {s['currency'].upper()}"
    return HTMLResponse(f"""<!doctype html><html><head><title>Fake Stripe Checkout</title></head><body>
<h1>Pay {amount}</h1><form method="post"><button name="outcome" value="pay">Pay {amount}</button>
<button name="outcome" value="decline">Use a declined card</button></form></body></html>""")


async def checkout_submit(request: Request) -> Response:
    sid = request.path_params["id"]
    s = objects.get(sid)
    if s is None or s["status"] != "open":
        return HTMLResponse("this session is over", status_code=400)
    form = dict(parse_qsl((await request.body()).decode()))
    produced = pay(sid, succeed=form.get("outcome") == "pay")
    for e in produced:
        deliver(e)
    if form.get("outcome") != "pay":
        return HTMLResponse("Your card was declined.", status_code=402)
    return RedirectResponse(s["success_url"], status_code=303)


# ------------------------------------------------------------------ the tests' controls


async def fake_pay(request: Request) -> Response:
    """Pay a session without delivering anything: the events come back to the test."""
    body = await request.json()
    return JSONResponse(pay(request.path_params["id"], succeed=bool(body.get("succeed", True))))


async def fake_event(request: Request) -> Response:
    """Build an event of `type` about object `id` (its current state, with `changes`)."""
    body = await request.json()
    obj = dict(objects[body["id"]]) if body.get("id") in objects else {}
    obj.update(body.get("changes") or {})
    if obj.get("id") in objects:
        objects[obj["id"]].update(body.get("changes") or {})
    return JSONResponse(event(body["type"], public(obj)))


async def fake_dispute(request: Request) -> Response:
    """A chargeback on a payment: the `charge.dispute.created` event."""
    body = await request.json()
    pi = objects[body["payment_intent"]]
    ch = objects[pi["latest_charge"]]
    ch["disputed"] = True
    d = {"id": new_id("dp"), "object": "dispute", "amount": as_int(body.get("amount", ch["amount"])),
         "charge": ch["id"], "currency": ch["currency"], "payment_intent": pi["id"], "reason": "fraudulent",
         "status": "needs_response"}
    objects[d["id"]] = d
    return JSONResponse(event("charge.dispute.created", d))


async def fake_config(request: Request) -> Response:
    config.update(await request.json())
    return JSONResponse(config)


async def fake_state(request: Request) -> Response:
    return JSONResponse({"objects": objects, "calls": calls, "events": events})


async def fake_account(request: Request) -> Response:
    """The creator finished onboarding: their account may be paid (`account.updated`)."""
    a = objects[request.path_params["id"]]
    a.update(details_submitted=True, payouts_enabled=True, charges_enabled=True)
    return JSONResponse(event("account.updated", a))


def app() -> Starlette:
    return Starlette(routes=[
        Route("/v1/checkout/sessions", api(create_session), methods=["POST"]),
        Route("/v1/payment_intents/{id}", api(retrieve_payment_intent), methods=["GET"]),
        Route("/v1/refunds", api(create_refund), methods=["POST"]),
        Route("/v1/accounts", api(create_account), methods=["POST"]),
        Route("/v1/accounts/{id}", api(retrieve_account), methods=["GET"]),
        Route("/v1/account_links", api(create_account_link), methods=["POST"]),
        Route("/v1/transfers", api(create_transfer), methods=["POST"]),
        Route("/pay/{id}", checkout_page, methods=["GET"]),
        Route("/pay/{id}", checkout_submit, methods=["POST"]),
        Route("/_fake/pay/{id}", fake_pay, methods=["POST"]),
        Route("/_fake/event", fake_event, methods=["POST"]),
        Route("/_fake/dispute", fake_dispute, methods=["POST"]),
        Route("/_fake/onboard/{id}", fake_account, methods=["POST"]),
        Route("/_fake/state", fake_state, methods=["GET"]),
        Route("/_fake/config", fake_config, methods=["POST"]),
        Route("/healthz", lambda r: Response("ok"), methods=["GET"]),
    ])


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(app(), host="127.0.0.1", port=args.port, log_level="warning")
