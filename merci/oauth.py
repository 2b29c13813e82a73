"""Linked accounts: OAuth 2 authorization codes with PKCE (RFC 6749, RFC 7636) by
which a supporter lets a partner send clicks on their behalf.

A partner registers a client (redirect URIs, a secret stored hashed). The supporter
consents on Merci's page, which issues a one-time code bound to the client, the
redirect URI and the PKCE challenge; the partner redeems it with its secret and the
verifier, which creates (or renews) the link and returns its token. Errors are
authlib's RFC 6749 errors, so their codes and bodies are the standard ones.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import asyncpg
from authlib.oauth2.rfc6749 import errors as oauth
from authlib.oauth2.rfc7636 import create_s256_code_challenge

from merci.accounts import hash_secret
from merci.errors import Checks, UserError
from merci.ids import to_global
from merci.paging import Keyset

# What a partner may ask a supporter for. The consent page explains each.
SCOPES = {"clicks:write": "send Merci clicks on your behalf, from your monthly budget"}
DEFAULT_SCOPES = ("clicks:write",)
CODE_TTL = timedelta(minutes=10)
MAX_REDIRECT_URIS = 10
CLIENT_ID_RE = re.compile(r"^mc_(\d{1,18})_[A-Za-z0-9_-]{16,64}$")
VERIFIER_RE = re.compile(r"^[A-Za-z0-9._~-]{43,128}$")  # RFC 7636 §4.1
CHALLENGE_RE = re.compile(r"^[A-Za-z0-9_-]{43}$")  # base64url(SHA-256), unpadded
CLIENT_COLUMNS = "id, client_id, name, redirect_uris, created_at, revoked_at"
LINK_SELECT = """
select l.id, l.tenant_id, l.account_id, l.scopes, l.created_at, l.updated_at, l.revoked_at, a.handle,
       c.name as client_name, t.slug as partner_slug, t.name as partner_name
  from linked_accounts l join accounts a on a.id = l.account_id join oauth_clients c on c.id = l.client_pk
  join tenants t on t.id = l.tenant_id
"""


def clients(*, tenant_id: int) -> Keyset:
    """A tenant's OAuth clients, oldest first."""
    return Keyset(f"select {CLIENT_COLUMNS} from oauth_clients where tenant_id = $1", (tenant_id,),
                  descending=False)


async def client(conn: asyncpg.Connection, *, client_pk: int, tenant_id: int) -> dict[str, Any] | None:
    """One of the tenant's OAuth clients (never its secret's hash)."""
    row = await conn.fetchrow(f"select {CLIENT_COLUMNS} from oauth_clients where id = $1 and tenant_id = $2",
                              client_pk, tenant_id)
    return None if row is None else dict(row)


async def link(conn: asyncpg.Connection, *, link_id: int) -> dict[str, Any] | None:
    """A linked account, as RLS lets the caller see it (the partner's, or the supporter's own)."""
    row = await conn.fetchrow(LINK_SELECT + " where l.id = $1", link_id)
    return None if row is None else dict(row)


def links(*, partner: bool, tenant_id: int, account_id: int | None, active: bool | None) -> Keyset:
    """Linked accounts, oldest first: a partner's (`partner`: its tenant's), or a
    supporter's own; only active (or only ended) ones when `active` says so."""
    return Keyset(LINK_SELECT + " where (case when $1 then l.tenant_id = $2 else l.account_id = $3 end)"
                  " and ($4::boolean is null or (l.revoked_at is null) = $4)",
                  (partner, tenant_id, account_id, active), key="l.id", descending=False)


def client_tenant(client_id: str) -> int | None:
    """The tenant named by a client id, so the token endpoint runs in that tenant's scope."""
    m = CLIENT_ID_RE.match(client_id or "")
    return int(m.group(1)) if m else None


def link_tenant(token: str) -> int | None:
    parts = (token or "").split("_", 2)
    if len(parts) != 3 or parts[0] != "ml" or not parts[1].isdigit() or len(parts[1]) > 18:
        return None
    return int(parts[1])


