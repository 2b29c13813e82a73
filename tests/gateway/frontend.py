"""A frontend's whole operation set, as a scenario that can be replayed against any
deployment of Merci: the operations are the .graphql files in operations/ and the web
app's, web/operations/ (one named operation each; web/<Name> where the names meet with
different texts), and SCENARIO says who sends which, with what, in what order, and what
the database is told between steps that no GraphQL operation does (a site proven, a
partner link consented to). Replayed on two fresh databases it gives two transcripts that
compare once the volatile parts (ids, tokens, times) are named by order of appearance.

Used by tests/gateway/test_operations.py (one process against each gateway) and by
bench/gateway_bench.py."""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from graphql import OperationDefinitionNode, OperationType, parse

from merci.ids import from_global
from tests.conftest import prove_site, system_scalar

OPERATIONS = Path(__file__).parent / "operations"
# The web app's own operations (web/gql.py): each page's data, replayed here too (issue 18).
WEB_OPERATIONS = Path(__file__).resolve().parents[2] / "web" / "operations"
WEB = "web/"  # a web operation whose name a different gateway operation has is sent as web/<Name>
PASSWORD = "correct horse battery"


def _folder(folder: Path) -> dict[str, str]:
    out = {}
    for path in sorted(folder.glob("*.graphql")):
        text = path.read_text()
        names = [d.name.value for d in parse(text).definitions
                 if isinstance(d, OperationDefinitionNode) and d.name is not None]
        assert names == [path.stem], f"{path.name} must hold one operation named {path.stem}"
        out[path.stem] = text
    return out


def web_operations() -> dict[str, str]:
    """Each web/operations file's name -> its name in operations(): its own, unless a
    gateway operation of that name says something else (then web/<Name>)."""
    gateway = _folder(OPERATIONS)
    return {name: name if gateway.get(name, text) == text else WEB + name
            for name, text in _folder(WEB_OPERATIONS).items()}


def operations() -> dict[str, str]:
    """Every operation file's text, by its operation name (which is its file name): this
    folder's, and the web app's (web/<Name> where a gateway operation has the name with
    other text; the same text is one operation)."""
    out = _folder(OPERATIONS)
    web = _folder(WEB_OPERATIONS)
    for name, key in web_operations().items():
        out[key] = web[name]
    return out


def root_fields(text: str) -> set[tuple[str, str]]:
    """(query|mutation, field) of every root field a document selects."""
    out = set()
    for d in parse(text).definitions:
        if isinstance(d, OperationDefinitionNode) and d.operation in (OperationType.QUERY, OperationType.MUTATION):
            out |= {(d.operation.value, s.name.value) for s in d.selection_set.selections  # type: ignore[attr-defined]
                    if s.kind == "field"}
    return out


Vars = dict[str, Any] | Callable[[dict[str, Any]], dict[str, Any]]


@dataclass
class Step:
    """One request: an operation (a file's name) or an inline document (`document`, for
    what only a careless client sends), by a principal (a name in the run's principals),
    with variables (or a function of what earlier steps kept). `keep` names values of the
    answer for later steps (name -> dotted path in data); `then` runs after the step with
    the run (database work no operation does)."""

    operation: str
    by: str = "anon"
    variables: Vars = field(default_factory=dict)
    keep: dict[str, str] = field(default_factory=dict)
    then: Callable[[Run], None] | None = None
    document: str | None = None
    method: str = "POST"
    headers: dict[str, str] = field(default_factory=dict)
    # Served by one process only: _service and _entities are federation's, which a
    # gateway does not expose to clients. The gateways must refuse them as unknown.
    single_process_only: bool = False
    # Principals whose bearer token the answer's `token` becomes / whose cookie the
    # answer's Set-Cookie becomes.
    token_for: str | None = None
    cookie_for: str | None = None


@dataclass
class Answer:
    status: int
    body: Any
    set_cookie: list[str]
    cors: dict[str, str]
    www_authenticate: str | None = None  # why a token was not taken (the request ran anonymously)


