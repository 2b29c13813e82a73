"""URL normalization: one page is one thing, however it is linked."""

from __future__ import annotations

import ipaddress
import re
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
_SIMPLE = re.compile(r"(https?)://([a-z0-9-]{1,63}(?:\.[a-z0-9-]{1,63})+)(/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*)?")
_BAD_CHARS = re.compile(r"[\s\x00-\x1f]")
_IP_CHARS = re.compile(r"[0-9A-Fa-f.:]+(%[0-9A-Za-z._~-]+)?")  # IPv4, IPv6 (with a zone id)
# A path the shortcut cannot take as it is: a percent-escape to normalize, or a dot segment.
_NEEDS_PATH_WORK = re.compile(r"%|/\.\.?(?:/|$)")
_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
# merci_canon (migration 0015) in Python: no scheme, no `www.` (unless that is all the
# host has), no trailing slash. The database computes the key; this mirrors it for tests.
_CANON = re.compile(r"https?://(?:www\.(?=[^/?]*\.))?([^?]*)(?:\?(.*))?", re.S)


def normalize_url(raw: str, *, field: str = "url") -> str:
    """Lowercase scheme and host, drop default port, fragment and tracking parameters."""
    if not isinstance(raw, str):
        raise UserError("INVALID_URL", "a URL is a string", field)
    text = raw.strip()
    simple = _SIMPLE.fullmatch(text)
    if simple and len(text) <= MAX_URL and not _NEEDS_PATH_WORK.search(simple[3] or ""):
        # Already normal (most links are): lowercase http(s), a plain host name, a plain path at most.
        return f"{simple[1]}://{simple[2]}{simple[3] or '/'}"
    return _normalize(text, field)


def _normalize(text: str, field: str) -> str:
    if not text or len(text) > MAX_URL or _BAD_CHARS.search(text):
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
    ip = _is_ip(host)
    try:
        host = host.lower() if ip else _ascii_host(host)
    except UnicodeError as exc:
        raise UserError("INVALID_URL", "not a valid host name", field) from exc
    if "." not in host and host != "localhost" and not ip:
        raise UserError("INVALID_URL", "not a valid host name", field)
    netloc = f"[{host}]" if ":" in host else host
    if port is not None and port != DEFAULT_PORTS[scheme]:
        netloc += f":{port}"
    query = ""
    if parts.query:
        query = urlencode([(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
                           if not k.lower().startswith(TRACKING_PREFIXES) and k.lower() not in TRACKING_PARAMS],
                          doseq=True)
    path = _clean_path(parts.path)
    url = urlunsplit((scheme, netloc, path, query, ""))
    if len(url) > MAX_URL:
        raise UserError("INVALID_URL", "this URL is too long", field)
    return url


def _ascii_host(host: str) -> str:
    """The host in ASCII (IDNA), lowercased; raises UnicodeError as the idna codec does."""
    if host.isascii():  # the codec's only check on ASCII: every label has 1 to 63 characters
        if not all(0 < len(label) < 64 for label in host.split(".")):
            raise UnicodeError("label empty or too long")
        return host.lower()
    return host.encode("idna").decode("ascii").lower()


def _is_ip(host: str) -> bool:
    if not _IP_CHARS.fullmatch(host):  # most hosts are names: no need to parse them
        return False
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _clean_path(path: str) -> str:
    """The path as browsers resolve it, written one way: backslashes are slashes (as in
    WHATWG URLs), escapes of unreserved characters decoded and the others in upper case
    (RFC 3986 6.2.2), then dot segments removed. Without this, `/~bob/../~alice/post`
    would be a page under bob's verified scope that every browser opens as alice's."""
    path = _ESCAPE.sub(_unescape, path.replace("\\", "/")) or "/"
    if "/." not in path:
        return path
    out: list[str] = []
    segments = path.split("/")[1:]
    for i, seg in enumerate(segments):
        last = i == len(segments) - 1
        if seg == "..":
            if out:
                out.pop()
            if last:
                out.append("")
        elif seg == ".":
            if last:
                out.append("")
        else:
            out.append(seg)
    return "/" + "/".join(out)


def _unescape(m: re.Match[str]) -> str:
    char = chr(int(m[1], 16))
    return char if char in _UNRESERVED else "%" + m[1].upper()


LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
_HOST_NAME = re.compile(r"[a-z0-9-]{1,63}(?:\.[a-z0-9-]{1,63})*")
_ORIGIN_HELP = "an origin is scheme://host[:port], such as https://app.example"


def normalize_origin(raw: str, *, field: str = "origin") -> str:
    """A web origin written as browsers send it in `Origin` (lowercase, the host in ASCII,
    no default port), for exact comparison with that header. https, or http on this
    machine only (a developer's app): a page served over plain http elsewhere can be
    rewritten on its way, and a listed origin's pages may use the caller's cookie."""
    text = raw.strip() if isinstance(raw, str) else ""
    if not text or len(text) > 300 or _BAD_CHARS.search(text):
        raise UserError("INVALID_ORIGIN", _ORIGIN_HELP, field)
    try:
        parts = urlsplit(text)
        port = parts.port
        host = _ascii_host(parts.hostname or "")
    except (ValueError, UnicodeError) as exc:
        raise UserError("INVALID_ORIGIN", _ORIGIN_HELP, field) from exc
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or parts.path not in ("", "/") or parts.query or parts.fragment \
            or parts.username is not None or parts.password is not None:
        raise UserError("INVALID_ORIGIN", f"{_ORIGIN_HELP}: a scheme and a host, no path, no wildcard", field)
    ip = _is_ip(host)
    if not ip and (not _HOST_NAME.fullmatch(host) or ("." not in host and host != "localhost")):
        raise UserError("INVALID_ORIGIN", f"{_ORIGIN_HELP}: not a valid host name, and no wildcard", field)
    if scheme == "http" and host not in LOOPBACK_HOSTS:
        raise UserError("INSECURE_ORIGIN", "an origin uses https (http only for localhost)", field)
    netloc = f"[{host}]" if ":" in host else host
    if port is not None and port != DEFAULT_PORTS[scheme]:
        netloc += f":{port}"
    return f"{scheme}://{netloc}"


def canonical_key(url: str) -> str:
    """A normalized URL's canonical key, as the database computes it (merci_canon)."""
    m = _CANON.fullmatch(url)
    if m is None:
        raise ValueError(f"not a normalized URL: {url!r}")
    return m[1].rstrip("/") + ("?" + m[2] if m[2] else "")


def host_of(url: str) -> str:
    return (urlsplit(url).hostname or "").lower()