def check_redirect_uri(raw: str) -> str:
    """Absolute https URIs; plain http only to the partner's own machine (RFC 8252 §7.3)."""
    uri = raw.strip()
    try:
        parts = urlsplit(uri)
    except ValueError as exc:
        raise UserError("INVALID_REDIRECT_URI", f"not a valid URI: {uri!r}", "redirectUris") from exc
    local = parts.hostname in ("localhost", "127.0.0.1", "::1")
    if parts.scheme != "https" and not (parts.scheme == "http" and local):
        raise UserError("INVALID_REDIRECT_URI", f"redirect URIs use https: {uri!r}", "redirectUris")
    if not parts.hostname or parts.fragment or len(uri) > 2048 or parts.username or parts.password:
        raise UserError("INVALID_REDIRECT_URI", f"not a valid redirect URI: {uri!r}", "redirectUris")
    return uri


async def create_client(conn: asyncpg.Connection, *, tenant_id: int, name: str, redirect_uris: list[str],
                        created_by: int | None) -> tuple[int, str, str]:
    """Returns (pk, client id, client secret). The secret is shown once."""
    checks = Checks()
    name = name.strip()
    if not 1 <= len(name) <= 100:
        checks.refuse(UserError("INVALID_NAME", "a name has 1 to 100 characters", "name"))
    uris = [checks(check_redirect_uri, u) for u in redirect_uris]
    if not 1 <= len(uris) <= MAX_REDIRECT_URIS:
        checks.refuse(UserError("INVALID_REDIRECT_URI", f"give 1 to {MAX_REDIRECT_URIS} redirect URIs",
                                "redirectUris"))
    checks.done()
    client_id = f"mc_{tenant_id}_{secrets.token_urlsafe(18)}"
    secret = f"mcs_{secrets.token_urlsafe(32)}"
    pk: int = await conn.fetchval(
        "insert into oauth_clients (tenant_id, client_id, name, secret_hash, redirect_uris, created_by)"
        " values ($1, $2, $3, $4, $5, $6) returning id",
        tenant_id, client_id, name, hash_secret(secret), list(dict.fromkeys(uris)), created_by)
    return pk, client_id, secret


# ---------------------------------------------------------------- the authorization request


