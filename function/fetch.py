"""`image_url` fetching that cannot be turned against the function's own network (SSRF).

Built on `requests-hardened`: its `IPFilterAdapter` resolves the host once per connection, refuses
private, loopback, link-local, multicast and a list of special ranges, and then connects to the
address it checked (the IP is pinned into the connection pool key, the `Host` header and TLS SNI keep
the name), so a DNS answer that changes between check and connect (rebinding) cannot slip through.
The adapter runs for every request the session sends, so each redirect hop is checked again.

What we add around it:

- a second check at the same place on the pinned address, for ranges the library's test
  (`is_private or is_multicast or its extra list`) lets through: IPv4-compatible `::a.b.c.d` and
  IPv4-translated `::ffff:0:a.b.c.d` IPv6, deprecated site-local `fec0::/10`, the rest of the IPv6
  reserved space, and our own list so the answer does not depend on the Python version's `ipaddress`;
- a refusal message that names the host, the address and why, and the setting that allows it;
- http/https only (also on redirects), at most `OCR_URL_MAX_REDIRECTS` redirects;
- connect and read timeouts, and a deadline for the whole fetch (a server that drips one byte per
  read timeout cannot hold a worker): when it passes, the fetch's sockets are shut down;
- the size cap: the declared Content-Length first, then the bytes counted while streaming.

`OCR_URL_ALLOW_PRIVATE=true` turns the address checks off (a cluster-internal image server); the
scheme, redirect, time and size limits stay.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import re
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from requests_hardened import Config, HTTPSession
from requests_hardened.ip_filter import EXTRA_BLOCKED_NET_RANGES, InvalidIPAddress
from requests_hardened.ip_filter_adapter import IPFilterAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from function.errors import BadRequest, TooLarge, UpstreamFailed, clip

log = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
CHUNK = 64 * 1024
ALLOW_HINT = "set OCR_URL_ALLOW_PRIVATE=true to allow"


@dataclass(frozen=True)
class Fetched:
    data: bytes
    url: str  # after redirects
    redirects: int


def _nets(*cidrs: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(c) for c in cidrs)


# (reason, networks), first match wins. IPv4-mapped IPv6 (::ffff:a.b.c.d) is judged by its IPv4 address
# (the kernel connects to it); the other IPv6 forms that embed an IPv4 address (compatible, translated,
# 6to4, NAT64) are refused whole.
_CLASSES: tuple[tuple[str, tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]], ...] = (
    ("the unspecified address (this host)", _nets("0.0.0.0/8", "::/128")),
    ("a loopback address (this host)", _nets("127.0.0.0/8", "::1/128")),
    ("an IPv4-compatible IPv6 address (::a.b.c.d)", _nets("::/96")),
    ("a link-local address (where the cloud metadata service lives)", _nets("169.254.0.0/16", "fe80::/10")),
    (
        "a private address",
        _nets("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7", "fec0::/10"),
    ),
    ("a carrier-grade NAT (shared) address", _nets("100.64.0.0/10")),
    ("a multicast or broadcast address", _nets("224.0.0.0/4", "255.255.255.255/32", "ff00::/8")),
    (
        "a reserved or special-purpose address",
        _nets(
            "192.0.0.0/24",  # IETF protocol assignments
            "192.0.2.0/24",  # documentation
            "198.18.0.0/15",  # benchmarking
            "198.51.100.0/24",
            "203.0.113.0/24",
            "240.0.0.0/4",  # reserved
            "::/8",  # IPv4-compatible (::a.b.c.d), IPv4-translated (::ffff:0:a.b.c.d) and the rest
            "100::/64",  # discard
            "2001::/23",  # IETF protocol assignments, Teredo
            "2001:db8::/32",  # documentation
        ),
    ),
    ("a non-public address", EXTRA_BLOCKED_NET_RANGES),
)


def refusal_reason(ip: IPAddress) -> str | None:
    """Why `ip` must not be fetched from without OCR_URL_ALLOW_PRIVATE, or None if it is public."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return refusal_reason(ip.ipv4_mapped)  # ::ffff:a.b.c.d reaches a.b.c.d
    for reason, nets in _CLASSES:
        if any(ip.version == net.version and ip in net for net in nets):
            return reason
    # Whatever this Python's ipaddress knows on top (its lists grew over versions).
    if ip.is_private or ip.is_reserved or ip.is_multicast or ip.is_link_local or not ip.is_global:
        return "a non-public address"
    return None


