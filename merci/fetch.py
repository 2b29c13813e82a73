"""The SSRF-guarded HTTP client for URLs named by users: a GET of pages (site verification,
owner discovery) and a POST to webhook endpoints.

A URL typed by a stranger must never make the server talk to itself or to its private
network. So every hop resolves the host once, refuses it if *any* address is not public,
and connects to that checked address (the "pin"): a DNS answer that changes between the
check and the connection (rebinding) cannot redirect the request somewhere else.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
import ssl
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import httpx

from merci.config import Settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

ERROR_CODES = frozenset(
    {
        "INVALID_URL",
        "BAD_SCHEME",
        "FORBIDDEN_ADDRESS",
        "DNS_FAILURE",
        "TOO_LARGE",
        "BAD_ENCODING",
        "TIMEOUT",
        "TOO_MANY_REDIRECTS",
        "CONNECTION_FAILED",
        "HTTP_ERROR",
    }
)


@dataclass(frozen=True)
class FetchResult:
    url: str  # final URL after redirects (the host name, never the pinned address)
    status: int
    content_type: str
    body: bytes


class FetchError(Exception):
    """A refused or failed fetch; `code` is one of ERROR_CODES, `status` is set for HTTP_ERROR."""

    def __init__(self, code: str, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status

    def __repr__(self) -> str:
        return f"FetchError({self.code!r}, {self.message!r})"


@dataclass(frozen=True)
class FetchPolicy:
    allow_loopback: bool = False  # tests serve pages on 127.0.0.1
    max_bytes: int = 1_000_000
    timeout: float = 5.0  # the whole fetch: DNS, every hop and the body
    max_redirects: int = 5
    user_agent: str = "MerciBot/1.0 (+https://merci.example/bot)"


DEFAULT_POLICY = FetchPolicy()


def policy_for(settings: Settings) -> FetchPolicy:
    """The default policy; MERCI_FETCH_ALLOW_LOOPBACK=1 lets dev and test servers on 127.0.0.1 through."""
    return FetchPolicy(allow_loopback=settings.fetch_allow_loopback)


# Checked explicitly as well as through `ipaddress` properties, whose tables changed between
# Python releases (3.11 calls 100.64/10 neither private nor global, 2002::/16 global, ...).
_PRIVATE = tuple(ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"))
_SHARED = ipaddress.ip_network("100.64.0.0/10")  # carrier-grade NAT: someone's internal network
_SPECIAL = tuple(
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8",  # "this network": 0.x reaches the local host on Linux
        "192.0.0.0/24",  # IETF protocol assignments
        "192.0.2.0/24",  # documentation
        "192.88.99.0/24",  # 6to4 relay anycast
        "198.18.0.0/15",  # benchmarking
        "198.51.100.0/24",  # documentation
        "203.0.113.0/24",  # documentation
        "240.0.0.0/4",  # reserved, including the broadcast address
        "::/96",  # deprecated IPv4-compatible addresses
        "64:ff9b:1::/48",  # local-use NAT64: translates into a private network
        "100::/64",  # discard-only
        "2001::/23",  # IETF protocol assignments, including Teredo tunnels
        "2001:db8::/32",  # documentation
        "2002::/16",  # 6to4 tunnels embed any IPv4 address, private ones too
        "3fff::/20",  # documentation
        "5f00::/16",  # segment routing
        "fec0::/10",  # deprecated site-local
    )
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def address_problem(address: IPAddress | str, *, allow_loopback: bool = False) -> str | None:
    """Why `address` must not be contacted, or None for a public unicast address."""
    ip = ipaddress.ip_address(address.split("%", 1)[0] if isinstance(address, str) else address)
    if isinstance(ip, ipaddress.IPv6Address):
        # An IPv6 form of an IPv4 address reaches that IPv4 address: judge it instead.
        if ip.ipv4_mapped is not None:
            return address_problem(ip.ipv4_mapped, allow_loopback=allow_loopback)
        if ip in _NAT64:
            # Loopback through a translator is the translator's, never an allowed test server.
            return address_problem(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_loopback:
        # The one exception, for tests and dev servers: never private or metadata addresses.
        return None if allow_loopback else "loopback"
    if ip.is_link_local:
        return "link-local"  # includes the cloud metadata service 169.254.169.254
    if ip.is_multicast:
        return "multicast"
    if any(ip in net for net in _PRIVATE):
        return "private"
    if ip in _SHARED:
        return "shared (carrier-grade NAT)"
    if any(ip in net for net in _SPECIAL) or ip.is_reserved:
        return "reserved"
    if isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local:
        return "site-local"
    if ip.is_private or not ip.is_global:
        return "not globally routable"
    return None


def is_public_address(address: IPAddress | str, *, allow_loopback: bool = False) -> bool:
    return address_problem(address, allow_loopback=allow_loopback) is None


# Letters, digits, hyphens and underscores (seen in real host names), as IDNA leaves them.
_HOST_LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
_HOSTNAME = re.compile(rf"(?=.{{1,253}}\.?\Z){_HOST_LABEL}(?:\.{_HOST_LABEL})*\.?", re.IGNORECASE)
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _parse(url: str, base: httpx.URL | None = None) -> httpx.URL:
    """A checked http(s) URL, without credentials or fragment; `base` resolves a Location."""
    try:
        parsed = base.join(url.strip()) if base is not None else httpx.URL(url.strip())
        host = parsed.raw_host.decode("ascii")
        port = parsed.port
    except (httpx.InvalidURL, ValueError, TypeError) as exc:  # UnicodeError is a ValueError
        raise FetchError("INVALID_URL", f"not a valid URL: {url!r} ({exc})") from None
    if not parsed.scheme:
        raise FetchError("INVALID_URL", f"not an absolute URL: {url!r}")
    if parsed.scheme not in ("http", "https"):
        raise FetchError("BAD_SCHEME", f"only http and https can be fetched, not {parsed.scheme}:")
    # httpx accepts hosts such as "exa%20mple.com" and ports past 65535; refuse them here.
    if not host or (_literal(host) is None and not _HOSTNAME.fullmatch(host)):
        raise FetchError("INVALID_URL", f"not a valid host name in {url!r}")
    if port is not None and not 0 < port < 65536:
        raise FetchError("INVALID_URL", f"not a valid port in {url!r}")
    # A bot has no business forwarding credentials someone put into a URL.
    return httpx.URL(scheme=parsed.scheme, host=host, port=port, raw_path=parsed.raw_path)


async def resolve(host: str, port: int, policy: FetchPolicy) -> list[IPAddress]:
    """Every address of `host`, all of them allowed: one bad answer refuses the host.

    Refusals name the host as given and never what it resolves to: users read them
    (verification errors, webhook attempts), and the server's view of its own network
    (that `db` is at 10.0.3.7, a private address) is not theirs to see.
    """
    literal = _literal(host)
    if literal is not None:
        addresses = [literal]
    else:
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
        except (OSError, UnicodeError):  # socket.gaierror is an OSError
            raise FetchError("DNS_FAILURE", f"cannot resolve {host}") from None
        addresses = []
        for family, _, _, _, sockaddr in infos:
            if family in (socket.AF_INET, socket.AF_INET6):
                ip = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
                if ip not in addresses:
                    addresses.append(ip)
        if not addresses:
            raise FetchError("DNS_FAILURE", f"{host} has no IP address")
    for ip in addresses:
        problem = address_problem(ip, allow_loopback=policy.allow_loopback)
        if problem is not None:
            kind = f": a {problem} address" if literal is not None else ""  # an address as typed: say why
            raise FetchError("FORBIDDEN_ADDRESS", f"{host} is not publicly reachable{kind}")
    return addresses


def failure(exc: BaseException) -> str:
    """Why a connection failed, without the address it went to: socket errors carry it
    ("Connect call failed ('203.0.113.9', 443)"), and users read these reasons."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return f"its TLS certificate was refused ({cause.verify_message})"
        if isinstance(cause, ssl.SSLError):
            return "the TLS handshake failed"
        if isinstance(cause, ConnectionRefusedError):
            return "the connection was refused"
        if isinstance(cause, ConnectionResetError):
            return "the connection was reset"
        cause = cause.__cause__ or cause.__context__
    return "the connection failed"


