"""The SSRF-guarded fetcher against real HTTP(S) servers on 127.0.0.1.

No test may send a packet anywhere but loopback: `loopback_only` wraps the socket
connect used by httpx and fails a test that even tries another address.
"""

from __future__ import annotations

import asyncio
import datetime
import http.server
import ipaddress
import socket
import ssl
import threading
import time
import tracemalloc
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from merci import config
from merci.config import Settings
from merci.fetch import FetchError, FetchPolicy, address_problem, fetch, policy_for

LOOPBACK = FetchPolicy(allow_loopback=True)
PAGE = b'<html><head><meta name="merci-verification" content="tok-123"></head></html>'


def compressed(data: bytes, wbits: int) -> bytes:
    c = zlib.compressobj(9, zlib.DEFLATED, wbits)
    return c.compress(data) + c.flush()


def gzip_bomb(megabytes: int) -> bytes:
    """`megabytes` of zeros gzipped: about a thousandth of that on the wire."""
    c = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(1 << 20)
    return b"".join(c.compress(zeros) for _ in range(megabytes)) + c.flush()


BOMB = gzip_bomb(200)  # 200 MB inflated, ~200 kB sent
ENCODED = {  # path -> (Content-Encoding, body)
    "/gzip-page": ("gzip", compressed(PAGE, 16 + zlib.MAX_WBITS)),
    "/deflate-page": ("deflate", compressed(PAGE, zlib.MAX_WBITS)),
    "/raw-deflate-page": ("deflate", compressed(PAGE, -zlib.MAX_WBITS)),
    "/gzip-bomb": ("gzip", BOMB),
    "/gzip-corrupt": ("gzip", BOMB[:20] + b"garbage" * 10),
    "/brotli": ("br", b"\x0b\x02\x80hello\x03"),
    "/gzip-twice": ("gzip, gzip", compressed(compressed(PAGE, 31), 31)),
}


