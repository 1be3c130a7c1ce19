"""function/fetch.py in-process, against real HTTP servers on this machine (http.server in a thread).

The address checks refuse before any connection is made, so the refused classes need no server at the
address: a test that got a connection error (502) instead of the refusal (400) would fail.
"""

from __future__ import annotations

import contextlib
import datetime
import gzip
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psutil
import pytest

from function.config import Settings
from function.errors import BadRequest, OCRError, TooLarge, UpstreamFailed
from function.fetch import fetch, refusal_reason
from function.sources import fetch_url

PNG_BYTES = b"\x89PNG\r\n\x1a\n" + b"\x00" * 200  # the fetcher does not look inside


@dataclass
class Host:
    """A real HTTP server in a thread; `routes` maps a path to a handler, `hits` counts requests."""

    address: str = "127.0.0.1"
    routes: dict[str, Callable[[BaseHTTPRequestHandler], None]] = field(default_factory=dict)
    hits: list[str] = field(default_factory=list)
    httpd: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.httpd is not None
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"http://{host}:{self.httpd.server_address[1]}"

    def __enter__(self) -> Host:
        host = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                host.hits.append(self.path)
                route = host.routes.get(self.path.split("?")[0])
                if route is None:
                    self.send_error(404)
                    return
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    route(self)  # the fetcher may hang up: that is what some tests want

            def log_message(self, *args: object) -> None:
                pass

        class Server(ThreadingHTTPServer):
            address_family = socket.AF_INET6 if ":" in self.address else socket.AF_INET
            daemon_threads = True

        self.httpd = Server((self.address, 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.httpd is not None
        self.httpd.shutdown()
        self.httpd.server_close()


def body(data: bytes, *, length: bool = True, ctype: str = "image/png", **headers: str):  # type: ignore[no-untyped-def]
    def route(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", ctype)
        if length:
            h.send_header("Content-Length", str(len(data)))
        else:
            h.send_header("Connection", "close")  # the body ends when the connection does
            h.close_connection = True
        for name, value in headers.items():
            h.send_header(name.replace("_", "-"), value)
        h.end_headers()
        h.wfile.write(data)

    return route


def redirect(location: str, status: int = 302):  # type: ignore[no-untyped-def]
    def route(h: BaseHTTPRequestHandler) -> None:
        h.send_response(status)
        h.send_header("Location", location)
        h.send_header("Content-Length", "0")
        h.end_headers()

    return route


def get(url: str, **kwargs) -> bytes:  # type: ignore[no-untyped-def]
    args = {"max_bytes": 1024 * 1024, "timeout": 5.0, "max_redirects": 5, "allow_private": False} | kwargs
    return fetch(url, **args).data


def refused(url: str, **kwargs) -> str:  # type: ignore[no-untyped-def]
    with pytest.raises(BadRequest) as info:
        get(url, **kwargs)
    return info.value.message


@pytest.fixture
def host() -> Iterator[Host]:
    with Host(routes={"/scan.png": body(PNG_BYTES)}) as h:
        yield h


# --- allowed ------------------------------------------------------------------------------------------


def test_private_address_allowed_with_the_setting(host: Host) -> None:
    assert get(host.url + "/scan.png", allow_private=True) == PNG_BYTES


def test_loopback_switch_allows_loopback_only(host: Host) -> None:
    """The library's own `ip_filter_allow_loopback_ips` (what the redirect tests below use)."""
    assert get(host.url + "/scan.png", allow_loopback=True) == PNG_BYTES
    assert "private" in refused("http://10.1.2.3/x.png", allow_loopback=True)


def test_sources_fetch_url_takes_the_settings(host: Host) -> None:
    settings = Settings(url_allow_private=True, max_bytes=1000, url_fetch_timeout_sec=5)
    source = fetch_url(host.url + "/scan.png", None, settings)
    assert (source.data, source.filename, source.input_type) == (PNG_BYTES, "scan.png", "url")
    with pytest.raises(BadRequest, match="OCR_URL_ALLOW_PRIVATE"):
        fetch_url(host.url + "/scan.png", None, Settings())


# --- refused: scheme, host, address class -----------------------------------------------------------


@pytest.mark.parametrize(
    "url", ["file:///etc/passwd", "gopher://127.0.0.1:70/_GET", "ftp://example.com/a.png", "dict://x:11/"]
)
def test_only_http_and_https(url: str) -> None:
    assert "http or https" in refused(url, allow_private=True)


@pytest.mark.parametrize("url", ["http:///scan.png", "http://[::1/scan.png", "scan.png"])
def test_malformed_urls(url: str) -> None:
    refused(url, allow_private=True)


# (url, word the refusal names). Hosts that are not this machine are never connected to: the check
# runs on the resolved address before the connection, so no network is needed to refuse them.
REFUSED = [
    ("http://127.0.0.1:{port}/scan.png", "loopback"),
    ("http://localhost:{port}/scan.png", "loopback"),  # a DNS name resolving to loopback
    ("http://127.8.9.10:{port}/scan.png", "loopback"),
    ("http://2130706433:{port}/scan.png", "loopback"),  # 127.0.0.1 as one decimal number
    ("http://0x7f.1:{port}/scan.png", "loopback"),  # inet_aton forms
    ("http://[::ffff:127.0.0.1]:{port}/scan.png", "loopback"),  # IPv4-mapped IPv6
    ("http://0.0.0.0:{port}/scan.png", "unspecified"),  # Linux connects 0.0.0.0 to this host
    ("http://0:{port}/scan.png", "unspecified"),
    ("http://169.254.169.254/latest/meta-data/", "link-local"),  # cloud metadata
    ("http://[::ffff:169.254.169.254]/latest/meta-data/", "link-local"),
    ("http://[fe80::1]/", "link-local"),
    ("http://10.0.0.1/", "private"),
    ("http://172.16.5.4/", "private"),
    ("http://192.168.1.1/", "private"),
    ("http://[fc00::1]/", "private"),  # unique local
    ("http://[fec0::1]/", "private"),  # site-local: the library's filter lets it through
    ("http://100.64.0.1/", "carrier-grade NAT"),
    ("http://224.0.0.1/", "multicast"),
    ("http://255.255.255.255/", "broadcast"),
    ("http://[::127.0.0.1]/", "IPv4-compatible"),  # ::7f00:1: the library's filter lets it through
    ("http://[::ffff:0:7f00:1]/", "reserved"),  # IPv4-translated: the library's filter lets it through
    ("http://[64:ff9b::a9fe:a9fe]/", "reserved"),  # NAT64 of 169.254.169.254
    ("http://[2002:7f00:1::]/", "non-public"),  # 6to4 of 127.0.0.1
    ("http://198.18.0.1/", "reserved"),
    ("http://240.0.0.1/", "reserved"),
]


@pytest.mark.parametrize("template,word", REFUSED)
def test_refused_address_classes(host: Host, template: str, word: str) -> None:
    url = template.format(port=host.httpd.server_address[1] if host.httpd else 0)
    message = refused(url, timeout=2.0)
    assert word in message and "OCR_URL_ALLOW_PRIVATE=true" in message, message
    assert host.hits == []  # nothing reached the server on this machine


def test_ipv6_loopback_refused() -> None:
    try:
        server = Host(address="::1").__enter__()
    except OSError:
        pytest.skip("no IPv6 loopback here")
    try:
        server.routes["/scan.png"] = body(PNG_BYTES)
        assert "loopback" in refused(server.url + "/scan.png")
        assert get(server.url + "/scan.png", allow_private=True) == PNG_BYTES  # it was reachable
        assert server.hits == ["/scan.png"]
    finally:
        server.__exit__()


def test_refusal_reason_table() -> None:
    assert refusal_reason(ipaddress.ip_address("93.184.216.34")) is None
    assert refusal_reason(ipaddress.ip_address("2606:4700:4700::1111")) is None
    assert refusal_reason(ipaddress.ip_address("::")) is not None
    assert refusal_reason(ipaddress.ip_address("::1")) is not None


def test_dns_is_resolved_once_and_the_checked_address_is_the_one_connected(
    host: Host, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DNS rebinding: the name answers a public address to the check, then loopback. The connection
    goes to the address that was checked (requests-hardened pins it), never to the server on this
    machine. (1.1.1.1 is only a public address to pin: whatever happens there — a refused or timed-out
    connection on a machine without network — ends in 502, not in a fetch from 127.0.0.1.)"""
    real = socket.getaddrinfo
    answers = iter(["1.1.1.1"] + ["127.0.0.1"] * 10)
    asked: list[str] = []

    def rebinding(name, port, *args, **kwargs):  # type: ignore[no-untyped-def]
        if name == "rebind.example":
            asked.append(name)
            return real(next(answers), port, *args, **kwargs)
        return real(name, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    port = host.httpd.server_address[1] if host.httpd else 0
    with pytest.raises(UpstreamFailed):
        get(f"http://rebind.example:{port}/scan.png", timeout=1.0)
    assert asked == ["rebind.example"]
    assert host.hits == []


# --- redirects ----------------------------------------------------------------------------------------


def test_redirect_chain_bounded(host: Host) -> None:
    for n in range(1, 6):
        host.routes[f"/hop{n}"] = redirect(f"/hop{n - 1}" if n > 1 else "/scan.png")
    assert get(host.url + "/hop3", allow_private=True, max_redirects=3) == PNG_BYTES
    with pytest.raises(UpstreamFailed, match=r"more than 3 redirects.*OCR_URL_MAX_REDIRECTS"):
        get(host.url + "/hop4", allow_private=True, max_redirects=3)
    with pytest.raises(UpstreamFailed, match="more than 0 redirects"):
        get(host.url + "/hop1", allow_private=True, max_redirects=0)


def test_redirect_loop_ends(host: Host) -> None:
    host.routes["/loop"] = redirect("/loop", 301)
    with pytest.raises(UpstreamFailed, match="redirects"):
        get(host.url + "/loop", allow_private=True)


def test_redirect_to_metadata_refused_on_the_second_hop(host: Host) -> None:
    """The first hop (127.0.0.1) is allowed by the library's loopback switch; the redirect's target is
    checked again when its connection is made, and refused."""
    host.routes["/go"] = redirect("http://169.254.169.254/latest/meta-data/iam/")
    message = refused(host.url + "/go", allow_loopback=True)
    assert "169.254.169.254" in message and "a redirect led to" in message
    assert host.hits == ["/go"]  # the first hop was really fetched


def _private_interface_address() -> str | None:
    """An address of this machine's own that is private but not loopback (e.g. eth0's), if any."""
    for addrs in psutil.net_if_addrs().values():
        for addr in addrs:
            if addr.family != socket.AF_INET:
                continue
            ip = ipaddress.ip_address(addr.address)
            if not ip.is_loopback and refusal_reason(ip) is not None:
                return addr.address
    return None


def test_redirect_to_a_private_server_refused_on_the_second_hop(host: Host) -> None:
    """A real private target: a second server on this machine's own non-loopback address. Fetched
    directly (with OCR_URL_ALLOW_PRIVATE) it answers; reached through a redirect from an allowed first
    hop it is refused before any connection to it."""
    address = _private_interface_address()
    if address is None:
        pytest.skip("this machine has no private non-loopback IPv4 address")
    with Host(address=address, routes={"/secret.png": body(b"internal")}) as internal:
        assert get(internal.url + "/secret.png", allow_private=True) == b"internal"  # reachable
        internal.hits.clear()
        host.routes["/go"] = redirect(internal.url + "/secret.png")
        message = refused(host.url + "/go", allow_loopback=True)
        assert address in message and "a redirect led to" in message
        assert internal.hits == []
        assert host.hits == ["/go"]


@pytest.mark.parametrize("target", ["file:///etc/passwd", "gopher://127.0.0.1:70/_x", "ftp://x/y"])
def test_redirect_to_another_scheme_refused(host: Host, target: str) -> None:
    host.routes["/go"] = redirect(target)
    message = refused(host.url + "/go", allow_private=True)
    assert "only http and https" in message and target in message


# --- size ---------------------------------------------------------------------------------------------


def test_declared_length_over_the_cap(host: Host) -> None:
    host.routes["/big"] = body(b"x" * 5000)
    with pytest.raises(TooLarge, match=r"declares 5000 bytes.*OCR_MAX_BYTES"):
        get(host.url + "/big", allow_private=True, max_bytes=1000)


def test_cap_enforced_while_streaming_without_a_length(host: Host) -> None:
    """No Content-Length: the server would send 200 MB; the fetch stops soon after the cap."""
    sent = [0]

    def endless(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Connection", "close")
        h.end_headers()
        h.close_connection = True
        chunk = b"y" * 65536
        while sent[0] < 200 * 1024 * 1024:
            h.wfile.write(chunk)
            sent[0] += len(chunk)

    host.routes["/endless"] = endless
    started = time.monotonic()
    with pytest.raises(TooLarge, match="sent more than 1048576 bytes"):
        get(host.url + "/endless", allow_private=True, max_bytes=1024 * 1024)
    assert time.monotonic() - started < 5
    time.sleep(0.2)
    assert sent[0] < 50 * 1024 * 1024  # socket buffers, not the whole body


def test_cap_enforced_when_the_length_lies_low(host: Host) -> None:
    """Declares 100 bytes, sends 5000: HTTP framing reads the declared 100, never more."""

    def liar(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Length", "100")
        h.end_headers()
        h.wfile.write(b"z" * 5000)
        h.close_connection = True

    host.routes["/liar"] = liar
    assert get(host.url + "/liar", allow_private=True, max_bytes=1000) == b"z" * 100


def test_cap_counts_decoded_bytes(host: Host) -> None:
    """A gzip bomb (50 MB of zeros in ~50 KB) sent despite our `Accept-Encoding: identity`."""
    bomb = gzip.compress(b"\x00" * (50 * 1024 * 1024))
    host.routes["/bomb"] = body(bomb, Content_Encoding="gzip")
    with pytest.raises(TooLarge, match="sent more than"):
        get(host.url + "/bomb", allow_private=True, max_bytes=1024 * 1024)


# --- time ---------------------------------------------------------------------------------------------


def _drip(headers_first: bool, pause: float):  # type: ignore[no-untyped-def]
    def route(h: BaseHTTPRequestHandler) -> None:
        head = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"
        if headers_first:
            h.wfile.write(head)
            h.wfile.flush()
            head = b""
        for byte in head + b"x" * 1000:
            h.wfile.write(bytes([byte]))
            h.wfile.flush()
            time.sleep(pause)
        h.close_connection = True

    return route


@pytest.mark.parametrize(
    "path,route",
    [
        ("/stall", _drip(headers_first=True, pause=30)),  # headers, then nothing: the read timeout
        ("/drip-body", _drip(headers_first=True, pause=0.2)),  # never idle for a read timeout
        ("/drip-headers", _drip(headers_first=False, pause=0.2)),  # the status line byte by byte
    ],
)
def test_fetch_deadline(host: Host, path: str, route) -> None:  # type: ignore[no-untyped-def]
    host.routes[path] = route
    started = time.monotonic()
    with pytest.raises(UpstreamFailed) as info:
        get(host.url + path, allow_private=True, timeout=1.0)
    elapsed = time.monotonic() - started
    assert elapsed < 2.5, elapsed
    assert "OCR_URL_FETCH_TIMEOUT_SEC" in info.value.message


# --- upstream failures --------------------------------------------------------------------------------


def test_upstream_status_is_502(host: Host) -> None:
    with pytest.raises(UpstreamFailed, match="404"):
        get(host.url + "/missing.png", allow_private=True)


def test_connection_refused_is_502() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    with pytest.raises(UpstreamFailed, match="refused"):
        get(f"http://127.0.0.1:{port}/x.png", allow_private=True)


def test_unresolvable_host_is_502() -> None:
    with pytest.raises(UpstreamFailed, match="does not resolve"):
        get("http://no-such-host.invalid/x.png")


def test_every_failure_is_an_ocr_error(host: Host) -> None:
    """Nothing the fetcher meets escapes as a bare requests exception (that would be a 500)."""
    host.routes["/reset"] = lambda h: h.connection.shutdown(socket.SHUT_RDWR)
    with pytest.raises(OCRError):
        get(host.url + "/reset", allow_private=True)


# --- https --------------------------------------------------------------------------------------------


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    """A certificate for `localhost` (and a key), made here."""
    x509 = pytest.importorskip("cryptography.x509")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


def test_https_verifies_the_name_while_connecting_to_the_checked_address(
    host: Host, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The connection goes to the pinned IP, and TLS still checks the certificate against the host
    name (SNI and hostname verification keep the name): trusted → fetched, untrusted → 502."""
    cert, key = _self_signed(tmp_path)
    assert host.httpd is not None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    host.httpd.socket = context.wrap_socket(host.httpd.socket, server_side=True)
    url = f"https://localhost:{host.httpd.server_address[1]}/scan.png"
    with pytest.raises(UpstreamFailed, match="certificate"):
        get(url, allow_loopback=True)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert))
    assert get(url, allow_loopback=True) == PNG_BYTES
    assert "loopback" in refused(url)  # and the address check applies to https as well
