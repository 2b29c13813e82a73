"""The per-request context: who calls, a scoped transaction, DataLoaders."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Hashable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import asyncpg
from starlette.requests import Request
from starlette.responses import Response
from strawberry.types import Info as _Info

from graph.errors import ClientError
from graph.ratelimit import client_ip
from merci.accounts import Principal
from merci.config import Settings
from merci.db import scoped
from merci.errors import UserError
from merci.ratelimit import Limiter
from merci.tenants import TenantIds
from merci.throttle import Buckets

L = TypeVar("L")


@dataclass
class Context:
    request: Request
    response: Response | None
    principal: Principal
    pool: asyncpg.Pool
    settings: Settings
    queue: Any = None  # merci.queue.Queue: hands work to workers by actor name
    clicks: Any = None  # merci.clicks.ClickBatcher: group commit of accepted clicks
    prechecks: Any = None  # merci.clicks.PrecheckBatcher: group commit of the clicks' prechecks
    tenant_ids: TenantIds = field(default_factory=TenantIds)  # the app's tenant ids by slug
    loaders: dict[Hashable, Any] = field(default_factory=dict)
    # Why the request's token was not taken (it runs anonymously): what needs a caller says so.
    credentials_refused: str | None = None
    limiter: Limiter | None = None  # merci.ratelimit: the stricter limits of some mutations
    buckets: Buckets | None = None  # merci.throttle: each caller's budget of query cost (graph.cost)

    @property
    def client_ip(self) -> str:
        return client_ip(self.request.scope)

    async def limit(self, name: str, *ids: object, cost: int = 1, what: str = "requests") -> None:
        """Count against limit `name` (merci.ratelimit.DEFAULTS); RateLimited refuses the
        whole request (graph.http: 429, Retry-After)."""
        if self.limiter is not None:
            await self.limiter.hit(name, *ids, cost=cost, what=what)

    @asynccontextmanager
    async def tx(self) -> AsyncIterator[asyncpg.Connection]:
        """A transaction of this request: its statements stop at the request's statement
        timeout (settings.statement_timeout_ms), answered as STATEMENT_TIMEOUT."""
        try:
            async with scoped(self.pool, self.principal.scope,
                              statement_timeout_ms=self.settings.statement_timeout_ms) as conn:
                yield conn
        except asyncpg.QueryCanceledError as exc:
            raise ClientError(
                f"a statement of this request took longer than {self.settings.statement_timeout_ms} ms and was"
                " stopped: ask for less (smaller pages, fewer fields)", "STATEMENT_TIMEOUT") from exc

    def loader(self, key: Hashable, factory: Callable[[Context], L]) -> L:
        """One DataLoader per kind per request, so a request batches its lookups."""
        if key not in self.loaders:
            self.loaders[key] = factory(self)
        return self.loaders[key]  # type: ignore[no-any-return]

    def require_account(self) -> int:
        if self.principal.account_id is None:
            raise self.unauthenticated("log in first")
        return self.principal.account_id

    def unauthenticated(self, message: str) -> UserError:
        """UNAUTHENTICATED, saying why the credentials sent were not taken, if they were not."""
        if self.credentials_refused is not None:
            message = f"{self.credentials_refused}: log in again"
        return UserError("UNAUTHENTICATED", message, None)

    def require_scope(self, scope: str) -> None:
        p = self.principal
        if p.api_key_id is not None and scope not in p.scopes:
            raise UserError("FORBIDDEN", f"this API key lacks the {scope!r} scope", None)
        if not p.authenticated:
            raise self.unauthenticated("log in or use an API key")

    def require_tenant_admin(self) -> None:
        p = self.principal
        if not (p.tenant_admin or p.platform_admin):
            raise UserError("FORBIDDEN", "only a tenant admin may do this", None)


Info = _Info[Context, None]
