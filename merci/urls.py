"""URL normalization: one page is one thing, however it is linked."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from merci.errors import UserError

# Tracking parameters that never change what a page is.
TRACKING_PREFIXES = ("utm_",)
TRACKING_PARAMS = frozenset({
    "fbclid", "gclid", "dclid", "gbraid", "wbraid", "msclkid", "mc_cid", "mc_eid", "igshid", "yclid",
    "_hsenc", "_hsmi", "mkt_tok", "ref_src", "spm", "oly_anon_id", "oly_enc_id", "vero_id", "_ga", "si",
})
DEFAULT_PORTS = {"http": 80, "https": 443}
MAX_URL = 2048


def normalize_url(raw: str, *, field: str = "url") -> str:
    """Lowercase scheme and host, drop default port, fragment and tracking parameters."""
    if not isinstance(raw, str):
        raise UserError("INVALID_URL", "a URL is a string", field)
    text = raw.strip()
    if not text or len(text) > MAX_URL or any(c.isspace() or ord(c) < 32 for c in text):
        raise UserError("INVALID_URL", "not a valid http(s) URL", field)
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise UserError("INVALID_URL", "not a valid http(s) URL", field) from exc
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise UserError("INVALID_URL", "only http and https URLs can be things", field)
    host = (parts.hostname or "").rstrip(".")
    if not host or parts.username is not None or parts.password is not None:
        raise UserError("INVALID_URL", "not a valid http(s) URL", field)
    try:
        host = host.encode("idna").decode("ascii").lower() if not _is_ip(host) else host.lower()
    except UnicodeError as exc:
        raise UserError("INVALID_URL", "not a valid host name", field) from exc
    if "." not in host and host != "localhost" and not _is_ip(host):
        raise UserError("INVALID_URL", "not a valid host name", field)
    netloc = f"[{host}]" if ":" in host else host
    if port is not None and port != DEFAULT_PORTS[scheme]:
        netloc += f":{port}"
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
             if not k.lower().startswith(TRACKING_PREFIXES) and k.lower() not in TRACKING_PARAMS]
    path = parts.path or "/"
    url = urlunsplit((scheme, netloc, path, urlencode(query, doseq=True), ""))
    if len(url) > MAX_URL:
        raise UserError("INVALID_URL", "this URL is too long", field)
    return url


def _is_ip(host: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def host_of(url: str) -> str:
    return (urlsplit(url).hostname or "").lower()