def _client(policy: FetchPolicy) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        # Redirects are followed by the caller, if at all, so that every hop is checked like the first.
        follow_redirects=False,
        # No proxies from the environment: a proxy would connect wherever it likes.
        trust_env=False,
        # The system's trust store (SSL_CERT_FILE/SSL_CERT_DIR honoured) or certifi's.
        verify=httpx.create_ssl_context(trust_env=True),
        timeout=httpx.Timeout(policy.timeout),
        # No reuse: a connection checked and TLS-verified for one host must not serve another.
        limits=httpx.Limits(max_keepalive_connections=0),
    )


async def _send(client: httpx.AsyncClient, method: str, url: httpx.URL, policy: FetchPolicy, *,
                headers: Mapping[str, str], content: bytes | None = None) -> httpx.Response:
    """Send a request to one of `url`'s checked addresses; the response is open (streamed)."""
    host = url.raw_host.decode("ascii")
    port = url.port or (443 if url.scheme == "https" else 80)
    addresses = await resolve(host, port, policy)
    # The name, while the URL carries the pinned address.
    headers = {**headers, "Host": url.netloc.decode("ascii")}
    # TLS must name (SNI) and verify the certificate of the host, not of the address.
    extensions = {"sni_hostname": host} if url.scheme == "https" and _literal(host) is None else {}
    failures: list[str] = []  # why each address failed, in words that name none of them
    for ip in addresses:
        pinned = url.copy_with(host=str(ip))
        request = client.build_request(method, pinned, headers=headers, content=content, extensions=extensions)
        try:
            return await client.send(request, stream=True)
        except httpx.TimeoutException:
            raise FetchError("TIMEOUT", f"{host} did not answer in time") from None
        except httpx.ConnectError as exc:
            # Nothing was sent yet: the next address (e.g. IPv4 after IPv6) may work.
            if (why := failure(exc)) not in failures:
                failures.append(why)
        except httpx.HTTPError as exc:
            raise FetchError("CONNECTION_FAILED", f"{host}: {failure(exc)}") from None
    raise FetchError("CONNECTION_FAILED", f"cannot connect to {host}: {'; '.join(failures)}")


