"""OAuth 2 endpoints for linked accounts: the consent page (/oauth/authorize), the
token endpoint, revocation (RFC 7009) and the server's metadata (RFC 8414)."""

from __future__ import annotations

import base64
import binascii
from typing import Any
from urllib.parse import unquote, urlencode

from authlib.oauth2.base import OAuth2Error
from authlib.oauth2.rfc6749 import errors as oauth_errors
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from api.embeds import web
from api.embeds.i18n import ERRORS, FORBIDDEN, SCOPES, say
from merci import accounts, oauth
from merci.db import Scope, scoped
from merci.errors import UserError

AUTH_PARAMS = ("response_type", "client_id", "redirect_uri", "scope", "state", "code_challenge",
               "code_challenge_method")


def _redirect(error: OAuth2Error) -> Response:
    status, body, headers = error()
    if status in (302, 303):
        return RedirectResponse(dict(headers)["Location"], status_code=303)
    return JSONResponse(dict(error.get_body()), status_code=status, headers=dict(headers))


async def _request(request: Request, params: dict[str, str], lang: str) -> oauth.Authorization | Response:
    try:
        async with scoped(request.app.state.pool, await web.anonymous_scope(request)) as conn:
            return await oauth.check_request(conn, params)  # clients are public by policy
    except oauth.PageError as err:
        return web.error(lang, [UserError("INVALID_CLIENT", err.message)], status=400)
    except OAuth2Error as err:
        return _redirect(err)


async def authorize_get(request: Request) -> Response:
    lang = web.choose_lang(request)
    params = {k: v for k, v in web.params(request).items() if k in AUTH_PARAMS}
    checked = await _request(request, params, lang)
    if isinstance(checked, Response):
        return checked
    who = await web.session(request)
    if who is None:
        here = "/oauth/authorize?" + urlencode(params | {"lang": lang})
        return RedirectResponse("/embed/login?" + urlencode({"next": here, "lang": lang}), status_code=303)
    principal, token = who
    assert principal.account_id is not None  # (web.session answers accounts only)
    async with scoped(request.app.state.pool, principal.scope) as conn:
        handle = await accounts.handle_of(conn, account_id=principal.account_id)
    return web.page(
        "consent.html", lang=lang, client=checked.client, handle=handle, fields=params,
        scopes=[say(lang, SCOPES[s]) if s in SCOPES else s for s in checked.scopes],
        csrf=web.csrf_token(web.settings_of(request), token, "oauth"),
        # The browser follows the answer to the client's redirect URI: allow the form there.
        form_action=f"'self' {web.origin_of(checked.redirect_uri)}",
    )


async def authorize_post(request: Request) -> Response:
    lang = web.choose_lang(request)
    data = await web.form(request)
    who = await web.session(request)
    if not web.same_origin(request) or who is None or \
            not web.csrf_ok(web.settings_of(request), who[1], "oauth", data.get("csrf", "")):
        return web.error(lang, [UserError("FORBIDDEN", say(lang, FORBIDDEN))], status=403)
    params = {k: v for k, v in data.items() if k in AUTH_PARAMS}
    checked = await _request(request, params, lang)
    if isinstance(checked, Response):
        return checked
    if data.get("decision") != "allow":
        return _redirect(oauth_errors.AccessDeniedError(state=checked.state, redirect_uri=checked.redirect_uri))
    principal = who[0]
    assert principal.account_id is not None
    try:  # a linked partner clicks from the supporter's budget: money moves (docs/api.md)
        accounts.require_verified(principal)
    except UserError as err:
        return web.error(lang, [UserError(err.code, say(lang, ERRORS[err.code]))], status=403)
    async with scoped(request.app.state.pool, principal.scope) as conn:
        code = await oauth.issue_code(conn, request=checked, account_id=principal.account_id)
    query = {"code": code} | ({"state": checked.state} if checked.state is not None else {})
    separator = "&" if "?" in checked.redirect_uri else "?"
    return RedirectResponse(checked.redirect_uri + separator + urlencode(query), status_code=303)


def _token_error(error: OAuth2Error) -> Response:
    status, _, headers = error()
    return JSONResponse(dict(error.get_body()), status_code=status,
                        headers=dict(headers) | {"Cache-Control": "no-store", "Pragma": "no-cache"})


def _client_credentials(request: Request, data: dict[str, str]) -> tuple[str, str]:
    """client_secret_basic (RFC 6749 §2.3.1: form-urlencoded, then Basic) or client_secret_post."""
    header = request.headers.get("authorization", "")
    if header.lower().startswith("basic "):
        try:
            raw = base64.b64decode(header[6:].strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise oauth_errors.InvalidClientError(description="malformed Basic credentials",
                                                  status_code=401) from None
        client_id, _, secret = raw.partition(":")
        return unquote(client_id), unquote(secret)
    return data.get("client_id", ""), data.get("client_secret", "")


async def _with_client(request: Request, work: Any) -> Response:
    data = await web.form(request)
    try:
        client_id, secret = _client_credentials(request, data)
        tenant_id = oauth.client_tenant(client_id)
        if tenant_id is None:
            raise oauth_errors.InvalidClientError(description="unknown client or wrong secret", status_code=401)
        # The client's tenant: a partner redeems codes and renews links in its own scope.
        async with scoped(request.app.state.pool, Scope(tenant_id)) as conn:
            client = await oauth.authenticate_client(conn, client_id=client_id, client_secret=secret)
            try:
                result: Response = await work(conn, client, data)
            except OAuth2Error as err:
                # Commit what the refusal did (a reused code revokes its link).
                return _token_error(err)
    except OAuth2Error as err:
        return _token_error(err)
    return result


async def token(request: Request) -> Response:
    async def work(conn: Any, client: dict[str, Any], data: dict[str, str]) -> Response:
        if data.get("grant_type") != "authorization_code":
            raise oauth_errors.UnsupportedGrantTypeError(data.get("grant_type", "")[:40])
        body = await oauth.redeem_code(conn, client=client, code=data.get("code", ""),
                                       redirect_uri=data.get("redirect_uri"),
                                       code_verifier=data.get("code_verifier", ""))
        return JSONResponse(body, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})

    return await _with_client(request, work)


async def revoke(request: Request) -> Response:
    async def work(conn: Any, client: dict[str, Any], data: dict[str, str]) -> Response:
        await oauth.revoke_token(conn, client=client, token=data.get("token", ""))
        return JSONResponse({}, headers={"Cache-Control": "no-store"})

    return await _with_client(request, work)


async def metadata(request: Request) -> Response:
    base = web.settings_of(request).public_url.rstrip("/")
    return JSONResponse({
        "issuer": base,
        "authorization_endpoint": f"{base}/oauth/authorize",
        "token_endpoint": f"{base}/oauth/token",
        "revocation_endpoint": f"{base}/oauth/revoke",
        "response_types_supported": ["code"],
        "grant_types_supported": ["authorization_code"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "scopes_supported": sorted(oauth.SCOPES),
    })
