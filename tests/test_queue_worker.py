"""The OpenFaaS async stand-in (tests/queue_worker.py) against a tiny function and callback receiver."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
import requests
from werkzeug.datastructures import Headers
from werkzeug.wrappers import Request, Response

from bench.fanout import Params, function_env, pages_read, processes, text_pdf
from tests.local_http import LocalServer
from tests.queue_worker import QueueWorker

PARAMS = Params()  # tesseract at one thread, 72 dpi pages: the fastest real engine on a light page


class Recorder:
    """An HTTP endpoint answering with `answer(request)`, keeping each request's path, headers, body."""

    def __init__(self, answer: Callable[[Request], Response]) -> None:
        self.answer = answer
        self.got: list[tuple[str, Headers, bytes]] = []
        self._lock = threading.Lock()
        self.server = LocalServer(self._app)
        self.url = self.server.url

    @Request.application
    def _app(self, request: Request) -> Response:
        with self._lock:
            self.got.append((request.full_path, request.headers, request.get_data()))
        return self.answer(request)


def ok(_: Request) -> Response:
    return Response(status=200)


@contextmanager
def async_path(
    answer: Callable[[Request], Response], **options: float
) -> Iterator[tuple[QueueWorker, Recorder, Recorder]]:
    function, receiver = Recorder(answer), Recorder(ok)
    with ExitStack() as stack:
        stack.enter_context(function.server)
        stack.enter_context(receiver.server)
        worker = stack.enter_context(QueueWorker(function.url, **options))  # type: ignore[arg-type]
        yield worker, function, receiver


def invoke(worker: QueueWorker, receiver: Recorder, path: str = "/ocr?pages=1-2") -> requests.Response:
    return requests.post(
        f"{worker.url}/async-function/ocr{path}",
        data=b'{"s3_uri": "s3://b/scan.pdf"}',
        headers={"Content-Type": "application/json", "X-Callback-Url": receiver.url + "/done"},
        timeout=10,
    )


def test_retried_codes_are_retried_and_the_last_response_is_called_back() -> None:
    answers = iter([429, 504, 200])

    def function(_: Request) -> Response:
        status = next(answers)
        return Response(f"answer {status}", status, headers={"X-Result": str(status)})

    with async_path(function, max_retry_attempts=5) as (worker, fn, receiver):
        accepted = invoke(worker, receiver)
        worker.wait_idle(timeout=20)
    assert accepted.status_code == 202
    call_id = accepted.headers["X-Call-Id"]
    assert int(accepted.headers["X-Start-Time"]) > 0
    assert [(i.attempt, i.status) for i in worker.invocations] == [(1, 429), (2, 504), (3, 200)]
    # Every attempt is the same request: path, query, body and headers, with the gateway's call id.
    for path, headers, body in fn.got:
        assert path == "/ocr?pages=1-2" and body == b'{"s3_uri": "s3://b/scan.pdf"}'
        assert headers["X-Call-Id"] == call_id and headers["X-Start-Time"] == accepted.headers["X-Start-Time"]
        assert headers["Content-Type"] == "application/json"
    # One callback, of the final response, with the queue-worker's headers.
    ((path, headers, body),) = receiver.got
    assert path == "/done?" and body == b"answer 200" and headers["X-Result"] == "200"
    assert headers["X-Function-Status"] == "200" and headers["X-Call-Id"] == call_id
    assert headers["X-Function-Name"] == "ocr" and float(headers["X-Duration-Seconds"]) >= 0


def test_after_the_last_attempt_the_failure_is_called_back() -> None:
    with async_path(lambda _: Response("busy", 429), max_retry_attempts=3) as (worker, fn, receiver):
        invoke(worker, receiver)
        worker.wait_idle(timeout=20)
    assert [i.status for i in worker.invocations] == [429, 429, 429] and len(fn.got) == 3
    ((_, headers, body),) = receiver.got
    assert headers["X-Function-Status"] == "429" and body == b"busy"


def test_a_code_not_listed_is_not_retried() -> None:
    refuse = lambda _: Response('{"error": "bad"}', 400)  # noqa: E731
    with async_path(refuse, max_retry_attempts=5) as (worker, _, receiver):
        invoke(worker, receiver)
        worker.wait_idle(timeout=20)
    assert [i.status for i in worker.invocations] == [400]
    ((_, headers, _),) = receiver.got
    assert headers["X-Function-Status"] == "400"


def test_a_function_that_does_not_answer_counts_as_503_and_is_retried() -> None:
    closed = LocalServer(ok)
    closed.stop()
    receiver = Recorder(ok)
    with receiver.server, QueueWorker(closed.url, max_retry_attempts=2) as worker:
        invoke(worker, receiver)
        worker.wait_idle(timeout=20)
    assert [i.status for i in worker.invocations] == [503, 503]
    assert "ConnectionError" in worker.invocations[0].error
    ((_, headers, body),) = receiver.got
    assert headers["X-Function-Status"] == "503" and body == b""


def test_the_gateway_route_and_its_limits() -> None:
    with async_path(ok, max_payload=100) as (worker, fn, receiver):
        assert requests.post(f"{worker.url}/async-function/other", data=b"x", timeout=10).status_code == 404
        assert requests.get(f"{worker.url}/async-function/ocr", timeout=10).status_code == 405
        assert (
            requests.post(f"{worker.url}/async-function/ocr", data=b"x" * 200, timeout=10).status_code == 413
        )
        # A caller's own call id is kept; no callback URL, no callback.
        sent = requests.post(f"{worker.url}/async-function/ocr", headers={"X-Call-Id": "mine"}, timeout=10)
        worker.wait_idle(timeout=20)
    assert sent.headers["X-Call-Id"] == "mine" and [i.call_id for i in worker.invocations] == ["mine"]
    assert fn.got[0][0] == "/?" and not receiver.got


@pytest.mark.slow
def test_a_long_document_finishes_over_retried_deadlines_reading_each_page_once(tmp_path: Path) -> None:
    """OpenFaaS's async path with the real function: each invocation runs into OCR_DEADLINE_SEC (504,
    retried), keeps its pages, and the next reads only the rest, until the callback gets the result."""
    pages = 20
    env = {
        **function_env(PARAMS, "", "unused"),
        "OCR_STORE": f"file://{tmp_path}/out",
        "OCR_DEADLINE_SEC": "3",
    }
    receiver = Recorder(ok)
    with receiver.server, processes(1, env, tmp_path, None) as [srv]:
        before = pages_read(srv)
        with QueueWorker(srv.url, max_retry_attempts=30, retry_http_codes=(429, 503, 504)) as worker:
            data = text_pdf(pages, PARAMS.dpi, tag="queue-worker")
            accepted = requests.post(
                f"{worker.url}/async-function/ocr/ocr?return_content=true",
                files={"file": ("long.pdf", data, "application/pdf")},
                headers={"X-Callback-Url": receiver.url},
                timeout=30,
            )
            worker.wait_idle(timeout=600)
        read = pages_read(srv) - before
    statuses = [i.status for i in worker.invocations]
    assert accepted.status_code == 202 and statuses[0] == 504 and statuses[-1] == 200, statuses
    assert set(statuses[:-1]) == {504} and read == pages, (statuses, read)
    ((_, headers, body),) = receiver.got
    assert headers["X-Function-Status"] == "200" and headers["X-Call-Id"] == accepted.headers["X-Call-Id"]
    markdown = json.loads(body)["content"]["markdown"]
    assert all(f"page {n} of {pages}" in markdown for n in range(1, pages + 1)), markdown