# Content-Encoding -> zlib's wbits for it; anything else is refused (we ask for identity).
_ENCODINGS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}
_PIECE = 64 * 1024  # decoded bytes made at a time, whatever one wire chunk inflates to


class _Decoder:
    """A body decoded as it arrives, never more than `_PIECE` bytes per step: a gzip bomb
    (a megabyte on the wire, gigabytes inflated) is stopped at the limit having held
    little more than the limit. httpx's own decoding inflates a whole wire chunk at once."""

    def __init__(self, url: httpx.URL, header: str) -> None:
        codings = [c.strip().lower() for c in header.split(",") if c.strip().lower() not in ("", "identity")]
        if len(codings) > 1 or (codings and codings[0] not in _ENCODINGS):
            raise FetchError("BAD_ENCODING", f"{url} sent its body as {header.strip()!r}: we read identity,"
                                             " gzip or deflate only")
        self.url = url
        self.wbits = _ENCODINGS[codings[0]] if codings else None
        self.inflate = zlib.decompressobj(self.wbits) if self.wbits is not None else None
        self.started = False

    def feed(self, data: bytes) -> Iterator[bytes]:
        if self.inflate is None:
            yield data
            return
        try:
            if not self.started and self.wbits == zlib.MAX_WBITS and data:
                self.started = True
                zlib_header = len(data) >= 2 and data[0] & 0x0F == 8 and (data[0] << 8 | data[1]) % 31 == 0
                if not zlib_header:  # "deflate" without the zlib header, as some servers send it
                    self.inflate = zlib.decompressobj(-zlib.MAX_WBITS)
            while data:
                piece = self.inflate.decompress(data, _PIECE)
                data = self.inflate.unconsumed_tail
                if piece:
                    yield piece
                elif self.inflate.eof:
                    break  # trailing bytes after the stream: ignored, as browsers do
        except zlib.error:
            raise FetchError("BAD_ENCODING", f"{self.url} sent a corrupt compressed body") from None


