"""The front of the serving process: each request read whole, with timeouts, before a thread is taken.

gunicorn's gthread worker hands a connection to a worker thread as soon as its first byte arrives,
and the thread then blocks on the socket for the rest: four clients that send one byte and wait
held all four threads, liveness included, for as long as they liked, and a slow upload held a GPU
pod for its whole timeout. `BufferingWorker` reads every request in the worker's event loop instead
(non-blocking, h11 telling where the message ends), so a slow client costs a socket and some bytes:

- the head must arrive within `header_timeout`, and the body may pause at most `body_idle_timeout`
  and take `body_timeout` in all, else the client gets a 408 and the connection is closed;
- bodies are buffered up to the largest one the app accepts; a longer one (declared or sent) is
  handed over at once, with what has arrived, for the app to refuse with its JSON 413;
- all connections together buffer at most `buffer_budget` bytes; past that a new byte is answered
  with 503 and `Retry-After`;
- what h11 cannot parse goes to gunicorn as it came, so malformed requests are answered as before;
- a connection closed after its answer lingers (RFC 9112 §9.6: FIN sent, the rest of what the client
  sends read and dropped) in the event loop too: gunicorn lingered up to 2 s in it blocking, so 32
  clients that kept their side open after "Connection: close" stopped the worker for a minute.

Only then is the connection queued for a thread, with the bytes already in gunicorn's parser.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import selectors
import socket
import time
from dataclasses import dataclass
from functools import partial
from typing import Any

import h11
from gunicorn import util
from gunicorn.http.message import Request
from gunicorn.workers.gthread import TConn, ThreadWorker

from function.config import Settings, load_settings

log = logging.getLogger(__name__)

MB = 1024 * 1024
MAX_HEAD = 64 * 1024  # request line and headers; more is refused by gunicorn's parser anyway


@dataclass(frozen=True)
class FrontLimits:
    body_limit: int  # the largest body the app accepts (bigger ones are refused by it with a 413)
    header_timeout: float = 10.0
    body_idle_timeout: float = 30.0
    body_timeout: float = 300.0
    buffer_budget: int = 256 * MB

    @classmethod
    def of(cls, settings: Settings) -> FrontLimits:
        return cls(
            body_limit=settings.body_limit,
            header_timeout=settings.header_timeout_sec,
            body_idle_timeout=settings.body_idle_timeout_sec,
            body_timeout=settings.body_timeout_sec,
        )


# Set by `configure` in the master before gunicorn forks the worker (see lifecycle.gunicorn_options).
_limits: FrontLimits | None = None


def configure(limits: FrontLimits) -> None:
    global _limits
    _limits = limits


class PendingRequest:
    """The bytes of one request as they arrive, and whether they make a whole request yet."""

    def __init__(self, limits: FrontLimits, started: float) -> None:
        self.limits = limits
        self.raw = bytearray()
        self.started = started
        self.last_byte = started
        self.head_done = False
        self.expects_continue = False
        self._parser = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
        self._body = 0

    def feed(self, data: bytes, now: float) -> bool:
        """Take `data`; True once the request is whole, too long to buffer, or not for h11 to read."""
        self.raw += data
        self.last_byte = now
        try:
            self._parser.receive_data(data)
            return self._advance()
        except h11.RemoteProtocolError:
            return True  # gunicorn's parser answers it, as it did before this front

    def _advance(self) -> bool:
        while True:
            event = self._parser.next_event()
            if event is h11.NEED_DATA:
                return False
            if isinstance(event, h11.Request):
                self.head_done = True
                headers = {name.lower(): value for name, value in event.headers}
                declared = headers.get(b"content-length")
                if declared is not None and int(declared) > self.limits.body_limit:
                    return True  # the app refuses it from the header, without reading the body
                self.expects_continue = headers.get(b"expect", b"").lower() == b"100-continue"
            elif isinstance(event, h11.Data):
                self._body += len(event.data)
                if self._body > self.limits.body_limit:
                    return True
            elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                return True

    def late(self, now: float) -> str | None:
        """Why the client has taken too long, or None."""
        limits = self.limits
        if not self.head_done:
            if now - self.started > limits.header_timeout:
                return f"the request head did not arrive within {limits.header_timeout:g} s"
            return None
        if now - self.last_byte > limits.body_idle_timeout:
            return f"the request body paused for more than {limits.body_idle_timeout:g} s"
        if now - self.started > limits.body_timeout:
            return f"the request body took more than {limits.body_timeout:g} s"
        return None


LINGER_SEC = 2.0  # how long a closed connection's read side is drained, as gunicorn's close_graceful


class LingeringConn(TConn):
    """gunicorn's connection, whose graceful close hands the lingering to the worker's event loop."""

    def __init__(self, worker: BufferingWorker, *args: Any) -> None:
        super().__init__(*args)
        self.worker = worker

    def close(self, graceful: bool = False) -> None:
        if not graceful:
            super().close()
            return
        try:
            self.sock.shutdown(socket.SHUT_WR)  # the client sees the end of the answer now
        except OSError:
            util.close(self.sock)
            return
        self.worker.linger(self.sock)


class BufferingWorker(ThreadWorker):
    """gunicorn's gthread worker with a front that reads whole requests first (see the module)."""

    def init_process(self) -> None:
        # The front answers `Expect: 100-continue` itself, when it waits for a body; gunicorn, which
        # parses the request only once its body is here, would send a second one.
        Request._policy_expect_continue = False
        # Unconfigured (the worker class named to gunicorn directly): the settings' own limits.
        self.front = _limits or FrontLimits.of(load_settings())
        self.reading: dict[Any, PendingRequest] = {}
        self.lingering: dict[socket.socket, float] = {}  # closed sockets draining -> until when
        self.buffered = 0
        super().init_process()

    def accept(self, listener: socket.socket) -> None:
        """gunicorn's accept, with connections that linger without blocking the loop."""
        try:
            client, address = listener.accept()
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        self.nr_conns += 1
        client.setblocking(True)
        self.enqueue_req(LingeringConn(self, self.cfg, client, address, listener.getsockname()))

    def linger(self, sock: socket.socket) -> None:
        """Drain `sock` until the client closes it or LINGER_SEC pass, then close it."""
        sock.setblocking(False)
        self.lingering[sock] = time.monotonic() + LINGER_SEC
        try:
            self.poller.register(sock, selectors.EVENT_READ, self._drain)
        except (OSError, ValueError, KeyError):
            self._closed(sock)

    def _drain(self, sock: socket.socket) -> None:
        try:
            data = sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._closed(sock)

    def _closed(self, sock: socket.socket) -> None:
        self.lingering.pop(sock, None)
        with contextlib.suppress(OSError, KeyError, ValueError):
            self.poller.unregister(sock)
        util.close(sock)

    def enqueue_req(self, conn: Any) -> None:
        if getattr(conn, "whole", False) or getattr(conn, "is_http2", False):
            conn.whole = False  # the next request on this connection is read by the front again
            super().enqueue_req(conn)
            return
        pending = PendingRequest(self.front, time.monotonic())
        # Bytes read ahead past the previous request on a kept-alive connection come first.
        if conn.parser is not None and (ahead := conn.parser.unreader.take_buffered()):
            if pending.feed(ahead, time.monotonic()):
                self._hand_over(conn, pending)
                return
            self.buffered += len(ahead)
        conn.sock.setblocking(False)
        self.reading[conn] = pending
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_readable, conn))

    def _on_readable(self, conn: Any, sock: socket.socket) -> None:
        pending = self.reading[conn]
        try:
            data = sock.recv(256 * 1024)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:  # the client went away before its request was whole
            self._drop(conn)
            return
        if self.buffered + len(data) > self.front.buffer_budget:
            log.warning("front: %d bytes buffered already; refusing a request (503)", self.buffered)
            self._refuse(conn, 503, "busy", "the function is receiving too much at once; retry shortly")
            return
        self.buffered += len(data)
        was_head_done = pending.head_done
        if pending.feed(data, time.monotonic()):
            self._hand_over(conn, pending)
        elif pending.expects_continue and not was_head_done:
            # The client waits for this before it sends the body (curl does for bodies over 1 MB).
            with contextlib.suppress(OSError):
                sock.send(b"HTTP/1.1 100 Continue\r\n\r\n")

    def _hand_over(self, conn: Any, pending: PendingRequest) -> None:
        """The request to a worker thread, its bytes already in gunicorn's parser."""
        self._forget(conn)
        conn.sock.setblocking(True)
        conn.init()
        conn.parser.unreader.unread(bytes(pending.raw))
        conn.data_ready = True
        conn.whole = True
        self.enqueue_req(conn)

    def murder_pending(self) -> None:
        """gunicorn's sweep of idle connections, and ours of clients that take too long."""
        super().murder_pending()
        now = time.monotonic()
        for sock, until in list(self.lingering.items()):
            if now > until or not self.alive:
                self._closed(sock)
        for conn, pending in list(self.reading.items()):
            if not self.alive:
                self._refuse(conn, 503, "not_ready", "the function is shutting down; retry")
            elif (why := pending.late(now)) is not None:
                log.info("front: closing a slow connection from %s: %s", conn.client, why)
                self._refuse(conn, 408, "request_timeout", why)

    def _refuse(self, conn: Any, status: int, code: str, message: str) -> None:
        body = json.dumps({"status": "error", "error": {"code": code, "message": message}}).encode()
        reason = {408: "Request Timeout", 503: "Service Unavailable"}[status]
        head = (
            f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n"
            + ("Retry-After: 5\r\n" if status == 503 else "")
            + "\r\n"
        )
        with contextlib.suppress(OSError):
            conn.sock.send(head.encode() + body)  # small: fits the socket's buffer; best effort
        self._drop(conn)

    def _drop(self, conn: Any) -> None:
        self._forget(conn)
        self.nr_conns -= 1
        conn.close()

    def _forget(self, conn: Any) -> None:
        pending = self.reading.pop(conn, None)
        if pending is not None:
            self.buffered -= len(pending.raw)
        with contextlib.suppress(OSError, KeyError, ValueError):
            self.poller.unregister(conn.sock)