class Run:
    """One replay of the scenario against one deployment: `url` its GraphQL endpoint,
    `dsn` its database (for the steps no operation does)."""

    def __init__(self, url: str, dsn: str) -> None:
        self.url, self.dsn = url, dsn
        self.kept: dict[str, Any] = {}
        self.bearer: dict[str, str] = {"bad": "ms_1_not-a-token"}
        self.cookies: dict[str, str] = {}
        self.http = httpx.Client(timeout=30)
        self.docs = operations()

    def headers(self, who: str) -> dict[str, str]:
        name, _, tenant = who.partition("@")
        headers = {"x-merci-tenant": tenant} if tenant else {}
        if name.endswith("-cookie"):  # none when the deployment set none: the diff then shows
            session = self.cookies.get(name.removesuffix("-cookie"), "")
            headers["cookie"] = f"merci_session={session}; theme=dark"
        elif name != "anon":
            headers["authorization"] = f"Bearer {self.bearer[name]}"
        return headers

    def send(self, step: Step) -> Answer:
        document = step.document if step.document is not None else self.docs[step.operation]
        variables = step.variables(self.kept) if callable(step.variables) else step.variables
        headers = {**self.headers(step.by), **step.headers}
        if step.method == "OPTIONS":
            r = self.http.options(self.url, headers=headers)
        elif step.method == "GET":
            r = self.http.get(self.url, params={"query": document}, headers=headers)
        else:
            r = self.http.post(self.url, json={"query": document, "variables": variables}, headers=headers)
        try:
            body = r.json()
        except ValueError:
            body = r.text
        cors = {k: v for k, v in r.headers.items() if k.startswith("access-control-")}
        return Answer(r.status_code, body, r.headers.get_list("set-cookie"), cors, r.headers.get("www-authenticate"))

    def step(self, step: Step) -> Answer:
        answer = self.send(step)
        data = answer.body.get("data") if isinstance(answer.body, dict) else None
        for name, path in step.keep.items():
            value: Any = data
            for key in path.split("."):
                value = value[int(key)] if isinstance(value, list) else (value or {}).get(key)
            self.kept[name] = value
        if step.token_for is not None and data:
            token = next(iter(data.values()))["token"]
            if token:
                self.bearer[step.token_for] = token
        if step.cookie_for is not None:
            for cookie in answer.set_cookie:
                name, _, rest = cookie.partition("=")
                if name == "merci_session":
                    self.cookies[step.cookie_for] = rest.split(";")[0]
        if step.then is not None:
            step.then(self)
        return answer

    def replay(self, scenario: list[Step]) -> list[Answer]:
        return [self.step(step) for step in scenario]

    # Database work no operation does, as the workers or a consent would do it.
    def sql(self, statement: str, *args: object) -> Any:
        return system_scalar(self.dsn, statement, *args)

    def pk(self, name: str) -> int:
        return from_global(self.kept[name])[1]


def make_platform_admin(handle: str) -> Callable[[Run], None]:
    return lambda run: run.sql("update account_private set is_platform_admin = true where account_id ="
                               " (select id from accounts where handle = $1) returning account_id", handle)


def prove(handle: str, url: str) -> Callable[[Run], None]:
    """The verification worker found the proof (tests.conftest.prove_site)."""
    def go(run: Run) -> None:
        prove_site(run.dsn, handle, url)
    return go


def link(supporter: str, client: str) -> Callable[[Run], None]:
    """The supporter consented through OAuth (the /oauth pages, not GraphQL)."""
    def go(run: Run) -> None:
        run.kept["link"] = None
        pk = run.sql(
            "insert into linked_accounts (tenant_id, account_id, client_pk, scopes, token_hash)"
            " select c.tenant_id, $1, c.id, '{clicks:write}', $3 from oauth_clients c where c.id = $2 returning id",
            run.pk(supporter), run.pk(client), hashlib.sha256(f"ml_{supporter}".encode()).digest())
        run.kept["link"] = base64.urlsafe_b64encode(f"LinkedAccount:{pk}".encode()).decode().rstrip("=")
    return go


def delivery(endpoint: str) -> Callable[[Run], None]:
    """An event the webhook worker delivered once (and failed)."""
    def go(run: Run) -> None:
        pk = run.sql(
            "with e as (insert into webhook_events (tenant_id, type, payload) select tenant_id, 'month.closed',"
            " '{\"period\": \"2001-01\"}' from webhook_endpoints where id = $1 returning id, tenant_id)"
            " insert into webhook_deliveries (tenant_id, event_id, endpoint_id, status, attempts)"
            " select e.tenant_id, e.id, $1, 'failed', 1 from e returning id", run.pk(endpoint))
        run.kept["delivery"] = base64.urlsafe_b64encode(f"WebhookDelivery:{pk}".encode()).decode().rstrip("=")
    return go


def held(supporter: str, thing: str) -> Callable[[Run], None]:
    """Detection held a click of the supporter's on the thing for review (in a month of
    2039, which no close reaches), kept as `flagged`."""
    def go(run: Run) -> None:
        pk = run.sql(
            "with c as (insert into clicks (tenant_id, supporter_id, thing_id, period, accepted_at, idempotency_key)"
            " select tenant_id, $1, $2, '2039-03-01', '2039-03-05T10:00:00Z', 'held-1' from things where id = $2"
            " returning *)"
            " insert into click_flags (click_id, tenant_id, period, supporter_id, thing_id, accepted_at, reasons)"
            " select id, tenant_id, period, supporter_id, thing_id, accepted_at, array['burst', 'ring'] from c"
            " returning click_id", run.pk(supporter), run.pk(thing))
        run.kept["flagged"] = base64.urlsafe_b64encode(f"Click:{pk}".encode()).decode().rstrip("=")
    return go