class PageError(Exception):
    """Shown to the supporter, never redirected: the client or its redirect URI is not
    trustworthy, so sending the browser there would make Merci an open redirector."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class Authorization:
    client: dict[str, Any]
    redirect_uri: str
    scopes: tuple[str, ...]
    state: str | None
    code_challenge: str


async def check_request(conn: asyncpg.Connection, params: dict[str, str]) -> Authorization:
    """Validate /oauth/authorize's parameters. PageError for an unusable client or
    redirect URI; an authlib OAuth2Error (redirected to the client) for the rest."""
    client_id = params.get("client_id", "")
    client = None
    if client_tenant(client_id) is not None:
        client = await conn.fetchrow(
            "select c.id, c.tenant_id, c.client_id, c.name, c.redirect_uris, t.name as tenant_name"
            " from oauth_clients c join tenants t on t.id = c.tenant_id"
            " where c.client_id = $1 and c.revoked_at is null", client_id)
    if client is None:
        raise PageError("This application is unknown to Merci (client_id).")
    redirect_uri = params.get("redirect_uri") or (client["redirect_uris"][0] if len(client["redirect_uris"]) == 1
                                                  else "")
    if redirect_uri not in client["redirect_uris"]:  # exact match (RFC 6749 §3.1.2.3, OAuth 2.1)
        raise PageError("This application asked to return to an address it did not register (redirect_uri).")
    state = params.get("state")
    if params.get("response_type") != "code":
        raise oauth.UnsupportedResponseTypeError(params.get("response_type") or "", state=state,
                                                 redirect_uri=redirect_uri)
    scopes = tuple(sorted(set((params.get("scope") or " ".join(DEFAULT_SCOPES)).split())))
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown or not scopes:
        # (No user input in a description: RFC 6749 restricts its characters.)
        raise oauth.InvalidScopeError(description=f"unknown scope; known scopes: {' '.join(SCOPES)}",
                                      state=state, redirect_uri=redirect_uri)
    challenge = params.get("code_challenge", "")
    if params.get("code_challenge_method") != "S256" or not CHALLENGE_RE.match(challenge):
        raise oauth.InvalidRequestError(description="PKCE is required: code_challenge with method S256",
                                        state=state, redirect_uri=redirect_uri)
    return Authorization(dict(client), redirect_uri, scopes, state, challenge)


async def issue_code(conn: asyncpg.Connection, *, request: Authorization, account_id: int) -> str:
    """The supporter consented (runs in the supporter's scope)."""
    code = secrets.token_urlsafe(32)
    await conn.execute(
        "insert into oauth_codes (code_hash, tenant_id, client_pk, account_id, redirect_uri, scopes,"
        " code_challenge, expires_at) values ($1, $2, $3, $4, $5, $6, $7, now() + $8::interval)",
        hash_secret(code), request.client["tenant_id"], request.client["id"], account_id, request.redirect_uri,
        list(request.scopes), request.code_challenge, CODE_TTL)
    return code


# ---------------------------------------------------------------- the token endpoint (client's tenant scope)


async def authenticate_client(conn: asyncpg.Connection, *, client_id: str, client_secret: str) -> dict[str, Any]:
    row = await conn.fetchrow(
        "select id, tenant_id, secret_hash from oauth_clients where client_id = $1 and revoked_at is null",
        client_id)
    if row is None or not secrets.compare_digest(bytes(row["secret_hash"]), hash_secret(client_secret or "")):
        raise oauth.InvalidClientError(description="unknown client or wrong secret", status_code=401)
    return dict(row)


async def redeem_code(conn: asyncpg.Connection, *, client: dict[str, Any], code: str, redirect_uri: str | None,
                      code_verifier: str) -> dict[str, Any]:
    """Exchange a code for the link's token; creates or renews the link."""
    if not code:
        raise oauth.InvalidRequestError(description="code is required")
    if not VERIFIER_RE.match(code_verifier or ""):
        raise oauth.InvalidRequestError(description="code_verifier is required (43 to 128 characters)")
    row = await conn.fetchrow(
        "select c.code_hash, c.client_pk, c.account_id, c.redirect_uri, c.scopes, c.code_challenge,"
        " c.expires_at > now() as fresh, c.used_at, a.handle from oauth_codes c join accounts a on a.id = c.account_id"
        " where c.code_hash = $1 for update of c", hash_secret(code))
    if row is None or row["client_pk"] != client["id"]:
        raise oauth.InvalidGrantError(description="unknown authorization code")
    if row["used_at"] is not None:
        # A code used twice was stolen (RFC 6749 §4.1.2): revoke what it granted.
        await conn.execute("update linked_accounts set revoked_at = now() where tenant_id = $1 and account_id = $2"
                           " and revoked_at is null", client["tenant_id"], row["account_id"])
        raise oauth.InvalidGrantError(description="authorization code already used; the link is revoked")
    if not row["fresh"]:
        raise oauth.InvalidGrantError(description="authorization code expired")
    if redirect_uri is not None and redirect_uri != row["redirect_uri"]:
        raise oauth.InvalidGrantError(description="redirect_uri differs from the authorization request")
    if not secrets.compare_digest(create_s256_code_challenge(code_verifier), row["code_challenge"]):
        raise oauth.InvalidGrantError(description="code_verifier does not match the code_challenge")
    await conn.execute("update oauth_codes set used_at = now() where code_hash = $1", row["code_hash"])
    token = f"ml_{client['tenant_id']}_{secrets.token_urlsafe(32)}"
    await conn.execute(
        "insert into linked_accounts (tenant_id, account_id, client_pk, scopes, token_hash) values ($1, $2, $3, $4, $5)"
        " on conflict (tenant_id, account_id) do update set client_pk = excluded.client_pk,"
        " scopes = excluded.scopes, token_hash = excluded.token_hash, updated_at = now(), revoked_at = null",
        client["tenant_id"], row["account_id"], client["id"], list(row["scopes"]), hash_secret(token))
    return {"access_token": token, "token_type": "Bearer", "scope": " ".join(row["scopes"]),
            "merci_account_id": to_global("Account", row["account_id"]), "merci_handle": row["handle"]}


async def revoke_token(conn: asyncpg.Connection, *, client: dict[str, Any], token: str) -> None:
    """RFC 7009: revoking an unknown token is not an error."""
    await conn.execute("update linked_accounts set revoked_at = now() where token_hash = $1 and client_pk = $2"
                       " and revoked_at is null", hash_secret(token), client["id"])


async def revoke_link(conn: asyncpg.Connection, *, link_id: int) -> None:
    """By the supporter or the partner (RLS lets each see only their own links)."""
    status = await conn.execute(
        "update linked_accounts set revoked_at = now(), updated_at = now() where id = $1 and revoked_at is null",
        link_id)
    if status != "UPDATE 1":
        raise UserError("NOT_FOUND", "no such active linked account", "id")
