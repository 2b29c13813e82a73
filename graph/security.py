"""Security headers on every answer of every face: one middleware in the HTTP shell
(graph.http), so that a new page has them without asking.

- every answer: `X-Content-Type-Options: nosniff`, `Referrer-Policy`, and
  `Strict-Transport-Security` when people reach Merci over https (MERCI_PUBLIC_URL);
- framing refused (`X-Frame-Options: DENY`, CSP `frame-ancestors 'none'`) everywhere but
  the paths a face names as frameable: the button, which partner sites embed
  (`frame-ancestors *`, no X-Frame-Options);
- a Content-Security-Policy: pages (HTML) load scripts, styles and images from Merci
  only and post forms to it; anything else (JSON, SVG, scripts) may load nothing.

A route that needs another policy says so in its own answer (GraphiQL's inline script
by its hash, the OAuth consent form posting to the client's redirect URI, the badges'
inline SVG styles): an answer's own Content-Security-Policy is kept as it is.
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

ANYONE = "*"
NOBODY = "'none'"


def page_csp(*, form_action: str = "'self'", frame_ancestors: str = NOBODY, scripts: str = "'self'") -> str:
    """The policy of a server-rendered page; a page needing more passes it in its answer."""
    return ("default-src 'none'; script-src " + scripts + "; style-src 'self' 'unsafe-inline';"
            " img-src 'self' data:; font-src 'self' data:; connect-src 'self';"
            f" form-action {form_action}; frame-ancestors {frame_ancestors}; base-uri 'none'")


def other_csp(frame_ancestors: str = NOBODY) -> str:
    """Anything but a page: nothing to load, nothing to run, even when opened directly."""
    return f"default-src 'none'; frame-ancestors {frame_ancestors}; base-uri 'none'"


HSTS = b"max-age=31536000"  # a year; not includeSubDomains: partners' subdomains are theirs


class SecurityHeaders:
    """ASGI middleware: the headers above on every http answer, whichever route made it."""

    def __init__(self, app: ASGIApp, *, public_url: str, frameable: Iterable[str] = ()) -> None:
        self.app = app
        self.frameable = tuple(frameable)  # path prefixes partner sites may frame
        common = [(b"x-content-type-options", b"nosniff"),
                  (b"referrer-policy", b"strict-origin-when-cross-origin")]
        if public_url.lower().startswith("https://"):
            common.append((b"strict-transport-security", HSTS))
        self.common = common
        self.framed = {
            False: (page_csp().encode(), other_csp().encode(), [(b"x-frame-options", b"DENY")]),
            True: (page_csp(frame_ancestors=ANYONE).encode(), other_csp(ANYONE).encode(), []),
        }

    def may_frame(self, path: str) -> bool:
        return path.startswith(self.frameable) if self.frameable else False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        page, other, framing = self.framed[self.may_frame(scope["path"])]

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                added = [(n, v) for n, v in (*self.common, *framing) if n not in present]
                if b"content-security-policy" not in present:
                    content_type = next((v for n, v in headers if n.lower() == b"content-type"), b"")
                    added.append((b"content-security-policy",
                                  page if content_type.startswith(b"text/html") else other))
                message = {**message, "headers": headers + added}
            await send(message)

        await self.app(scope, receive, sending)