class Handler(http.server.BaseHTTPRequestHandler):
    server: Server

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output clean

    def reply(self, status: int, body: bytes = b"", **headers: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", headers.pop("content_type", "text/html; charset=utf-8"))
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def redirect(self, location: str) -> None:
        self.reply(302, Location=location)

    def do_GET(self) -> None:
        self.server.seen.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
        path, stop = self.path, self.server.stop
        if path == "/page":
            self.reply(200, PAGE)
        elif path == "/host":
            self.reply(200, self.headers["Host"].encode(), content_type="text/plain")
        elif path == "/to-private":
            self.redirect("http://10.0.0.1/")
        elif path == "/to-metadata":
            self.redirect("http://169.254.169.254/latest/meta-data/")
        elif path == "/to-intranet":
            self.redirect("http://intranet.test/admin")
        elif path == "/to-mapped":
            self.redirect("http://[::ffff:10.0.0.1]/")
        elif path == "/to-ftp":
            self.redirect("ftp://example.com/file")
        elif path == "/to-page":
            self.redirect("/page")
        elif path == "/to-absolute":
            self.redirect(f"http://127.0.0.1:{self.server.server_port}/page")
        elif path == "/loop":
            self.redirect("/loop")
        elif path.startswith("/chain/"):
            left = int(path.rsplit("/", 1)[1])
            self.redirect(f"/chain/{left - 1}") if left else self.reply(200, b"end")
        elif path in ENCODED:  # compressed although we asked for identity
            encoding, body = ENCODED[path]
            self.reply(200, body, Content_Encoding=encoding)
        elif path.startswith("/bytes/"):
            self.reply(200, b"x" * int(path.rsplit("/", 1)[1]))
        elif path == "/huge-announced":
            # Announces a gigabyte and then sends nothing: only an early refusal is fast.
            self.send_response(200)
            self.send_header("Content-Length", str(10**9))
            self.end_headers()
            self.wfile.flush()
            stop.wait(10)
        elif path == "/chunked":
            self.protocol_version = "HTTP/1.1"
            self.close_connection = True
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for _ in range(50):
                self.wfile.write(b"400\r\n" + b"y" * 1024 + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")
        elif path == "/until-close":
            self.send_response(200)  # HTTP/1.0, no length: the body ends when the socket does
            self.end_headers()
            self.wfile.write(b"z" * 50_000)
        elif path == "/slow":
            stop.wait(10)
            self.reply(200, b"late")
        elif path == "/trickle":
            self.send_response(200)
            self.end_headers()
            while not stop.wait(0.05):  # a byte at a time, each read well within any read timeout
                self.wfile.write(b".")
                self.wfile.flush()
        elif path == "/missing":
            self.reply(404, b"no")
        elif path == "/broken":
            self.reply(500, b"oops")
        elif path == "/bare-redirect":
            self.reply(302)
        else:
            self.reply(400, b"unknown route")

    def do_POST(self) -> None:  # a webhook receiver: the body back, or a redirect it must not follow
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.server.seen.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
        if self.path == "/to-page":
            self.redirect("/page")
        else:
            self.reply(202, body, content_type="application/json")


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True  # slow handlers end on `stop`; never join them at close

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.stop = threading.Event()
        self.seen: list[tuple[str, dict[str, str]]] = []
        if tls is not None:
            # Handshake in the handler thread, so a refused certificate ends there quietly.
            self.socket = tls.wrap_socket(self.socket, server_side=True, do_handshake_on_connect=False)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients hanging up on purpose (TOO_LARGE, TIMEOUT) are expected here


def serve(tls: ssl.SSLContext | None = None) -> Iterator[Server]:
    server = Server(tls)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.stop.set()
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def site() -> Iterator[Server]:
    yield from serve()


def url(server: Server, path: str, host: str = "127.0.0.1", scheme: str = "http") -> str:
    return f"{scheme}://{host}:{server.server_port}{path}"


@pytest.fixture(autouse=True)
def connections(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every address httpx connects to; anything but a loopback IP fails the test unsent."""
    attempts: list[str] = []
    real = anyio.connect_tcp

    async def guarded(remote_host: Any, remote_port: int, **kwargs: Any) -> Any:
        attempts.append(str(remote_host))
        try:
            ip = ipaddress.ip_address(str(remote_host))
        except ValueError:
            raise AssertionError(f"connected by name ({remote_host}), not to the checked address") from None
        if not ip.is_loopback:
            raise AssertionError(f"attempted a connection to {remote_host}")
        return await real(remote_host, remote_port, **kwargs)

    # httpcore looks `anyio.connect_tcp` up at call time, so this sees every connection.
    monkeypatch.setattr(anyio, "connect_tcp", guarded)
    return attempts


def fake_dns(monkeypatch: pytest.MonkeyPatch, table: dict[str, list[str]]) -> list[str]:
    """Answer names from `table` (no real DNS); returns the names looked up, in order."""
    lookups: list[str] = []
    loop = asyncio.get_running_loop()

    async def getaddrinfo(host: Any, port: Any, **kwargs: Any) -> list[Any]:
        lookups.append(str(host))
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [
            (socket.AF_INET6, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (a, port, 0, 0))
            if ":" in a
            else (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (a, port))
            for a in table[host]
        ]

    monkeypatch.setattr(loop, "getaddrinfo", getaddrinfo)
    return lookups


def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def refused(target: str, code: str, policy: FetchPolicy = LOOPBACK) -> FetchError:
    with pytest.raises(FetchError) as info:
        await fetch(target, policy=policy)
    assert info.value.code == code, info.value.message
    return info.value


# -- pages and loopback ---------------------------------------------------------------------


@pytest.mark.asyncio
async def test_fetches_a_page_with_allow_loopback(site: Server, connections: list[str]) -> None:
    result = await fetch(url(site, "/page"), policy=LOOPBACK)
    assert (result.url, result.status, result.body) == (url(site, "/page"), 200, PAGE)
    assert result.content_type == "text/html; charset=utf-8"
    assert connections == ["127.0.0.1"]
    headers = site.seen[0][1]
    assert headers["user-agent"] == LOOPBACK.user_agent
    assert headers["accept-encoding"] == "identity"


@pytest.mark.asyncio
async def test_credentials_in_the_url_are_not_forwarded(site: Server) -> None:
    result = await fetch(url(site, "/page", host="user:secret@127.0.0.1"), policy=LOOPBACK)
    assert result.url == url(site, "/page")
    assert "authorization" not in site.seen[0][1]


@pytest.mark.asyncio
@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "127.9.9.9", "2130706433", "[::ffff:127.0.0.1]"])
async def test_loopback_refused_by_default(site: Server, connections: list[str], host: str) -> None:
    error = await refused(url(site, "/page", host=host), "FORBIDDEN_ADDRESS", FetchPolicy())
    assert "not publicly reachable" in error.message
    # An address as typed may be called what it is; what a name resolves to may not (the
    # resolver reads 2130706433 as 127.0.0.1, as it would read a name).
    assert ("loopback" in error.message) == (host not in ("localhost", "2130706433"))
    assert connections == [] and site.seen == []


@pytest.mark.asyncio
async def test_localhost_is_resolved_once_and_pinned(site: Server, connections: list[str]) -> None:
    result = await fetch(url(site, "/host", host="localhost"), policy=LOOPBACK)
    # The connection went to the checked address; the server still saw the name.
    assert result.body == f"localhost:{site.server_port}".encode()
    assert result.url == url(site, "/host", host="localhost")
    assert connections and "localhost" not in connections


@pytest.mark.asyncio
async def test_a_name_is_looked_up_once_per_hop(
    site: Server, connections: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    lookups = fake_dns(monkeypatch, {"merci-site.test": ["127.0.0.1"]})
    result = await fetch(url(site, "/host", host="merci-site.test"), policy=LOOPBACK)
    assert result.body == f"merci-site.test:{site.server_port}".encode()
    assert lookups == ["merci-site.test"]  # no second lookup a rebinding DNS could answer
    assert connections == ["127.0.0.1"]


@pytest.mark.asyncio
async def test_any_bad_address_refuses_the_host(
    site: Server, connections: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_dns(monkeypatch, {"mixed.test": ["127.0.0.1", "10.0.0.7"]})
    error = await refused(url(site, "/page", host="mixed.test"), "FORBIDDEN_ADDRESS")
    assert error.message == "mixed.test is not publicly reachable"
    assert connections == [] and site.seen == []


@pytest.mark.asyncio
async def test_next_address_tried_when_one_refuses(
    site: Server, connections: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_dns(monkeypatch, {"dual.test": ["::1", "127.0.0.1"]})  # the server listens on IPv4 only
    result = await fetch(url(site, "/page", host="dual.test"), policy=LOOPBACK)
    assert result.body == PAGE
    assert connections == ["::1", "127.0.0.1"]


@pytest.mark.asyncio
async def test_unknown_name_is_a_dns_failure(monkeypatch: pytest.MonkeyPatch, connections: list[str]) -> None:
    fake_dns(monkeypatch, {})
    await refused("http://nowhere.test/", "DNS_FAILURE")
    assert connections == []


@pytest.mark.asyncio
async def test_nothing_listening_is_a_connection_failure() -> None:
    port = closed_port()
    await refused(f"http://127.0.0.1:{port}/", "CONNECTION_FAILED")


# -- forbidden addresses --------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("path", "address"),
    [("/to-private", "10.0.0.1"), ("/to-metadata", "169.254.169.254"), ("/to-mapped", "::ffff:10.0.0.1")],
)
async def test_redirect_to_forbidden_address_refused_before_connecting(
    site: Server, connections: list[str], path: str, address: str
) -> None:
    error = await refused(url(site, path), "FORBIDDEN_ADDRESS")
    assert address in error.message
    assert connections == ["127.0.0.1"]  # the first hop only: the target was never contacted


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "target",
    [
        "http://10.0.0.1/",
        "http://172.16.5.4/",
        "http://192.168.1.1:8080/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[fd00:ec2::254]/",
        "http://[fe80::1]/",
        "http://100.64.0.1/",
        "http://0.0.0.0:8000/",
        "https://[::ffff:192.168.0.1]/",
    ],
)
async def test_private_addresses_stay_forbidden_with_allow_loopback(connections: list[str], target: str) -> None:
    await refused(target, "FORBIDDEN_ADDRESS", LOOPBACK)
    assert connections == []


# -- redirects ------------------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("path", ["/to-page", "/to-absolute"])
async def test_redirect_to_loopback_page_followed(site: Server, path: str) -> None:
    result = await fetch(url(site, path), policy=LOOPBACK)
    assert (result.url, result.body) == (url(site, "/page"), PAGE)
    assert [p for p, _ in site.seen] == [path, "/page"]


@pytest.mark.asyncio
async def test_redirect_limit(site: Server) -> None:
    assert (await fetch(url(site, "/chain/5"), policy=LOOPBACK)).body == b"end"
    await refused(url(site, "/chain/6"), "TOO_MANY_REDIRECTS")
    await refused(url(site, "/to-page"), "TOO_MANY_REDIRECTS", FetchPolicy(allow_loopback=True, max_redirects=0))


@pytest.mark.asyncio
async def test_redirect_loop(site: Server) -> None:
    await refused(url(site, "/loop"), "TOO_MANY_REDIRECTS")
    assert len(site.seen) == LOOPBACK.max_redirects + 1


@pytest.mark.asyncio
async def test_redirect_to_other_scheme_refused(site: Server) -> None:
    await refused(url(site, "/to-ftp"), "BAD_SCHEME")


# -- bodies, statuses, time -----------------------------------------------------------------


@pytest.mark.asyncio
async def test_body_limit_is_inclusive(site: Server) -> None:
    policy = FetchPolicy(allow_loopback=True, max_bytes=10_000)
    assert len((await fetch(url(site, "/bytes/10000"), policy=policy)).body) == 10_000
    await refused(url(site, "/bytes/10001"), "TOO_LARGE", policy)


@pytest.mark.asyncio
@pytest.mark.parametrize("path", ["/chunked", "/until-close"])
async def test_oversized_body_without_content_length(site: Server, path: str) -> None:
    await refused(url(site, path), "TOO_LARGE", FetchPolicy(allow_loopback=True, max_bytes=10_000))
    assert (await fetch(url(site, path), policy=LOOPBACK)).body.strip(b"yz") == b""


@pytest.mark.asyncio
async def test_announced_oversize_refused_without_reading(site: Server) -> None:
    started = time.monotonic()
    await refused(url(site, "/huge-announced"), "TOO_LARGE")
    assert time.monotonic() - started < 2  # the server never sends the body


@pytest.mark.asyncio
@pytest.mark.parametrize("path", ["/gzip-page", "/deflate-page", "/raw-deflate-page"])
async def test_a_compressed_body_is_decoded(site: Server, path: str) -> None:
    assert (await fetch(url(site, path), policy=LOOPBACK)).body == PAGE
    assert site.seen[0][1]["accept-encoding"] == "identity"


@pytest.mark.asyncio
async def test_a_gzip_bomb_is_stopped_at_the_limit_while_it_inflates(site: Server) -> None:
    """200 MB of zeros in ~200 kB of gzip: refused at max_bytes decoded, holding little
    more than the limit; httpx's own decoding (the positive control) inflates a whole
    wire chunk at once, tens of megabytes."""
    assert len(BOMB) < 400_000
    policy = FetchPolicy(allow_loopback=True, max_bytes=1_000_000)
    tracemalloc.start()
    try:
        await fetch(url(site, "/page"), policy=policy)  # what any fetch holds (TLS context, client)
        _, baseline = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        error = await refused(url(site, "/gzip-bomb"), "TOO_LARGE", policy)
        _, ours = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        import httpx

        async with httpx.AsyncClient() as client, client.stream("GET", url(site, "/gzip-bomb")) as response:
            held = 0
            async for chunk in response.aiter_bytes():  # decoded by httpx
                held = max(held, len(chunk))
                if held > policy.max_bytes:
                    break
        _, theirs = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "more than 1000000 bytes" in error.message
    assert ours - baseline < 3 * policy.max_bytes, (ours, baseline)
    assert theirs > 20 * policy.max_bytes and held > 20 * policy.max_bytes, (theirs, held)


@pytest.mark.asyncio
@pytest.mark.parametrize("path", ["/brotli", "/gzip-twice", "/gzip-corrupt"])
async def test_an_encoding_we_do_not_read_is_refused(site: Server, path: str) -> None:
    error = await refused(url(site, path), "BAD_ENCODING")
    assert "127.0.0.1" in error.message  # the URL as given; nothing about the server's network


@pytest.mark.asyncio
@pytest.mark.parametrize(("path", "status"), [("/missing", 404), ("/broken", 500), ("/bare-redirect", 302)])
async def test_error_statuses(site: Server, path: str, status: int) -> None:
    error = await refused(url(site, path), "HTTP_ERROR")
    assert error.status == status


@pytest.mark.asyncio
@pytest.mark.parametrize("path", ["/slow", "/trickle"])
async def test_overall_timeout(site: Server, path: str) -> None:
    started = time.monotonic()
    await refused(url(site, path), "TIMEOUT", FetchPolicy(allow_loopback=True, timeout=0.5))
    assert time.monotonic() - started < 2


# -- URLs -----------------------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "target",
    ["ftp://example.com/", "file:///etc/passwd", "javascript:alert(1)", "gopher://127.0.0.1:70/", "data:,hi"],
)
async def test_other_schemes_refused(connections: list[str], target: str) -> None:
    await refused(target, "BAD_SCHEME")
    assert connections == []


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "target",
    [
        "",
        "not a url",
        "//example.com/",
        "http://",
        "http:///path",
        "http://[::1",
        "http://exa mple.com/",
        "http://example.com:99999/",
        "http://-bad-.example/",
        "http://a..b/",
    ],
)
async def test_malformed_urls_refused(connections: list[str], target: str) -> None:
    await refused(target, "INVALID_URL")
    assert connections == []


# -- https: the name is verified, the address is pinned ---------------------------------------


def tls_files(tmp_path: Path, name: str) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for `name`: (ca, cert, key) PEM files."""
    pytest.importorskip("cryptography")
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Merci test CA")])

    def builder(subject: x509.Name, public: Any) -> x509.CertificateBuilder:
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(ca_name)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        )

    ca = (
        builder(ca_name, ca_key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    cert = (
        builder(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]), key.public_key())
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = tmp_path / "ca.pem", tmp_path / "cert.pem", tmp_path / "key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return paths


@pytest.mark.asyncio
async def test_https_sends_the_name_as_sni_and_verifies_it(
    tmp_path: Path, connections: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    ca, cert, key = tls_files(tmp_path, "merci-site.test")
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    server_names: list[str | None] = []
    tls.sni_callback = lambda _sock, name, _ctx: server_names.append(name)
    monkeypatch.setenv("SSL_CERT_FILE", str(ca))  # trust the throwaway CA, and only it
    fake_dns(monkeypatch, {"merci-site.test": ["127.0.0.1"], "impostor.test": ["127.0.0.1"]})
    for server in serve(tls):
        result = await fetch(url(server, "/host", host="merci-site.test", scheme="https"), policy=LOOPBACK)
        assert result.body == f"merci-site.test:{server.server_port}".encode()
        assert server_names == ["merci-site.test"] and connections == ["127.0.0.1"]
        # Same address, other name: the certificate is checked against the name, so this fails.
        error = await refused(url(server, "/host", host="impostor.test", scheme="https"), "CONNECTION_FAILED")
        assert "certificate" in error.message and "impostor.test" in error.message  # why, in the user's terms
        says_nothing_internal(error.message, "127.0.0.1")


@pytest.mark.asyncio
async def test_webhooks_post_through_the_same_client(
    tmp_path: Path, connections: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """One guarded client: a webhook's POST is pinned, names the host in TLS and checks its
    certificate as a page's GET does, and follows no redirect."""
    from merci.webhooks import post

    ca, cert, key = tls_files(tmp_path, "hooks.test")
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    server_names: list[str | None] = []
    tls.sni_callback = lambda _sock, name, _ctx: server_names.append(name)
    monkeypatch.setenv("SSL_CERT_FILE", str(ca))
    fake_dns(monkeypatch, {"hooks.test": ["127.0.0.1"], "impostor.test": ["127.0.0.1"]})
    for server in serve(tls):
        answer = await post(url(server, "/merci", host="hooks.test", scheme="https"), b'{"a":1}',
                            {"Merci-Event-Type": "x"}, policy=LOOPBACK, timeout=5)
        assert answer == (202, None, False)
        assert server_names == ["hooks.test"] and connections == ["127.0.0.1"]
        assert server.seen[-1][1]["host"] == f"hooks.test:{server.server_port}"
        assert server.seen[-1][1]["merci-event-type"] == "x"
        status, error, permanent = await post(url(server, "/merci", host="impostor.test", scheme="https"), b"{}",
                                              {}, policy=LOOPBACK, timeout=5)
        assert status is None and not permanent and error is not None and "certificate" in error
        says_nothing_internal(error, "127.0.0.1")
        assert (await post(url(server, "/to-page", host="hooks.test", scheme="https"), b"{}", {}, policy=LOOPBACK,
                           timeout=5))[0] == 302
        assert [path for path, _ in server.seen] == ["/merci", "/to-page"]
    for never in ("ftp://hooks.test/merci", "http://hooks test/merci"):  # no retry can change these
        status, error, permanent = await post(never, b"{}", {}, policy=LOOPBACK, timeout=5)
        assert status is None and permanent and error


# -- the address classifier and the environment ---------------------------------------------


@pytest.mark.parametrize(
    ("address", "problem", "with_loopback"),
    [
        ("93.184.216.34", None, None),
        ("8.8.8.8", None, None),
        ("172.32.0.1", None, None),
        ("100.128.0.1", None, None),
        ("2606:4700:4700::1111", None, None),
        ("::ffff:8.8.8.8", None, None),
        ("64:ff9b::808:808", None, None),  # NAT64 of a public address
        ("127.0.0.1", "loopback", None),
        ("127.1.2.3", "loopback", None),
        ("::1", "loopback", None),
        ("::ffff:127.0.0.1", "loopback", None),
        ("10.0.0.1", "private", "private"),
        ("172.16.0.1", "private", "private"),
        ("172.31.255.255", "private", "private"),
        ("192.168.1.1", "private", "private"),
        ("::ffff:10.0.0.1", "private", "private"),
        ("64:ff9b::a00:1", "private", "private"),  # NAT64 of 10.0.0.1
        ("fc00::1", "private", "private"),
        ("fd12:3456::1", "private", "private"),
        ("fd00:ec2::254", "private", "private"),  # AWS metadata over IPv6
        ("169.254.169.254", "link-local", "link-local"),
        ("169.254.0.1", "link-local", "link-local"),
        ("::ffff:169.254.169.254", "link-local", "link-local"),
        ("fe80::1", "link-local", "link-local"),
        ("fe80::1%eth0", "link-local", "link-local"),
        ("100.64.0.1", "shared (carrier-grade NAT)", "shared (carrier-grade NAT)"),
        ("100.127.255.254", "shared (carrier-grade NAT)", "shared (carrier-grade NAT)"),
        ("0.0.0.0", "unspecified", "unspecified"),
        ("::", "unspecified", "unspecified"),
        ("0.1.2.3", "reserved", "reserved"),
        ("224.0.0.1", "multicast", "multicast"),
        ("239.255.255.250", "multicast", "multicast"),
        ("ff02::1", "multicast", "multicast"),
        ("255.255.255.255", "reserved", "reserved"),
        ("240.0.0.1", "reserved", "reserved"),
        ("192.0.2.1", "reserved", "reserved"),
        ("198.18.0.1", "reserved", "reserved"),
        ("::10.0.0.1", "reserved", "reserved"),
        ("2001:db8::1", "reserved", "reserved"),
        ("2002:a00:1::", "reserved", "reserved"),  # 6to4 around 10.0.0.1
        ("2001::1", "reserved", "reserved"),  # Teredo
        ("100::1", "reserved", "reserved"),
        ("fec0::1", "reserved", "reserved"),
    ],
)
def test_address_classifier(address: str, problem: str | None, with_loopback: str | None) -> None:
    assert address_problem(address) == problem
    assert address_problem(address, allow_loopback=True) == with_loopback
    if "%" not in address:
        assert address_problem(ipaddress.ip_address(address)) == problem


def test_policy_for_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    assert policy_for(Settings()) == FetchPolicy()
    assert policy_for(Settings(fetch_allow_loopback=True)).allow_loopback
    monkeypatch.setenv("MERCI_FETCH_ALLOW_LOOPBACK", "0")
    assert not policy_for(config.load()).allow_loopback
    monkeypatch.setenv("MERCI_FETCH_ALLOW_LOOPBACK", "1")
    assert policy_for(config.load()) == FetchPolicy(allow_loopback=True)
    monkeypatch.delenv("MERCI_FETCH_ALLOW_LOOPBACK")
    assert not policy_for(config.load()).allow_loopback


# -- what refusals say: site owners and partners read them -----------------------------------


def says_nothing_internal(message: str, *addresses: str) -> None:
    """The server's own view of the network (what a name resolves to, and what kind of
    address that is) stays with the server: only what the user typed may be named."""
    for secret in (*addresses, "loopback", "private", "link-local", "reserved"):
        assert secret not in message, message


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("host", "addresses"),
    [
        ("localhost", None),  # the real resolver
        ("intranet.test", ["10.1.2.3"]),
        ("metadata.test", ["169.254.169.254"]),
        ("mixed.test", ["93.184.216.34", "fd00::7"]),
        ("db.test", ["127.0.0.1"]),
    ],
)
async def test_a_refused_name_does_not_say_where_it_points(
    site: Server, connections: list[str], monkeypatch: pytest.MonkeyPatch, host: str, addresses: list[str] | None
) -> None:
    if addresses is not None:
        fake_dns(monkeypatch, {host: addresses})
    error = await refused(url(site, "/page", host=host), "FORBIDDEN_ADDRESS", FetchPolicy())
    assert error.message == f"{host} is not publicly reachable"
    says_nothing_internal(error.message, "127.0.0.1", "::1", *(addresses or []))
    assert connections == []


@pytest.mark.asyncio
async def test_a_redirect_to_an_internal_name_does_not_say_where_it_points(
    site: Server, connections: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_dns(monkeypatch, {"intranet.test": ["10.20.30.40"]})
    error = await refused(url(site, "/to-intranet"), "FORBIDDEN_ADDRESS")
    assert error.message == "intranet.test is not publicly reachable"  # the name the site sent
    assert connections == ["127.0.0.1"]


@pytest.mark.asyncio
async def test_a_connection_failure_does_not_name_the_address_connected_to(
    connections: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    port = closed_port()
    fake_dns(monkeypatch, {"down.test": ["127.0.0.1"]})
    error = await refused(f"http://down.test:{port}/", "CONNECTION_FAILED")
    assert error.message.startswith("cannot connect to down.test")
    says_nothing_internal(error.message, "127.0.0.1")
    assert connections == ["127.0.0.1"]


@pytest.mark.asyncio
async def test_webhook_errors_do_not_say_where_a_name_points(
    connections: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from merci.webhooks import post

    port = closed_port()
    fake_dns(monkeypatch, {"hooks.test": ["10.9.8.7"], "down.test": ["127.0.0.1"]})
    status, error, permanent = await post("https://hooks.test/merci", b"{}", {}, policy=FetchPolicy(), timeout=5)
    assert (status, error, permanent) == (None, "hooks.test is not publicly reachable", True)
    status, error, permanent = await post(f"http://down.test:{port}/merci", b"{}", {}, policy=LOOPBACK, timeout=5)
    assert status is None and not permanent and error is not None and error.startswith("cannot connect to down.test")
    says_nothing_internal(error, "127.0.0.1")
    assert connections == ["127.0.0.1"]
