"""The HTTP shell every face shares: GraphQL at /graphql with authentication and request
limits, health probes and metrics. Each face brings its own pages (`routes`): the api its
embeds, the directory its /directory page (runtime.faces decides which)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import strawberry
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from strawberry.asgi import GraphQL
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from graph import cors, graphiql
from graph.context import Context
from graph.errors import has_outage
from graph.fastpath import FastMutation, FastPath, FastQuery, encode_json, read_body, replay_body
from graph.http_observability import MetricsEndpoint, MetricsPort, Observe, request_header
from graph.ratelimit import count_request, graphql_refusal, limited_result, page_refused
from graph.security import SecurityHeaders
from graph.unavailable import Outages
from merci import accounts, metrics, observability
from merci.accounts import Principal
from merci.clicks import CLICK_QUEUE, INGEST_ACTOR, ClickBatcher, Handoff, PrecheckBatcher
from merci.config import Settings
from merci.cors import Allowlist
from merci.db import Scope as DbScope
from merci.db import create_pool, ping, scoped
from merci.errors import RETRY_AFTER_SECONDS
from merci.ratelimit import Limiter, RateLimited
from merci.tenants import DEFAULT_TENANT, TenantIds
from merci.throttle import Buckets

TENANT_HEADER = "x-merci-tenant"


def _error(status: int, message: str, code: str) -> JSONResponse:
    metrics.GRAPHQL_ERRORS.labels(code).inc()
    return JSONResponse({"errors": [{"message": message, "extensions": {"code": code}}]}, status)


class Auth:
    """Resolves the caller before GraphQL runs.

    Credentials that do not hold (a bad, expired or revoked token, a malformed
    Authorization header) do not fail the request:
    it runs anonymously, so public fields answer as for anyone, while what needs a caller
    answers UNAUTHENTICATED (`me` as a field error, mutations in userErrors), and the
    answer carries `WWW-Authenticate: Bearer error="invalid_token"` (RFC 6750; RFC 7235
    lets any response carry it). A 401 for the whole request made a public page fail
    because a stored token had expired. docs/api.md states the rule.
    """

    def __init__(self, app: ASGIApp, tenant_ids: TenantIds, allowlist: Allowlist, public_url: str) -> None:
        self.app = app
        self.tenant_ids = tenant_ids
        self.allowlist = allowlist  # CORS: which other origins' pages may use the cookie
        self.public_url = public_url

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        pool: asyncpg.Pool = request.app.state.pool
        try:
            principal = await self.authenticate(request, pool)
            await count_request(request.app.state.limiter, scope, principal)
        except _Refused as refused:
            await refused.response(scope, receive, send)
            return
        except RateLimited as limited:
            await graphql_refusal(limited)(scope, receive, _with_headers(send, response_headers(scope)))
            return
        self._admitted(scope, principal)
        headers = response_headers(scope)
        if headers:
            send = _with_headers(send, headers)
        await self.app(scope, receive, send)

    async def admit(self, scope: Scope) -> bool:
        """For graph.fastpath: the caller is resolved (True), or would be refused (False).
        The fast path counts the request's limits itself (graph.ratelimit.admit), with its
        cost and its click's in one round trip."""
        request = Request(scope)
        try:
            principal = await self.authenticate(request, request.app.state.pool)
        except _Refused:
            return False
        self._admitted(scope, principal)
        return True

    @staticmethod
    def _admitted(scope: Scope, principal: Principal) -> None:
        scope.setdefault("state", {})["principal"] = principal
        observability.bind_principal(principal.tenant_id, principal.account_id, principal.api_key_id)

    async def tenant_id(self, pool: asyncpg.Pool, slug: str) -> int | None:
        found = self.tenant_ids.known(slug)
        if found is None:
            async with scoped(pool, DbScope(0)) as conn:
                found = await self.tenant_ids.get(conn, slug)
        return found

    async def authenticate(self, request: Request, pool: asyncpg.Pool) -> Principal:
        header = request_header(request.scope, b"authorization")
        if header:
            scheme, _, token = header.partition(" ")
            token = token.strip()
            if scheme.lower() != "bearer" or not token:
                refuse_credentials(request.scope, "use `Authorization: Bearer <token>`")
            elif (principal := await self.resolve(pool, token)) is None:
                refuse_credentials(request.scope, "invalid, expired or revoked token")
            else:
                request.state.session_token = token if token.startswith("ms_") else None
                return principal
        elif cookie := request.cookies.get(accounts.SESSION_COOKIE):
            # (A cookie whose session ended counts as not sent, as before: the browser drops
            # it when the session expires, and the web app shows "log in" for a null `me`.)
            principal = await self.resolve(pool, cookie)
            # A cookie the calling page may not use (graph.cors.cookie_allowed) counts as not
            # sent, as SameSite would have it: the request runs anonymously (and may log in).
            if principal is not None and principal.account_id is not None and await cors.cookie_allowed(
                    request.scope, self.public_url, self.allowlist, principal.tenant_id):
                request.state.session_token = cookie
                return principal
        given = request_header(request.scope, TENANT_HEADER.encode())
        slug = (DEFAULT_TENANT if given is None else given).strip().lower()
        tenant_id = await self.tenant_id(pool, slug)
        if tenant_id is None:
            raise _Refused(_error(400, f"unknown tenant {slug!r}", "UNKNOWN_TENANT"))
        return Principal(tenant_id=tenant_id)

    async def resolve(self, pool: asyncpg.Pool, token: str) -> Principal | None:
        now = time.monotonic()
        cached = accounts.principals.get(token, now)
        if cached is not None:
            return cached
        generation = accounts.principals.generation  # before the lookup: see PrincipalCache.put
        tenant_id = accounts.token_tenant(token)
        if tenant_id is None:
            return None
        async with scoped(pool, DbScope(tenant_id)) as conn:
            if token.startswith("ms_"):
                principal = await accounts.resolve_session(conn, token=token)
            else:
                principal = await accounts.resolve_api_key(conn, key=token)
        if principal is not None:
            accounts.principals.put(token, principal, now, generation)
        return principal


