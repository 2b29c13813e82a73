"""Stripe, through its official library: the one place Merci talks to its API.

Every POST carries an idempotency key made from one of our own rows' ids
(`merci-topup-<id>`, `merci-refund-<id>`, `merci-payout-<id>`, `merci-connect-<account>`):
a call retried after a timeout or a crash is the same call to Stripe, which answers it
with what it did the first time, so no retry charges, refunds or transfers twice. The
library's own retries are off for the same reason: ours are the keyed ones.

The API base is configurable (STRIPE_API_BASE) so that tests point the library at a
fake of Stripe's HTTP API (tests/payments/fake_stripe.py); test keys (sk_test_...)
reach Stripe's test mode.
"""

from __future__ import annotations

from typing import Any

import stripe

from merci.config import Settings

# Stripe's API version this code speaks (the shapes of its objects and events).
API_VERSION = "2024-06-20"


class StripeError(Exception):
    """Stripe refused the call for good (a card error, an invalid request): `code` says why.
    Passing trouble (a timeout, a 5xx, a rate limit) raises stripe's own errors instead."""

    def __init__(self, message: str, code: str = "") -> None:
        super().__init__(message)
        self.message, self.code = message, code


def configured(settings: Settings) -> bool:
    return bool(settings.stripe_api_key)


class _HTTPX(stripe.HTTPXClient):
    """stripe's httpx client, handing its already-encoded form body to httpx as `content`
    (as `data`, httpx warns that raw bytes are deprecated there)."""

    def _get_request_args_kwargs(self, method: str, url: str, headers: Any, post_data: Any) -> Any:
        args, kwargs = super()._get_request_args_kwargs(method, url, headers, post_data)
        body = kwargs.pop("data")
        if body:
            kwargs["content"] = body
        return [args, kwargs]


class Stripe:
    """The calls Merci makes, async, each with its idempotency key."""

    def __init__(self, settings: Settings) -> None:
        self.client = stripe.StripeClient(
            settings.stripe_api_key,
            base_addresses={"api": settings.stripe_api_base, "connect": settings.stripe_api_base},
            stripe_version=API_VERSION, max_network_retries=0,
            http_client=_HTTPX(timeout=30))

    async def _call(self, method: Any, params: dict[str, Any], key: str | None = None) -> dict[str, Any]:
        options: dict[str, Any] = {"idempotency_key": key} if key else {}
        try:
            obj = await method(params, options) if options else await method(params)
        except (stripe.CardError, stripe.InvalidRequestError, stripe.PermissionError) as err:
            # A refusal that a retry would only repeat.
            raise StripeError(str(err.user_message or err), str(err.code or "")) from err
        return obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)

    async def create_checkout_session(self, params: dict[str, Any], *, key: str) -> dict[str, Any]:
        return await self._call(self.client.v1.checkout.sessions.create_async, params, key)

    async def retrieve_payment_intent(self, payment_intent: str) -> dict[str, Any]:
        # The fee Stripe kept is on the charge's balance transaction.
        svc = self.client.v1.payment_intents
        try:
            obj = await svc.retrieve_async(payment_intent, {"expand": ["latest_charge.balance_transaction"]})
        except stripe.InvalidRequestError as err:
            raise StripeError(str(err.user_message or err), str(err.code or "")) from err
        return obj.to_dict()

    async def create_refund(self, params: dict[str, Any], *, key: str) -> dict[str, Any]:
        return await self._call(self.client.v1.refunds.create_async, params, key)

    async def create_account(self, params: dict[str, Any], *, key: str) -> dict[str, Any]:
        return await self._call(self.client.v1.accounts.create_async, params, key)

    async def create_account_link(self, params: dict[str, Any], *, key: str) -> dict[str, Any]:
        return await self._call(self.client.v1.account_links.create_async, params, key)

    async def retrieve_account(self, account: str) -> dict[str, Any]:
        try:
            obj = await self.client.v1.accounts.retrieve_async(account)
        except stripe.InvalidRequestError as err:
            raise StripeError(str(err.user_message or err), str(err.code or "")) from err
        return obj.to_dict()

    async def create_transfer(self, params: dict[str, Any], *, key: str) -> dict[str, Any]:
        return await self._call(self.client.v1.transfers.create_async, params, key)


_clients: dict[tuple[str, str], Stripe] = {}


def for_settings(settings: Settings) -> Stripe | None:
    """The process's client for these settings (one connection pool), or None without a key."""
    if not settings.stripe_api_key:
        return None
    key = (settings.stripe_api_key, settings.stripe_api_base)
    if key not in _clients:
        _clients[key] = Stripe(settings)
    return _clients[key]


def checkout_origins(settings: Settings) -> tuple[str, ...]:
    """Where a Checkout Session's page lives: the form that starts one is redirected there
    (a page's CSP form-action must name it). Stripe's, or a fake's at STRIPE_API_BASE."""
    from urllib.parse import urlsplit

    base = urlsplit(settings.stripe_api_base)
    if base.hostname == "api.stripe.com":
        return ("https://checkout.stripe.com",)
    return ("https://checkout.stripe.com", f"{base.scheme}://{base.netloc}")