def mailed(handle: str, path: str = "/account/verify") -> Callable[[Run], None]:
    """The link the deployment mailed to `handle` (its outbox), kept as `<handle><path>`:
    its owner follows it."""
    def go(run: Run) -> None:
        body = run.sql("select body from mail_outbox where recipient = $1 and body like '%' || $2 || '%'"
                       " order by id desc limit 1", f"{handle}@example.org", path)
        found = re.search(re.escape(path) + r"\?token=([^&\s]+)", body or "")
        run.kept[handle + path] = found.group(1) if found else None
    return go


def follow(handle: str, **step: Any) -> Step:
    """`handle` follows the verification link mailed to them: verified, and logged in."""
    return Step("VerifyEmail", variables=lambda k: {"input": {"token": k[handle + "/account/verify"]}},
                keep={handle: "verifyEmail.account.id"}, **step)


def person(handle: str, tenant: str | None = None) -> dict[str, Any]:
    return {"input": {"email": f"{handle}@example.org", "password": PASSWORD, "handle": handle,
                      "displayName": handle.title()}}


def login(handle: str) -> dict[str, Any]:
    return {"input": {"email": f"{handle}@example.org", "password": PASSWORD}}


PARTNER_SCOPES = ["read", "things:write", "clicks:write", "sites:write", "webhooks:write", "analytics:read"]
LISTING = {"title": "Alice writes", "description": "Essays about zithers and tea", "language": "en",
           "category": "text", "tags": ["zither", "tea"]}
APP = "https://app.blogs.example"
PREFLIGHT = {"access-control-request-method": "POST", "access-control-request-headers": "content-type, authorization"}
DEEP = ("query TooDeep { me { creator { things { nodes { owner { things { nodes { owner { things { nodes { owner {"
        " things { nodes { id } } } } } } } } } } } } } }")