CREDENTIALS_REFUSED = "credentials_refused"


def refuse_credentials(scope: Scope, why: str) -> None:
    """The request's credentials do not hold: it goes on anonymously (see Auth)."""
    state = scope.setdefault("state", {})
    state[CREDENTIALS_REFUSED] = why
    state["response_headers"] = [(b"www-authenticate",
                                  f'Bearer error="invalid_token", error_description="{why}"'.encode())]


def response_headers(scope: Scope) -> list[tuple[bytes, bytes]]:
    """Headers the answer to this request carries, whichever path answers it (graph.fastpath too)."""
    return list(scope.get("state", {}).get("response_headers", ()))


def _with_headers(send: Send, headers: list[tuple[bytes, bytes]]) -> Send:
    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), *headers]}
        await send(message)

    return sending


class _Refused(Exception):
    def __init__(self, response: Response) -> None:
        self.response = response


class MerciGraphQL(GraphQL[Context, None]):
    def encode_json(self, data: object) -> bytes:
        return encode_json(data)  # UTF-8, as graph.fastpath writes it

    def create_response(self, response_data: Any, sub_response: Response) -> Response:
        # A resolver refused by a rate limit (merci.ratelimit.RateLimited) refuses the whole
        # request, as the limits counted before it do: 429, Retry-After, the errors alone.
        limited = limited_result(response_data) if isinstance(response_data, dict) else None
        if limited is not None:
            response_data = {"errors": response_data["errors"]}
            sub_response.status_code = 429
            sub_response.headers["retry-after"] = str(limited.retry_after)
        elif isinstance(response_data, dict) and has_outage(response_data):
            # The database or the broker is out of reach (graph.unavailable): 503, Retry-After,
            # and what data there is (a mutation before it may have been done).
            sub_response.status_code = 503
            sub_response.headers["retry-after"] = str(RETRY_AFTER_SECONDS)
        return super().create_response(response_data, sub_response)

    async def render_graphql_ide(self, request: Request) -> Response:
        # Its assets from Merci itself, not a CDN; its inline script allowed by its hash.
        return HTMLResponse(graphiql.page(), headers={"content-security-policy": graphiql.csp()})

    async def get_context(self, request: Request, response: Response | None = None) -> Context:  # type: ignore[override]
        state = request.app.state
        return Context(
            request=request, response=response, principal=request.scope["state"]["principal"],
            credentials_refused=request.scope["state"].get(CREDENTIALS_REFUSED),
            pool=state.pool, settings=state.settings, queue=state.queue, clicks=state.clicks,
            prechecks=state.prechecks, tenant_ids=state.tenant_ids, limiter=state.limiter,
            buckets=state.buckets,
        )