class RefusedAddress(requests.RequestException):
    """The host of a hop resolved to an address the policy refuses."""

    def __init__(self, url: str, host: str, ip: IPAddress, reason: str) -> None:
        super().__init__(f"{host} resolves to {ip}, {reason}")
        self.url, self.host, self.ip, self.reason = url, host, ip, reason


class _Watchdog:
    """The fetch's deadline: when it passes, every socket the fetch opened is shut down, so a read
    blocked on a stalling server returns at once (the per-read timeout alone would let a server that
    sends a byte now and then hold the worker forever)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.expired = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> _Watchdog:
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()

    def track(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)
            if self.expired:
                _shutdown(sock)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            for sock in self._sockets:
                _shutdown(sock)


def _shutdown(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


def _tracking_pools(watchdog: _Watchdog) -> dict[str, type[HTTPConnectionPool]]:
    """urllib3 pool classes whose connections register their sockets with the watchdog."""

    def tracked(base: type[HTTPConnection]) -> type[HTTPConnection]:
        class Tracked(base):  # type: ignore[valid-type,misc]
            def _new_conn(self) -> socket.socket:
                sock = super()._new_conn()
                watchdog.track(sock)
                return sock

        return Tracked

    class Pool(HTTPConnectionPool):
        ConnectionCls = tracked(HTTPConnection)

    class SecurePool(HTTPSConnectionPool):
        # urllib3 declares the protocol class BaseHTTPSConnection here; HTTPSConnection (which the
        # tracking subclass extends) is the implementation urllib3 itself puts in that slot.
        ConnectionCls = tracked(HTTPSConnection)  # type: ignore[assignment]

    return {"http": Pool, "https": SecurePool}


class _GuardedAdapter(IPFilterAdapter):
    """The library's IP filter (when `check`), plus our refusal classes on the same pinned address,
    on every connection the session makes, redirects included."""

    def __init__(self, https: bool, watchdog: _Watchdog, *, check: bool, allow_loopback: bool) -> None:
        super().__init__(is_https_proto=https, allow_loopback=allow_loopback)
        self._check = check
        self.poolmanager.pool_classes_by_scheme = _tracking_pools(watchdog)

    def build_connection_pool_key_attributes(self, request, verify, cert=None):
        if not self._check:
            return HTTPAdapter.build_connection_pool_key_attributes(self, request, verify, cert)
        url = request.url or ""
        host = urlsplit(url).hostname or ""
        try:
            host_params, pool_kwargs = super().build_connection_pool_key_attributes(request, verify, cert)
        except InvalidIPAddress as exc:
            ip = exc.args[0] if exc.args else None
            ip = ip if isinstance(ip, ipaddress.IPv4Address | ipaddress.IPv6Address) else None
            if ip is None:
                raise
            raise RefusedAddress(url, host, ip, refusal_reason(ip) or "a non-public address") from None
        ip = ipaddress.ip_address(str(host_params["host"]).strip("[]"))
        reason = refusal_reason(ip)
        if reason and not (self._allow_loopback and ip.is_loopback):
            # The library logs its own refusals ("Forbidden IP address"); these are ours on top.
            log.warning("image_url refused: %s resolves to %s, %s", host, ip, reason)
            raise RefusedAddress(url, host, ip, reason)
        return host_params, pool_kwargs


def fetch(
    url: str,
    *,
    max_bytes: int,
    timeout: float,
    max_redirects: int,
    allow_private: bool,
    allow_loopback: bool = False,
) -> Fetched:
    """The body of `url`, or an OCRError: 400 for a URL we refuse (scheme, address), 413 over
    `max_bytes`, 502 when the server cannot be reached, stalls past `timeout` or answers non-2xx.

    `allow_loopback` lets loopback through while private addresses stay refused (the library's own
    switch); nothing in the configuration sets it — it lets tests run a real first hop on 127.0.0.1.
    """
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError as exc:
        raise BadRequest(f"'image_url' is not a valid URL ({exc}): {_short(url)}") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise BadRequest(f"'image_url' must be an http or https URL; got {_short(url)}")
    if not host:
        raise BadRequest(f"'image_url' names no host: {_short(url)}")
    with _Watchdog(timeout) as watchdog:
        try:
            with _session(watchdog, timeout, allow_private, allow_loopback) as session:
                session.max_redirects = max_redirects
                headers = {"Accept-Encoding": "identity", "Accept": "image/*, application/pdf, */*;q=0.5"}
                with session.get(url, stream=True, headers=headers, timeout=(timeout, timeout)) as resp:
                    if not 200 <= resp.status_code < 300:
                        said = (resp.reason or "")[:80]
                        reason = f"the server answered {resp.status_code} {said}".rstrip()
                        raise UpstreamFailed(f"fetching 'image_url' failed: {reason}")
                    declared = resp.headers.get("Content-Length", "")
                    if declared.isdigit() and int(declared) > max_bytes:
                        raise TooLarge(_too_large(f"declares {declared} bytes", max_bytes))
                    data = _read_capped(resp, max_bytes)
                    final_url, redirects = resp.url, len(resp.history)
        except RefusedAddress as exc:
            hop = "" if exc.url == _prepared(url) else f" (a redirect led to {_short(exc.url)})"
            raise BadRequest(
                f"'image_url' host {exc.host!r} resolves to {exc.ip}, {exc.reason}{hop}; the function "
                f"does not fetch from non-public addresses — {ALLOW_HINT}"
            ) from None
        except requests.TooManyRedirects:
            raise UpstreamFailed(
                f"fetching 'image_url' failed: more than {max_redirects} redirects (OCR_URL_MAX_REDIRECTS)"
            ) from None
        except requests.exceptions.InvalidSchema as exc:
            # The first URL's scheme was checked above: this is a redirect to file://, gopher://…
            named = re.search(r"'([^']*)'", str(exc))
            target = f" to {_short(named.group(1))}" if named else ""
            raise BadRequest(f"'image_url' redirected{target}; only http and https are fetched") from None
        except (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema) as exc:
            raise BadRequest(f"'image_url' (or a redirect from it) is not a valid URL: {exc}") from None
        except requests.RequestException as exc:
            if watchdog.expired:
                raise UpstreamFailed(_timed_out(timeout)) from None
            raise UpstreamFailed(f"fetching 'image_url' failed: {_describe(exc)}") from None
        if watchdog.expired:  # a body without a length ends at EOF: our shutdown must not pass as one
            raise UpstreamFailed(_timed_out(timeout))
    return Fetched(data=data, url=final_url, redirects=redirects)


@contextlib.contextmanager
def _session(
    watchdog: _Watchdog, timeout: float, allow_private: bool, allow_loopback: bool
) -> Iterator[HTTPSession]:
    """A session whose every connection (each redirect hop too) is checked and pinned as above."""
    config = Config(
        ip_filter_enable=False,  # we mount the library's filtering adapter ourselves, below
        ip_filter_allow_loopback_ips=allow_loopback,
        never_redirect=False,
        default_timeout=(timeout, timeout),
        user_agent_override="ocr-function",
    )
    with HTTPSession(config) as session:
        # No proxies or .netrc credentials from the environment (a proxy would make the
        # connection we checked); a CA bundle named there still applies.
        session.trust_env = False
        session.verify = _ca_bundle()
        for prefix, https in (("http://", False), ("https://", True)):
            adapter = _GuardedAdapter(https, watchdog, check=not allow_private, allow_loopback=allow_loopback)
            session.mount(prefix, adapter)
        yield session


def post(
    url: str,
    body: bytes,
    headers: dict[str, str],
    *,
    timeout: float,
    allow_private: bool,
    allow_loopback: bool = False,
) -> int:
    """POST `body` to `url` under the same address checks as `fetch`, no redirects followed; the
    status code, or UpstreamFailed when the server cannot be reached in time or is refused."""
    with _Watchdog(timeout) as watchdog:
        try:
            with _session(watchdog, timeout, allow_private, allow_loopback) as session:
                session.max_redirects = 0
                resp = session.post(
                    url, data=body, headers=headers, timeout=(timeout, timeout), allow_redirects=False
                )
                resp.close()
                return resp.status_code
        except RefusedAddress as exc:
            raise UpstreamFailed(f"{_short(url)}: {exc.host!r} resolves to {exc.ip}, {exc.reason}") from None
        except requests.RequestException as exc:
            raise UpstreamFailed(f"posting to {_short(url)} failed: {_describe(exc)}") from None


def check_url(url: str, field: str) -> None:
    """400 unless `url` is an http(s) URL with a host (the address is checked when it is used)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError as exc:
        raise BadRequest(f"{field!r} is not a valid URL ({exc}): {_short(url)}") from None
    if parts.scheme.lower() not in ("http", "https") or not host:
        raise BadRequest(f"{field!r} must be an http or https URL with a host; got {_short(url)}")


