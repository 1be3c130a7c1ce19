"""A stand-in for OpenFaaS's async path (tests only): the gateway's `/async-function/<name>` route
and the queue-worker that runs what it queued. Production uses OpenFaaS's (docs/deploy.md §8).

What it copies, and from where:
- the gateway answers `POST /async-function/<name>[/path]` with 202 and queues the request: method,
  path, query, headers and the `X-Callback-Url` header. Its call-id middleware adds `X-Call-Id` (when
  the caller sent none) and `X-Start-Time` (Unix nanoseconds) to the request and the 202
  (openfaas/faas gateway/handlers/callid_middleware.go);
- the queue-worker invokes the function synchronously with the queued headers; no answer at all counts
  as 503 (openfaas/nats-queue-worker main.go). Statuses in `retry_http_codes` are retried, up to
  `max_retry_attempts` attempts in all, waiting `initial_retry_wait` doubled each time up to
  `max_retry_wait` (the OpenFaaS Pro queue-worker: docs.openfaas.com/openfaas-pro/retries; the
  Community Edition never retries, it only redelivers what is not done within ack_wait);
- the final attempt's response is POSTed to `X-Callback-Url` (once: "for undelivered messages that
  reach maximum retries the response is posted to the callback url", same page), with the function's
  response headers plus `X-Duration-Seconds` (when the function set none), `X-Function-Status`,
  `X-Call-Id` and `X-Function-Name` (docs.openfaas.com/reference/async, "Callback request headers").

Simplifications: a retry waits in the worker thread that made it (the Pro worker hands the message
back to NATS with a delay), and a request over `max_payload` is refused with 413 here (NATS's limit
is 1 MB by default; the real gateway's answer is not modelled).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Self

import requests
from werkzeug.wrappers import Request, Response

from tests.local_http import LocalServer, Running, json_response

log = logging.getLogger(__name__)

RETRY_HTTP_CODES = (429, 502, 500, 504, 408)  # the Pro chart's default httpRetryCodes
NOT_FORWARDED = {"host", "content-length", "connection", "transfer-encoding"}


@dataclass(frozen=True)
class Queued:
    call_id: str
    path: str  # after /async-function/<name>, with the query
    headers: dict[str, str]
    body: bytes
    callback_url: str | None


@dataclass(frozen=True)
class Invocation:
    call_id: str
    attempt: int  # 1-based
    status: int  # 503 when the function gave no answer
    error: str = ""


class QueueWorker(Running):
    def __init__(
        self,
        function_url: str,
        *,
        name: str = "ocr",
        max_inflight: int = 1,
        max_retry_attempts: int = 10,
        retry_http_codes: tuple[int, ...] = RETRY_HTTP_CODES,
        initial_retry_wait: float = 0.05,
        max_retry_wait: float = 1.0,
        exec_timeout: float = 600.0,
        queue_size: int = 100,
        max_payload: int = 1024 * 1024,
    ) -> None:
        self.function_url, self.name = function_url.rstrip("/"), name
        self.max_retry_attempts, self.retry_http_codes = max_retry_attempts, retry_http_codes
        self.initial_retry_wait, self.max_retry_wait = initial_retry_wait, max_retry_wait
        self.exec_timeout, self.max_payload = exec_timeout, max_payload
        self.invocations: list[Invocation] = []
        self._queue: queue.Queue[Queued] = queue.Queue(queue_size)
        self._changed = threading.Condition()
        self._pending = 0
        self._stopping = threading.Event()
        self._workers = [
            threading.Thread(target=self._work, name=f"queue-worker-{i}", daemon=True)
            for i in range(max_inflight)
        ]
        self._server = LocalServer(self._gateway)
        self.url = self._server.url  # the gateway's address

    def start(self) -> Self:
        self._server.start()
        for worker in self._workers:
            worker.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._server.stop()
        for worker in self._workers:
            worker.join(timeout=5)

    def wait_idle(self, timeout: float) -> None:
        """Until every queued request has had its last attempt and its callback."""
        with self._changed:
            if not self._changed.wait_for(lambda: self._pending == 0, timeout):
                raise TimeoutError(f"queue-worker still busy after {timeout} s: {self.invocations[-10:]}")

    # --- the gateway's async route --------------------------------------------------------------------

    @Request.application
    def _gateway(self, request: Request) -> Response:
        prefix = f"/async-function/{self.name}"
        if request.path != prefix and not request.path.startswith(prefix + "/"):
            return json_response(404, {"error": f"no function at {request.path}"})
        if request.method != "POST":
            return json_response(405, {"error": "async invocations are POSTs"})
        request.max_content_length = self.max_payload  # 413 above it
        call_id = request.headers.get("X-Call-Id") or str(uuid.uuid4())
        start = str(time.time_ns())
        headers = {k: v for k, v in request.headers.items() if k.lower() not in NOT_FORWARDED}
        headers.update({"X-Call-Id": call_id, "X-Start-Time": start})
        path = request.path.removeprefix(prefix) or "/"
        if request.query_string:
            path += "?" + request.query_string.decode()
        job = Queued(call_id, path, headers, request.get_data(), request.headers.get("X-Callback-Url"))
        with self._changed:
            self._pending += 1
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            with self._changed:
                self._pending -= 1
            return json_response(503, {"error": "async queue full"})
        return Response(status=202, headers={"X-Call-Id": call_id, "X-Start-Time": start})

    # --- the queue-worker ----------------------------------------------------------------------------

    def _work(self) -> None:
        while not self._stopping.is_set():
            try:
                job = self._queue.get(timeout=0.1)
            except queue.Empty:
                continue
            try:
                response, seconds = self._invoke_with_retries(job)
                if job.callback_url:
                    self._callback(job, response, seconds)
            finally:
                with self._changed:
                    self._pending -= 1
                    self._changed.notify_all()

    def _invoke_with_retries(self, job: Queued) -> tuple[requests.Response | None, float]:
        for attempt in range(1, self.max_retry_attempts + 1):
            started = time.monotonic()
            response, status, error = None, 503, ""
            try:
                response = requests.post(
                    self.function_url + job.path,
                    headers=job.headers,
                    data=job.body,
                    timeout=self.exec_timeout,
                )
                status = response.status_code
            except requests.RequestException as exc:
                error = f"{type(exc).__name__}: {exc}"
            invocation = Invocation(job.call_id, attempt, status, error)
            log.info("%s", invocation)
            with self._changed:
                self.invocations.append(invocation)
            last = attempt == self.max_retry_attempts or self._stopping.is_set()
            if last or (status not in self.retry_http_codes and not error):
                return response, time.monotonic() - started
            wait = min(self.initial_retry_wait * 2 ** (attempt - 1), self.max_retry_wait)
            self._stopping.wait(wait)
        raise AssertionError("unreachable: the last attempt returns")

    def _callback(self, job: Queued, response: requests.Response | None, seconds: float) -> None:
        headers = {}
        if response is not None:
            headers = {k: v for k, v in response.headers.items() if k.lower() not in NOT_FORWARDED}
        headers.setdefault("X-Duration-Seconds", f"{seconds:f}")
        status = response.status_code if response is not None else 503
        headers.update(
            {"X-Function-Status": str(status), "X-Call-Id": job.call_id, "X-Function-Name": self.name}
        )
        body = response.content if response is not None else b""
        try:
            requests.post(job.callback_url, headers=headers, data=body, timeout=30)  # type: ignore[arg-type]
        except requests.RequestException as exc:
            log.warning("callback to %s failed: %s", job.callback_url, exc)
