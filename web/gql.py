"""The web app's only way to data: its GraphQL operations (web/operations/*.graphql),
executed in-process through the merged schema as the request's principal, under the
limits any client has (rate limits and query cost: a 429 page past them).

The principal is found as /graphql finds it for a browser (graph.http.Auth): the
`merci_session` cookie, else nobody in the public site's tenant (or the tenant a login
form names). Cookies a mutation sets (logIn, logOut, deleteAccount) reach the page's
answer through web.pages.finish."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import strawberry
from graphql import OperationDefinitionNode, parse
from starlette.requests import Request
from starlette.responses import Response

from graph.context import Context
from graph.errors import has_outage
from graph.http import Auth
from graph.ratelimit import limited_result
from merci.accounts import SESSION_COOKIE, Principal
from merci.ratelimit import RateLimited
from merci.tenants import DEFAULT_TENANT

OPERATIONS = Path(__file__).parent / "operations"


@functools.cache
def operations() -> dict[str, str]:
    """Every operation file's text by its operation's name (which is the file's name)."""
    out: dict[str, str] = {}
    for path in sorted(OPERATIONS.glob("*.graphql")):
        text = path.read_text()
        names = [d.name.value for d in parse(text).definitions
                 if isinstance(d, OperationDefinitionNode) and d.name is not None]
        if names != [path.stem]:
            raise ValueError(f"{path.name} must hold one operation named {path.stem}")
        out[path.stem] = text
    return out


class UnknownTenant(Exception):
    """A form named a platform (tenant) that does not exist."""


class Unavailable(Exception):
    """The API could not answer (an outage, or an unexpected error it masked)."""

    def __init__(self, status: int, errors: list[dict[str, Any]]) -> None:
        super().__init__(f"{status}: {errors}")
        self.status = status
        self.errors = errors


@dataclass
class Result:
    data: dict[str, Any]
    errors: list[dict[str, Any]] = field(default_factory=list)

    def user_errors(self, root: str | None = None) -> list[dict[str, Any]]:
        """A mutation's userErrors ([] when it did what was asked); `root`: its field, if it
        has more than one."""
        payload = self.data.get(root if root is not None else next(iter(self.data), "")) or {}
        return list(payload.get("userErrors") or [])


def _schema(request: Request) -> strawberry.Schema:
    return request.scope["web_schema"]  # type: ignore[no-any-return]  # set by web.routes


async def principal(request: Request, tenant: str | None = None) -> Principal:
    """Who the page acts for: the session cookie's account, or nobody in `tenant` (a
    login form's platform) or the public site's tenant. Cached for the request."""
    cached = request.scope.get("web_principal")
    if cached is not None and tenant is None:
        return cached  # type: ignore[no-any-return]
    state = request.app.state
    auth = Auth(None, state.tenant_ids, state.cors, state.settings.public_url)  # type: ignore[arg-type]
    found: Principal | None = None
    token = request.cookies.get(SESSION_COOKIE, "")
    if tenant is None and token.startswith("ms_"):
        found = await auth.resolve(state.pool, token)
        if found is not None and found.account_id is not None:
            request.state.session_token = token  # logOut reads it, as from /graphql
        else:
            found = None
    if found is None:
        tenant_id = await auth.tenant_id(state.pool, (tenant or DEFAULT_TENANT).strip().lower())
        if tenant_id is None:
            raise UnknownTenant(tenant or DEFAULT_TENANT)
        found = Principal(tenant_id=tenant_id)
    if tenant is None:
        request.scope["web_principal"] = found
    return found


async def run(request: Request, name: str, variables: dict[str, Any] | None = None, *,
              tenant: str | None = None) -> Result:
    """Run operation `name` for this request. A rate limit raises RateLimited (the shell
    answers a 429 page); an outage or a masked error raises Unavailable (a 503 page).
    Field errors of a query that still has data come back in `errors`."""
    state = request.app.state
    who = await principal(request, tenant)
    sub = Response()
    context = Context(request=request, response=sub, principal=who, pool=state.pool, settings=state.settings,
                      queue=state.queue, clicks=state.clicks, prechecks=state.prechecks,
                      tenant_ids=state.tenant_ids, limiter=state.limiter, buckets=state.buckets)
    result = await _schema(request).execute(operations()[name], variable_values=variables or {},
                                            context_value=context, operation_name=name)
    errors: list[dict[str, Any]] = [dict(e.formatted) for e in result.errors or ()]
    answer: dict[str, Any] = {"data": result.data, "errors": errors}
    limited = limited_result(answer)
    if limited is not None:
        raise limited
    # The caller's budget of query cost (graph.cost) is spent: the same 429 page.
    waits = [int((e.get("extensions") or {}).get("retryAfter", 1)) for e in errors if _code(e) == "THROTTLED"]
    if waits:
        raise RateLimited(max(waits), "pages")
    # A mutation that logged in or out changed who the rest of the request acts for.
    request.scope["web_principal"] = context.principal if context.principal.account_id is not None else None
    request.scope.setdefault("web_cookies", []).extend(
        v for k, v in sub.raw_headers if k == b"set-cookie")
    if has_outage(answer):
        raise Unavailable(503, errors)
    if result.data is None:
        raise Unavailable(500 if not any(_code(e) for e in errors) else 400, errors)
    return Result(result.data, errors)


def _code(error: dict[str, Any]) -> str:
    return str((error.get("extensions") or {}).get("code") or "")