def _ca_bundle() -> str | bool:
    return os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True


def _read_capped(resp: requests.Response, max_bytes: int) -> bytes:
    """The body, counted as it arrives (decoded bytes, whatever the server declared)."""
    chunks: list[bytes] = []
    total = 0
    for chunk in resp.iter_content(CHUNK):
        total += len(chunk)
        if total > max_bytes:
            raise TooLarge(_too_large(f"sent more than {max_bytes} bytes", max_bytes))
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(what: str, max_bytes: int) -> str:
    return f"the document at 'image_url' {what}; the limit is {max_bytes} bytes (OCR_MAX_BYTES)"


def _timed_out(timeout: float) -> str:
    return f"fetching 'image_url' took longer than {timeout:g} s (OCR_URL_FETCH_TIMEOUT_SEC)"


def _describe(exc: requests.RequestException) -> str:
    # A read timeout in the middle of the body comes as a ConnectionError that says "timed out".
    if isinstance(exc, requests.Timeout) or "timed out" in str(exc).lower():
        return "the server did not answer in time (OCR_URL_FETCH_TIMEOUT_SEC)"
    text = str(exc)
    for needle, what in (
        ("Failed to resolve", "the host name does not resolve"),
        ("Name or service not known", "the host name does not resolve"),
        ("Temporary failure in name resolution", "the host name does not resolve"),
        ("Connection refused", "the connection was refused"),
        ("Network is unreachable", "the network is unreachable"),
        ("CERTIFICATE_VERIFY_FAILED", "the server's TLS certificate could not be verified"),
    ):
        if needle in text:
            return what
    if isinstance(exc, requests.ConnectionError):
        return "the connection failed or was cut (ConnectionError)"
    return type(exc).__name__


def _prepared(url: str) -> str:
    """`url` as requests normalises it (the form a refused hop reports)."""
    try:
        return requests.Request("GET", url).prepare().url or url
    except requests.RequestException:
        return url


def _short(url: str) -> str:
    return repr(clip(url, 200))


__all__ = ["ALLOW_HINT", "Fetched", "RefusedAddress", "fetch", "refusal_reason"]