class RefuseNul:
    """A NUL character (%00) in a page's path, query or form is refused with 400 before
    any route sees it: PostgreSQL's text cannot hold one, so it would otherwise end as
    an unexpected error wherever it reached the database. GraphQL answers its own
    (graph.limits: a request error like any other)."""

    FORM = b"application/x-www-form-urlencoded"
    LIMIT = 1 << 20  # forms are small; a bigger one is left to its route

    def __init__(self, app: ASGIApp, graphql_path: str) -> None:
        self.app = app
        self.graphql_path = graphql_path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] == self.graphql_path:
            await self.app(scope, receive, send)
            return
        if "\x00" in scope["path"] or b"%00" in scope["query_string"] or b"%00" in scope.get("raw_path", b""):
            await _refuse_nul(send)
            return
        content_type = next((v for k, v in scope["headers"] if k == b"content-type"), b"")
        if scope["method"] != "POST" or not content_type.startswith(self.FORM):
            await self.app(scope, receive, send)
            return
        body, more, gone = await read_body(receive, self.LIMIT)
        if gone:
            return  # the client left
        if b"%00" in body or b"\x00" in body:
            await _refuse_nul(send)
            return
        await self.app(scope, replay_body(body, more, receive), send)


async def _refuse_nul(send: Send) -> None:
    body = b"NUL characters (%00) are not accepted.\n"
    await send({"type": "http.response.start", "status": 400, "headers": [
        (b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


# Probes and scrapes: the cluster's own (kubelet, Prometheus), never behind the Ingress.
INTERNAL_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    try:
        async with request.app.state.pool.acquire(timeout=2) as conn:
            await ping(conn)
    except Exception:  # any failure means "not ready"; the probe retries
        return JSONResponse({"status": "unavailable", "service": "database"}, 503,
                            headers={"retry-after": str(RETRY_AFTER_SECONDS)})
    return JSONResponse({"status": "ok"})


def create_app(
    settings: Settings, schema: strawberry.Schema, *, routes: list[Any] | None = None,
    queue: Any = None, pool_size: int = 20, fast_queries: dict[str, FastQuery] | None = None,
    fast_mutations: dict[str, FastMutation] | None = None, frameable: tuple[str, ...] = (),
) -> Starlette:
    """The app of one face: its schema, its pages (`routes`), the paths of those that
    partner sites may frame (`frameable`: prefixes; every other answer refuses framing)."""
    tenant_ids = TenantIds()  # slugs found, shared by authentication and the resolvers
    allowlist = Allowlist(settings.cors_origins)  # CORS, shared by its middleware, Auth and the mutations
    # The process's principal cache and operation labels follow its app's settings.
    accounts.principals.ttl = settings.auth_cache_seconds
    accounts.passwords.configure(settings.password_hash_threads)
    metrics.configure(settings)

    async def send_clicks(batch: list[list[Any]], signature: str, outbox_id: str | None) -> None:
        outbox = () if outbox_id is None else (outbox_id,)
        await queue.asend(INGEST_ACTOR, batch, signature, *outbox, queue_name=CLICK_QUEUE)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        app.state.settings = settings
        app.state.tenant_ids = tenant_ids
        app.state.cors = allowlist
        # Before anything else: in production a limiter without shared storage stops the start.
        app.state.limiter = Limiter(settings)
        # Each caller's budget of query cost (graph.cost), stored alike, sent with the limits.
        app.state.buckets = Buckets(settings, app.state.limiter.counters)
        app.state.pool = await create_pool(settings.app_database_url, max_size=pool_size,
                                           connect_timeout=settings.db_connect_timeout,
                                           acquire_timeout=settings.db_acquire_timeout)
        # Cached principals are evicted the moment the database says they changed.
        app.state.evictions = None if accounts.principals.ttl <= 0 else await accounts.PrincipalEvictions(
            settings.listen_database_url, accounts.principals).start()
        app.state.queue = queue
        # Accepted clicks: durable before they are answered (an outbox unless the broker
        # is PostgreSQL), then in the broker.
        handoff = None if queue is None else Handoff(send_clicks, secret=settings.secret_key,
                                                      outbox=not queue.durable)
        app.state.clicks = None if handoff is None else ClickBatcher(
            handoff, lambda tenant_id: scoped(app.state.pool, DbScope(tenant_id)))
        # Clicks: checked and handed over in batches (group commit).
        app.state.prechecks = None if handoff is None else PrecheckBatcher(
            settings.app_database_url, currency=settings.currency, handoff=handoff)
        try:
            yield
        finally:
            if app.state.prechecks is not None:
                await app.state.prechecks.close()
            if queue is not None and hasattr(queue, "aclose"):
                await queue.aclose()
            if app.state.evictions is not None:
                await app.state.evictions.close()
            await app.state.pool.close()
            await app.state.limiter.close()
            await app.state.buckets.close()
            observability.flush_tracing()

    graphql = MerciGraphQL(
        # The IDE reads the schema, which is closed outside development and test.
        schema, graphql_ide="graphiql" if settings.dev_env else None,
        allow_queries_via_get=True,
    )
    auth = Auth(graphql, tenant_ids, allowlist, settings.public_url)
    endpoint = Route("/graphql", auth, methods=["GET", "POST"])
    # The client's address (rate limits, logs): X-Forwarded-For's only from a trusted proxy.
    middleware = [*([Middleware(ProxyHeadersMiddleware, trusted_hosts=list(settings.trusted_proxies))]
                    if settings.trusted_proxies else []),
                  Middleware(Observe),
                  # An outage or a missed deadline answers 503 UNAVAILABLE (Observe counts it).
                  Middleware(Outages, deadline=settings.request_deadline_seconds, graphql_path="/graphql"),
                  Middleware(SecurityHeaders, public_url=settings.public_url, frameable=frameable),
                  Middleware(MetricsPort, port=settings.metrics_port, anywhere=settings.dev_env),
                  Middleware(cors.Cors, path="/graphql", allowlist=allowlist, max_age=settings.cors_max_age),
                  Middleware(RefuseNul, graphql_path="/graphql")]
    mutation_type = schema._schema.mutation_type
    # Operations planned ahead (the api's flattr, the directory's search): the face says which.
    fast = {name: m for name, m in (fast_mutations or {}).items()
            if mutation_type is not None and name in mutation_type.fields}
    query_type = schema._schema.query_type
    queries = {name: q for name, q in (fast_queries or {}).items()
               if query_type is not None and name in query_type.fields}
    if (fast or queries) and settings.fast_path:  # off: every operation through Strawberry
        middleware.append(Middleware(FastPath, path="/graphql", route=endpoint, schema=schema._schema,
                                     mutations=fast, queries=queries, admit=auth.admit, context=graphql.get_context))
    app = Starlette(
        routes=[
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", MetricsEndpoint(ttl=settings.metrics_cache_seconds).serve),
            endpoint,
            # GraphiQL's own files (off with the IDE outside development and test).
            *([] if not settings.dev_env else
              [Mount(graphiql.PATH, app=StaticFiles(directory=graphiql.directory()), name="graphiql")]),
            *(routes or []),
        ],
        lifespan=lifespan,
        middleware=middleware,
        exception_handlers={RateLimited: page_refused},  # a page's refusal: 429 and a page to read
    )
    return app
