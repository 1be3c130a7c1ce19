"""Slow clients against `python -m function serve` as the images run it (function/front.py): a client
that sends a byte and waits costs a socket, not a thread, and is answered 408 once its time is up.

The server runs with THREADS=4 (the default) and short front timeouts so the test is quick.
"""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Iterator

import psutil
import pytest
import requests

from tests.server import FunctionServer
from tests.test_hostile import text_png

HEADER_TIMEOUT = 3
BODY_IDLE_TIMEOUT = 3


@pytest.fixture(scope="module")
def front(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FunctionServer]:
    tmp = tmp_path_factory.mktemp("function-front")
    env = {
        "OCR_ENGINE": "rapidocr",
        "OCR_STORE": f"file://{tmp}/output",
        "OCR_HEADER_TIMEOUT_SEC": str(HEADER_TIMEOUT),
        "OCR_BODY_IDLE_TIMEOUT_SEC": str(BODY_IDLE_TIMEOUT),
    }
    with FunctionServer(env, tmp / "server.log", serve=True) as srv:
        yield srv


@contextlib.contextmanager
def trickling(port: int, count: int, first: bytes) -> Iterator[list[socket.socket]]:
    """`count` connections that each sent `first` and then nothing."""
    socks = []
    try:
        for _ in range(count):
            sock = socket.create_connection(("127.0.0.1", port), timeout=30)
            sock.sendall(first)
            socks.append(sock)
        yield socks
    finally:
        for sock in socks:
            sock.close()


def answer(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def live_seconds(server: FunctionServer) -> float:
    began = time.monotonic()
    resp = requests.get(server.url + "/health/live", timeout=10)
    assert resp.status_code == 200
    return time.monotonic() - began


@pytest.mark.slow
def test_sixty_four_one_byte_clients_do_not_stop_liveness(front: FunctionServer) -> None:
    with trickling(front.port, 64, b"P") as socks:
        time.sleep(0.5)  # every one of them is open and has sent its byte
        latencies = [live_seconds(front) for _ in range(10)]
        # A real document is read meanwhile too.
        upload = {"file": ("a.png", text_png("Slow clients"))}
        resp = requests.post(front.url + "/ocr", files=upload, timeout=60)
        assert resp.status_code == 200, resp.text
        assert "Slow clients" in requests.get(resp.json()["results"]["markdown"]["url"], timeout=10).text
        print(f"liveness under 64 one-byte connections: max {max(latencies) * 1000:.1f} ms")
        assert max(latencies) < 2.0  # one probe, not the header timeout of a trickler
        # Past the header timeout each trickler gets a 408 and is closed.
        replies = [answer(sock) for sock in socks]
    assert all(r.startswith(b"HTTP/1.1 408 Request Timeout") for r in replies), replies[0]
    assert b'"code": "request_timeout"' in replies[0] and b"did not arrive within 3 s" in replies[0]


@pytest.mark.slow
def test_a_body_that_stops_gets_408(front: FunctionServer) -> None:
    head = (
        b"POST /ocr HTTP/1.1\r\nHost: localhost\r\nContent-Type: image/png\r\nContent-Length: 100000\r\n\r\n"
    )
    with trickling(front.port, 8, head + b"\x89PNG") as socks:
        assert live_seconds(front) < 2.0
        began = time.monotonic()
        replies = [answer(sock) for sock in socks]
    assert all(r.startswith(b"HTTP/1.1 408") for r in replies), replies[0]
    assert b"paused for more than 3 s" in replies[0]
    assert time.monotonic() - began < BODY_IDLE_TIMEOUT + 5


@pytest.mark.slow
def test_expect_100_continue_is_answered_before_the_body(front: FunctionServer) -> None:
    body = text_png("Continue please")
    head = (
        b"POST /ocr?filename=c.png HTTP/1.1\r\nHost: localhost\r\nContent-Type: image/png\r\n"
        b"Expect: 100-continue\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(body)
    )
    with socket.create_connection(("127.0.0.1", front.port), timeout=60) as sock:
        sock.sendall(head)
        assert sock.recv(25) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(body)
        reply = answer(sock)
    status, _, body_out = reply.partition(b"\r\n\r\n")
    assert status.startswith(b"HTTP/1.1 200 OK"), reply[:300]
    assert json.loads(body_out)["status"] == "success"


@pytest.mark.slow
def test_a_slow_but_steady_upload_is_read(front: FunctionServer) -> None:
    """A body that keeps coming, a piece a second, is waited for; the thread is taken only at the end."""
    body = text_png("Steady upload")
    head = (
        b"POST /ocr?filename=s.png HTTP/1.1\r\nHost: localhost\r\nContent-Type: image/png\r\n"
        b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body)
    )
    worker = psutil.Process(front.worker_pid())
    threads_before = worker.num_threads()
    with socket.create_connection(("127.0.0.1", front.port), timeout=60) as sock:
        sock.sendall(head)
        pieces = [body[i : i + len(body) // 4 + 1] for i in range(0, len(body), len(body) // 4 + 1)]
        for piece in pieces:
            sock.sendall(piece)
            time.sleep(1)  # under the idle timeout each time, over it in all
        reply = answer(sock)
    assert b"HTTP/1.1 200 OK" in reply, reply[:300]
    assert worker.num_threads() <= threads_before + 1


@pytest.mark.slow
def test_many_slow_clients_at_once_leave_the_worker_healthy(front: FunctionServer) -> None:
    with trickling(front.port, 32, b"GET /health/li") as socks:
        assert live_seconds(front) < 2.0
        for sock in socks:
            sock.sendall(b"ve HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        replies = [answer(sock) for sock in socks]
    assert all(r.startswith(b"HTTP/1.1 200") for r in replies)