SCENARIO: list[Step] = [
    # A platform admin, a partner tenant with its admin, a creator and supporters.
    Step("SignUp", variables=person("olga"), token_for="root", then=make_platform_admin("olga")),
    Step("LogIn", variables=login("olga"), token_for="root", cookie_for="root"),
    Step("Viewer", by="root"),
    Step("Viewer", by="root-cookie"),
    Step("CreateTenant", by="root", variables={"input": {"slug": "blogs", "name": "Blogs", "partnerShareBps": 2000,
         "admin": {"email": "blogadmin@example.org", "password": PASSWORD, "handle": "blogadmin"}}}),
    Step("CreateTenant", by="root", variables={"input": {"slug": "blogs", "name": "Blogs again"}}),
    Step("CreateTenant", by="anon", variables={"input": {"slug": "mine", "name": "Mine"}}),
    Step("LogIn", by="anon@blogs", variables=login("blogadmin"), token_for="admin"),
    Step("SignUp", by="anon@blogs", variables=person("alice"), then=mailed("alice")),
    follow("alice", by="anon@blogs", token_for="alice", cookie_for="alice"),
    follow("alice", by="anon@blogs"),  # once only: no second login from the link
    Step("SignUp", by="anon@blogs", variables=person("dave"), then=mailed("dave")),
    follow("dave", by="anon@blogs", token_for="dave"),
    Step("SignUp", by="anon@blogs", variables=person("dave")),  # answered as the first (the owner is told)
    Step("SignUp", variables={"input": {"email": "not-an-email", "password": "short", "handle": "x"}}),
    Step("SignUp", variables={"input": {"email": "weak@example.org", "password": "aaaaaaaaaa", "handle": "weak"}}),
    Step("SignUp", variables=person("erin"), then=mailed("erin")),
    Step("VerifyEmail", variables={"input": {"token": "not-a-token"}}),
    follow("erin", cookie_for="erin"),
    Step("LogIn", variables={"input": {"email": "erin@example.org", "password": "wrong password"}}),
    Step("ResendVerification", variables={"input": {"email": "nobody@example.org"}}),
    Step("RequestPasswordReset", variables={"input": {"email": "erin@example.org"}},
         then=mailed("erin", "/account/reset")),
    Step("ResetPassword", variables=lambda k: {"input": {"token": k["erin/account/reset"],
                                                         "newPassword": "aaaaaaaaaa"}}),
    Step("ChangePassword", by="erin-cookie", variables={"input": {"currentPassword": "wrong password",
                                                                  "newPassword": "zithers and tea cups"}}),
    Step("DeleteAccount", by="erin-cookie", variables={"input": {"password": "wrong password"}}),
    Step("CurrentTenant", by="anon@blogs"),
    Step("CurrentTenant", by="erin-cookie"),
    # The partner's API keys.
    Step("CreateApiKey", by="admin", variables={"input": {"name": "partner", "scopes": PARTNER_SCOPES}},
         keep={"key": "createApiKey.apiKey.id", "key_secret": "createApiKey.secret"},
         then=lambda run: run.bearer.__setitem__("key", run.kept["key_secret"])),
    Step("CreateApiKey", by="admin", variables={"input": {"name": "old", "scopes": ["read"]}},
         keep={"old": "createApiKey.apiKey.id", "old_secret": "createApiKey.secret"},
         then=lambda run: run.bearer.__setitem__("old", run.kept["old_secret"])),
    Step("CreateApiKey", by="admin", variables={"input": {"name": "bad", "scopes": ["everything"]}}),
    Step("CreateApiKey", by="dave", variables={"input": {"name": "mine", "scopes": ["read"]}}),
    Step("CurrentTenant", by="old"),
    Step("RevokeApiKey", by="admin", variables=lambda k: {"id": k["old"]}),
    Step("CurrentTenant", by="old"),  # a revoked key: anonymous, and WWW-Authenticate says so
    Step("ApiKeys", by="admin"),
    Step("ApiKeys", by="dave"),
    Step("ApiKeys", by="admin", variables={"first": 500}),
    # Every tenant: platform admins only (a tenant admin, a supporter, a key and nobody see none).
    Step("Tenants", by="root", variables={"first": 1}, keep={"tenants": "tenants.pageInfo.endCursor"}),
    Step("Tenants", by="root", variables=lambda k: {"first": 5, "after": k["tenants"]}),
    Step("Tenants", by="admin"),
    Step("Tenants", by="dave"),
    Step("Tenants", by="key"),
    Step("Tenants"),
    # Sites: added, proven (by the verification worker), listed, by the creator and the partner.
    Step("AddSite", by="alice", variables={"url": "https://alice.example/"}, keep={"s1": "addSite.site.id"}),
    Step("VerifySite", by="alice", variables=lambda k: {"id": k["s1"]},
         then=prove("alice", "https://alice.example/")),
    Step("ListSite", by="alice", variables=lambda k: {"input": {"siteId": k["s1"], **LISTING}}),
    Step("ListSite", by="alice", variables=lambda k: {"input": {"siteId": k["s1"], **LISTING, "category": "soup"}}),
    Step("AddSite", by="alice", variables={"url": "https://alice-two.example/"}, keep={"s2": "addSite.site.id"},
         then=prove("alice", "https://alice-two.example/")),
    Step("BulkListSites", by="key", variables=lambda k: {"listings": [{
        "siteId": k["s2"], "title": "Alice dessine", "description": "Des cithares au crayon", "language": "fr",
        "category": "images", "tags": ["cithare"]}]}),
    Step("AddSite", by="key", variables=lambda k: {"url": "https://alice-three.example/", "owner": k["alice"]}),
    Step("AddSite", by="dave", variables={"url": "javascript:alert(1)"}),
    Step("VerifySite", by="dave", variables=lambda k: {"id": k["s1"]}),
    # Things: submitted, claimed, registered by the partner.
    Step("SubmitThing", by="alice", variables={"input": {
        "url": "https://alice.example/post-1", "title": "Zither tuning", "tags": ["zither"]}},
         keep={"t1": "submitThing.thing.id"}),
    Step("SubmitThing", by="dave", variables={"input": {"url": "https://unclaimed.example/essay", "title": "An essay"}},
         keep={"t2": "submitThing.thing.id"}, then=prove("alice", "https://unclaimed.example/")),
    Step("ClaimThing", by="alice", variables=lambda k: {"id": k["t2"]}),
    Step("ClaimThing", by="dave", variables=lambda k: {"id": k["t1"]}),
    Step("RegisterThings", by="key", variables=lambda k: {"things": [
        {"url": "https://alice.example/post-2", "title": "Tea notes", "ownerId": k["alice"]},
        {"url": "ftp://nowhere", "title": "Bad"}]}),
    Step("RegisterThings", by="key", variables=lambda k: {"things": [
        {"url": "https://alice.example/post-2", "title": "Tea notes", "ownerId": k["alice"]}]},
         keep={"t3": "registerThings.things.0.id"}),
    Step("RegisterThings", by="dave", variables={"things": [{"url": "https://dave.example/", "title": "Mine"}]}),
    # Money and clicks.
    Step("BudgetSettings"),
    Step("TopUp", by="dave", variables={"amount": 5000, "key": "topup-1"}),
    Step("TopUp", by="dave", variables={"amount": 5000, "key": "topup-1"}),
    Step("TopUp", by="dave", variables={"amount": -5}),
    # Card top-ups: the options, and (no Stripe on this deployment) a clear refusal.
    Step("TopUpOptions", by="dave"),
    Step("StartTopUp", by="dave", variables={"amount": 1000, "key": "card-1"}),
    Step("StartTopUp", by="dave", variables={"amount": 50, "key": "card-2"}),
    Step("RequestRefund", by="dave", variables={"input": {"topUpId": "VG9wVXA6MQ", "idempotencyKey": "r-1"}}),
    Step("RequestRefund", by="dave", variables={"input": {"topUpId": "nope", "idempotencyKey": "r-2"}}),
    Step("SetMonthlyBudget", by="dave", variables={"amount": 1000}),
    Step("SetMonthlyBudget", by="dave", variables={"amount": 150}),
    Step("Flattr", by="dave", variables=lambda k: {"input": {"thingId": k["t1"], "idempotencyKey": "click-1"}}),
    Step("Flattr", by="dave", variables=lambda k: {"input": {"thingId": k["t1"], "idempotencyKey": "click-1"}}),
    Step("Flattr", by="dave", variables={"input": {"url": "https://somewhere.example/new",
                                                    "idempotencyKey": "click-2"}}),
    Step("Flattr", by="alice", variables=lambda k: {"input": {"thingId": k["t1"], "idempotencyKey": "own"}}),
    Step("Flattr", by="erin-cookie", variables=lambda k: {"input": {"thingId": k["t1"], "idempotencyKey": "poor"}}),
    Step("Flattr", variables=lambda k: {"input": {"thingId": k["t1"], "idempotencyKey": "anon"}}),
    # Subscriptions: the type composition once took for the subscription root.
    Step("Subscribe", by="dave", variables=lambda k: {"thing": k["t3"], "months": 3},
         keep={"sub": "subscribe.subscription.id"}),
    Step("Subscribe", by="dave", variables=lambda k: {"thing": k["t1"], "months": 5}),
    Step("MySubscriptions", by="dave"),
    Step("PauseSubscription", by="dave", variables=lambda k: {"id": k["sub"]}),
    Step("PauseSubscription", by="alice", variables=lambda k: {"id": k["sub"]}),
    Step("ResumeSubscription", by="dave", variables=lambda k: {"id": k["sub"]}),
    Step("CancelSubscription", by="dave", variables=lambda k: {"id": k["sub"]}),
    Step("MySubscriptions", by="dave"),
    Step("Node", by="dave", variables=lambda k: {"id": k["sub"]}),
    Step("Node", by="alice", variables=lambda k: {"id": k["sub"]}),
    Step("Dashboard", by="dave", variables={"key": "click-1"}),
    Step("Dashboard", by="dave", variables={"key": "never-sent", "period": "2001-13"}),
    Step("Viewer", by="dave"),
    # The partner: OAuth clients, linked supporters, clicks on their behalf, webhooks, analytics.
    Step("CreateOAuthClient", by="admin", variables={"name": "Blogs app", "uris": ["https://blogs.example/callback"]},
         keep={"client": "createOAuthClient.oauthClient.id"}, then=link("dave", "client")),
    Step("CreateOAuthClient", by="dave", variables={"name": "Mine", "uris": ["http://evil.example/cb"]}),
    Step("OAuthClients", by="admin"),
    Step("LinkedAccounts", by="key"),
    Step("LinkedAccounts", by="dave", variables={"active": True}),
    Step("SubmitClicks", by="key", variables=lambda k: {"clicks": [
        {"supporterId": k["dave"], "thingId": k["t1"], "idempotencyKey": "partner-1"},
        {"supporterId": k["erin"], "thingId": k["t1"], "idempotencyKey": "partner-2"}]}),
    Step("RevokeLinkedAccount", by="dave", variables=lambda k: {"id": k["link"]}),
    Step("RevokeLinkedAccount", by="erin-cookie", variables=lambda k: {"id": k["link"]}),
    Step("CreateWebhookEndpoint", by="key", variables={"url": "https://hooks.example/merci",
         "events": ["CLICK_ACCEPTED", "PAYOUT_SENT"]}, keep={"hook": "createWebhookEndpoint.webhookEndpoint.id"},
         then=delivery("hook")),
    Step("CreateWebhookEndpoint", by="key", variables={"url": "http://127.0.0.1:1/", "events": ["MONTH_CLOSED"]}),
    Step("UpdateWebhookEndpoint", by="key", variables=lambda k: {"input": {"id": k["hook"], "active": False}}),
    Step("UpdateWebhookEndpoint", by="key", variables=lambda k: {"input": {"id": k["hook"], "active": True,
         "events": ["MONTH_CLOSED"]}}),
    Step("RotateWebhookSecret", by="key", variables=lambda k: {"id": k["hook"]}),
    Step("ReplayWebhookDelivery", by="key", variables=lambda k: {"id": k["delivery"]}),
    Step("ReplayWebhookDelivery", by="dave", variables=lambda k: {"id": k["delivery"]}),
    Step("WebhookEndpoints", by="key"),
    Step("PartnerAnalytics", by="key"),
    Step("PartnerAnalytics", by="dave"),
    # Clicks held for review (docs/fraud.md): platform admins list and decide; nobody else sees one.
    Step("FlaggedClicks", by="root", variables={"status": "HELD", "first": 10}, then=held("dave", "t1")),
    Step("FlaggedClicks", by="root", variables={"status": "HELD", "first": 10}),
    Step("FlaggedClicks", by="dave", variables={"status": None}),
    Step("FlaggedClicks", by="key"),
    Step("ReviewFlaggedClick", by="dave", variables=lambda k: {"id": k["flagged"], "decision": "RELEASE"}),
    Step("ReviewFlaggedClick", by="root", variables=lambda k: {"id": k["flagged"], "decision": "REJECT"}),
    Step("ReviewFlaggedClick", by="root", variables=lambda k: {"id": k["flagged"], "decision": "RELEASE"}),
    Step("ReviewFlaggedClick", by="root", variables={"id": "Q2xpY2s6MTA5OTUxMTYyNzc3Ng", "decision": "REJECT"}),
    Step("FlaggedClicks", by="root", variables={"status": "REJECTED"}),
    # Payouts: nothing earned yet.
    Step("RequestPayout", by="alice", variables={"key": "payout-1"}),
    Step("RequestPayout", by="alice", variables={"key": "payout-2", "amount": 1}),
    Step("SetPayoutMethod", by="alice", variables={"input": {"method": "SEPA", "iban": "DE00 0000", "holder": "A"}}),
    Step("SetPayoutMethod", by="alice", variables={"input": {"method": "SEPA", "iban": "DE89 3704 0044 0532 0130 00",
                                                             "holder": "Alice"}}),
    Step("StartStripeOnboarding", by="alice", variables={"country": "FR"}),
    Step("Dashboard", by="alice", variables={"key": "none"}),
    # The directory and public pages' data, by anyone.
    Step("Categories"),
    Step("Categories", variables={"lang": "fr"}),
    Step("Sites"),
    Step("Sites", variables={"first": 0}),
    Step("SearchSites", variables={"q": "zither", "tenant": "blogs"}),
    Step("SearchSites", variables={"q": "ziter", "tenant": "blogs"}),
    Step("SearchSites", variables={"tenant": "blogs", "sort": "NEWEST"}),
    Step("Creator", variables={"handle": "alice"}),
    Step("Creator", by="alice", variables={"handle": "alice"}),
    Step("Creator", variables={"handle": "nobody"}),
    Step("Thing", variables=lambda k: {"id": k["t1"]}),
    Step("Thing", variables={"id": "not-an-id"}),
    Step("ThingByUrl", variables={"url": "http://www.alice.example/post-1/?utm_source=x"}),
    Step("ThingByUrl", variables={"url": "https://never.example/"}),
    Step("Node", variables=lambda k: {"id": k["t1"]}),
    Step("Node", variables=lambda k: {"id": k["s1"]}),
    Step("Node", variables=lambda k: {"id": k["key"]}),
    Step("Node", by="admin", variables=lambda k: {"id": k["key"]}),
    Step("Site", variables=lambda k: {"id": k["s1"]}),
    Step("Site", by="admin", variables=lambda k: {"id": k["s2"]}),
    Step("UnlistSite", by="alice", variables=lambda k: {"id": k["s2"]}),
    Step("UnlistSite", by="dave", variables=lambda k: {"id": k["s1"]}),
    Step("Creator", by="alice", variables={"handle": "alice"}),
    Step("Viewer"),
    Step("Categories", method="GET"),
    # The web app's pages (web/operations, run by web/*.py): each page's data and forms, by
    # whom the page serves. Texts the gateway set has too are sent above under their name.
    Step("Home"),
    Step("Home", by="dave"),
    Step("web/SignUp", by="anon@blogs", variables=person("frank")),
    Step("web/LogIn", by="anon@blogs", variables=login("dave"), cookie_for="dave"),
    Step("web/LogIn", by="anon@blogs", variables={"input": {"email": "dave@example.org", "password": "wrong"}}),
    Step("AccountPage", by="dave-cookie"),
    Step("AccountPage", by="dave"),
    Step("TopUpPage", by="dave"),
    Step("web/TopUp", by="dave", variables={"amount": 1000, "key": "web-topup-1", "provider": "dev"}),
    Step("web/SetMonthlyBudget", by="dave", variables={"amount": 200}),
    Step("web/SubmitThing", by="dave", variables={"input": {"url": "https://dave-reads.example/a", "title": "A read"}}),
    Step("SubscribePage", by="dave", variables=lambda k: {"id": k["t3"]}),
    Step("SubscribePage", by="dave", variables={"id": "not-an-id"}),
    Step("web/Subscribe", by="dave", variables=lambda k: {"thing": k["t3"], "months": 1}),
    Step("ThingPage", variables=lambda k: {"id": k["t1"]}),
    Step("ThingPage", by="dave", variables=lambda k: {"id": k["t3"]}),
    Step("MonthStatement", by="dave", variables={"period": "2001-01"}),
    Step("StatementPdf", by="dave", variables={"period": "2001-01"}),
    Step("DataExport", by="dave"),
    Step("DeleteAccountPage", by="dave"),
    Step("web/RevokeLinkedAccount", by="dave", variables=lambda k: {"id": k["link"]}),
    Step("CreatorPage", by="alice"),
    Step("web/AddSite", by="alice", variables={"url": "https://alice-four.example/"},
         keep={"s4": "addSite.site.id"}),
    Step("web/VerifySite", by="alice", variables=lambda k: {"id": k["s4"]}),
    Step("SitePage", by="alice", variables=lambda k: {"id": k["s4"], "lang": "en"}),
    Step("SitePage", by="dave", variables=lambda k: {"id": k["s1"], "lang": "fr"}),
    Step("web/ListSite", by="alice", variables=lambda k: {"input": {"siteId": k["s1"], **LISTING}}),
    Step("web/UnlistSite", by="dave", variables=lambda k: {"id": k["s1"]}),
    Step("web/RequestPayout", by="alice", variables={"key": "web-payout-1"}),
    Step("PartnerPage", by="admin"),
    Step("PartnerPage", by="dave", variables={"period": "2001-01"}),
    Step("web/CreateApiKey", by="admin", variables={"name": "web", "scopes": ["read"]},
         keep={"webkey": "createApiKey.apiKey.id"}),
    Step("web/RevokeApiKey", by="admin", variables=lambda k: {"id": k["webkey"]}),
    Step("OAuthPage", by="admin"),
    Step("web/CreateOAuthClient", by="admin", variables={"name": "Blogs web", "uris": ["https://blogs.example/web"]}),
    Step("WebhooksPage", by="admin"),
    Step("web/CreateWebhookEndpoint", by="admin", variables={"url": "https://hooks.example/web",
         "events": ["MONTH_CLOSED"], "description": "from the web"}),
    Step("web/ReplayWebhookDelivery", by="admin", variables=lambda k: {"id": k["delivery"]}),
    Step("WebhooksPage", by="dave"),
    Step("AdminPage", by="root", variables={"status": "REJECTED"}),
    Step("AdminPage", by="dave"),
    Step("web/CreateTenant", by="root", variables={"input": {"slug": "shop", "name": "Shop"}}),
    Step("web/ReviewFlaggedClick", by="root", variables=lambda k: {"id": k["flagged"], "decision": "RELEASE"}),
    # What a careless client sends: refused alike.
    Step("Viewer", by="bad"),
    Step("Viewer", by="anon@no-such-tenant"),
    Step("TooDeep", document=DEEP),
    Step("Broken", document="query Broken { me { handle }"),
    Step("UnknownField", document="query UnknownField { nope }"),
    Step("Aliases", document="{ " + " ".join(f"a{i}: defaultBudget {{ amount }}" for i in range(31)) + " }"),
    Step("Tokens", document="{ " + "defaultBudget { amount } " * 800 + "}"),
    Step("NulLiteral", document='{ thingByUrl(url: "https://a.example/\\u0000") { id } }'),
    Step("ThingByUrl", variables={"url": "https://a.example/\u0000"}),
    Step("Thing", variables={}),
    Step("Introspection", document="{ __schema { queryType { name } mutationType { name }"
                                   " subscriptionType { name } } }"),
    # Federation's own fields: the single process serves them, a gateway hides them.
    Step("Service", single_process_only=True),
    Step("Entities", variables=lambda k: {"representations": [{"__typename": "Thing", "id": k["t1"]}]},
         single_process_only=True),
    # CORS is the api's to decide (merci/cors.py, docs/cors.md): the gateways pass Origin on
    # and relay its answers, preflights included.
    Step("AddCorsOrigin", by="admin", variables={"origin": "https://App.Blogs.example:443"}),
    Step("AddCorsOrigin", by="admin", variables={"origin": "http://app.blogs.example"}),
    Step("AddCorsOrigin", by="key", variables={"origin": "https://key.example"}),
    Step("AddCorsOrigin", by="dave", variables={"origin": "https://dave.example"}),
    Step("AddCorsOrigin", by="admin", variables={"origin": "https://old.blogs.example"}),
    Step("RemoveCorsOrigin", by="admin", variables={"origin": "https://old.blogs.example"}),
    Step("RemoveCorsOrigin", by="admin", variables={"origin": "https://never.example"}),
    Step("CurrentTenant", by="admin"),
    Step("Preflight", method="OPTIONS", document="", headers={**PREFLIGHT, "origin": APP}),
    Step("Preflight", method="OPTIONS", document="", headers={**PREFLIGHT, "origin": "https://evil.example"}),
    Step("Viewer", by="dave", headers={"origin": APP}),
    Step("Viewer", by="alice-cookie", headers={"origin": APP}),  # the listing tenant's user: her cookie counts
    Step("Viewer", by="erin-cookie", headers={"origin": APP}),  # another tenant's: counts as not sent
    Step("Viewer", by="bad", headers={"origin": APP}),  # a refusal carries CORS too
    Step("Broken", document="query Broken { me { handle }", headers={"origin": APP}),  # refused by a gateway itself
    Step("BudgetSettings", headers={"origin": "https://evil.example"}),
    # Logging out: the cookie is cleared, and the session stops counting.
    Step("LogOut", by="erin-cookie"),
    Step("Viewer", by="erin-cookie"),
    Step("LogOut", by="root", variables={"all": True}),
    Step("Viewer", by="root-cookie"),
    Step("LogOut"),
    Step("web/LogOut", by="alice-cookie"),
    Step("Viewer", by="alice-cookie"),
]


