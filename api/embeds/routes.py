"""The embeds' HTTP routes: the api face's pages (runtime.faces.pages mounts them)."""

from __future__ import annotations

from starlette.routing import Route

from api.embeds import badge, button, login, oauth, oembed, submit

# What partner sites may frame (graph.security): the button, `/embed/button` (its page, its
# POST's answer and its errors, all inside the iframe). Every other answer refuses framing.
FRAMEABLE = ("/embed/button",)


def routes() -> list[Route]:
    return [
        Route("/embed/button.js", button.button_js, methods=["GET"]),
        Route("/embed/frame.js", button.frame_js, methods=["GET"]),
        Route("/embed/grant.js", button.grant_js, methods=["GET"]),
        Route("/embed/button", button.button_get, methods=["GET"]),
        Route("/embed/button", button.button_post, methods=["POST"]),
        Route("/embed/session", button.session_post, methods=["POST"]),
        Route("/embed/login", login.login_get, methods=["GET"]),
        Route("/embed/login", login.login_post, methods=["POST"]),
        Route("/submit", submit.submit_get, methods=["GET"]),
        Route("/submit", submit.submit_post, methods=["POST"]),
        Route("/submit/auto", submit.submit_get, methods=["GET"]),
        Route("/submit/auto", submit.submit_post, methods=["POST"]),
        Route("/badge/thing/{id}.svg", badge.thing_badge, methods=["GET"]),
        Route("/badge/creator/{handle}.svg", badge.creator_badge, methods=["GET"]),
        Route("/badge/url.svg", badge.url_badge, methods=["GET"]),
        Route("/oembed", oembed.oembed, methods=["GET"]),
        Route("/oauth/authorize", oauth.authorize_get, methods=["GET"]),
        Route("/oauth/authorize", oauth.authorize_post, methods=["POST"]),
        Route("/oauth/token", oauth.token, methods=["POST"]),
        Route("/oauth/revoke", oauth.revoke, methods=["POST"]),
        Route("/.well-known/oauth-authorization-server", oauth.metadata, methods=["GET"]),
    ]