async def _read(url: httpx.URL, response: httpx.Response, policy: FetchPolicy) -> FetchResult:
    status = response.status_code
    if not 200 <= status < 300:
        detail = " without a Location" if 300 <= status < 400 else ""
        raise FetchError("HTTP_ERROR", f"{url} answered {status}{detail}", status=status)
    decoder = _Decoder(url, response.headers.get("content-encoding", ""))
    declared = response.headers.get("content-length", "").strip()
    if declared.isdigit() and int(declared) > policy.max_bytes:
        # Refuse before reading: no need to wait for a body we would throw away (encoded,
        # it only grows when decoded).
        raise FetchError("TOO_LARGE", f"{url} announces {declared} bytes, over {policy.max_bytes}")
    body = bytearray()
    try:
        # The wire's bytes, decoded here a bounded piece at a time and counted decoded.
        async for chunk in response.aiter_raw():
            for piece in decoder.feed(chunk):
                body += piece
                if len(body) > policy.max_bytes:
                    raise FetchError("TOO_LARGE", f"{url} sent more than {policy.max_bytes} bytes")
    except httpx.TimeoutException:
        raise FetchError("TIMEOUT", f"{url} did not finish its body in time") from None
    except httpx.HTTPError as exc:
        raise FetchError("CONNECTION_FAILED", f"{url}: body broken off ({failure(exc)})") from None
    content_type = response.headers.get("content-type", "")
    return FetchResult(url=str(url), status=status, content_type=content_type, body=bytes(body))


async def _follow(url: httpx.URL, policy: FetchPolicy) -> FetchResult:
    headers = {
        "User-Agent": policy.user_agent,
        "Accept": "text/html,application/xhtml+xml,text/plain;q=0.9,*/*;q=0.8",
        # Asked plain; a server that compresses anyway is decoded a bounded piece at a time
        # and counted decoded (_Decoder), so max_bytes is what we hold in memory.
        "Accept-Encoding": "identity",
    }
    async with _client(policy) as client:
        redirects = 0
        while True:
            response = await _send(client, "GET", url, policy, headers=headers)
            try:
                location = response.headers.get("location")
                if response.status_code not in _REDIRECTS or not location:
                    return await _read(url, response, policy)
            finally:
                await response.aclose()
            if redirects >= policy.max_redirects:
                raise FetchError("TOO_MANY_REDIRECTS", f"more than {policy.max_redirects} redirects")
            redirects += 1
            url = _parse(location, base=url)


async def fetch(url: str, *, policy: FetchPolicy = DEFAULT_POLICY) -> FetchResult:
    """GET `url` (http or https) from public addresses only; a 2xx result or a FetchError."""
    target = _parse(url)
    try:
        async with asyncio.timeout(policy.timeout):
            return await _follow(target, policy)
    except TimeoutError:
        raise FetchError("TIMEOUT", f"{url} took longer than {policy.timeout:g}s") from None


async def post(url: str, body: bytes, headers: Mapping[str, str], *, policy: FetchPolicy) -> int:
    """POST `body` to `url` (http or https) at public addresses only; the status code, or a
    FetchError. Redirects are not followed (a receiver answers, it does not send us
    elsewhere), and the answer's body is not read."""
    target = _parse(url)
    try:
        async with asyncio.timeout(policy.timeout), _client(policy) as client:
            response = await _send(client, "POST", target, policy, content=body,
                                   headers={"Accept-Encoding": "identity", **headers})
            await response.aclose()
            return response.status_code
    except TimeoutError:
        raise FetchError("TIMEOUT", f"{url} took longer than {policy.timeout:g}s") from None