# ------------------------------------------------------------------ comparing transcripts

DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}")
VOLATILE = {"token", "secret", "clientSecret", "clientId", "hint", "metaTag", "linkTag", "wellKnownUrl",
            "wellKnownContent", "sdl"}


class Names:
    """Names volatile values by order of appearance, so that two runs compare: the third
    distinct token seen is `token#3` in both."""

    def __init__(self) -> None:
        self.seen: dict[tuple[str, str], str] = {}

    def name(self, kind: str, value: str) -> str:
        key = (kind, value)
        if key not in self.seen:
            self.seen[key] = f"<{kind}#{sum(1 for k in self.seen if k[0] == kind) + 1}>"
        return self.seen[key]

    def value(self, key: str | None, value: Any, within: str | None = None) -> Any:
        if isinstance(value, dict):
            return {k: self.value(k, v, key) for k, v in value.items()}
        if isinstance(value, list):
            return [self.value(key, v, within) for v in value]
        if key == "id" and isinstance(value, int) and not isinstance(value, bool):
            # A table's own key in a JSON scalar (a data export's rows): sequences hand them
            # out with gaps that differ between deployments. Named within their list.
            return self.name(f"pk:{within}", str(value))
        if not isinstance(value, str):
            return value
        if key in VOLATILE:
            return self.name(key, value)
        if DATETIME.match(value):
            return "<time>"
        decoded = _decode(value)
        if decoded is not None:
            kind, _, rest = decoded.partition(":")
            return self.name("cursor" if kind == "c" else f"id:{kind}", value)
        return value

    def cookie(self, header: str) -> str:
        name, _, rest = header.partition("=")
        value, _, attributes = rest.partition(";")
        attrs = sorted(a.strip() for a in attributes.split(";") if not a.strip().lower().startswith("expires="))
        shown = value if value in ("", '""') else self.name("cookie", value)  # cleared, or a session
        return "; ".join([f"{name}={shown}", *attrs])


def _decode(value: str) -> str | None:
    if not re.fullmatch(r"[A-Za-z0-9_\-]{4,}={0,2}", value):
        return None
    try:
        text = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    return text if re.fullmatch(r"[A-Za-z]+:[\w\-:.]+", text) else None


def transcript(scenario: list[Step], answers: list[Answer]) -> Iterator[dict[str, Any]]:
    """What a client can rely on of each answer: the status, the data, the errors' codes
    (their wording is graphql-core's or graphql-js's), the session cookie set or cleared,
    and the CORS headers; volatile values named by order of appearance."""
    names = Names()
    for i, (step, answer) in enumerate(zip(scenario, answers, strict=True)):
        body = answer.body if isinstance(answer.body, dict) else {"text": answer.body}
        errors = body.get("errors") or []
        yield {
            "step": f"{i} {step.operation} by {step.by}",
            "status": answer.status,
            "data": names.value(None, body.get("data")),
            "codes": [(e.get("extensions") or {}).get("code") for e in errors],
            "set-cookie": sorted(names.cookie(c) for c in answer.set_cookie),
            "cors": answer.cors,
            "www-authenticate": answer.www_authenticate,
        }
