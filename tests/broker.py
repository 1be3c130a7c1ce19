"""A small test broker that stands in for a Knative Broker with its Trigger (tests only: production
uses Knative's broker, knative/common/).

It follows the Knative Eventing data-plane contract (knative/specs, specs/eventing/data-plane.md):
- ingress: CloudEvents POSTed in binary or structured mode, parsed by the `cloudevents` SDK, answered
  202 (400 for what is no CloudEvent, 503 when its bounded queue is full);
- the Trigger: events whose type is in `routed` are delivered to the subscribers, in binary mode with
  `Prefer: reply`; every other type lands in `received`, where a test waits for it (`wait_for`);
- one delivery at a time per subscriber (containerConcurrency=1): each subscriber has its own
  dispatcher thread taking the next event from the shared queue, so an idle subscriber gets it and
  N subscribers work in parallel;
- retries on 404, 409, 429, 5xx, a connection error or a timeout, exponential from `backoff_delay`
  (delay · 2^n, as `backoffPolicy: exponential`), `retry` times; then the event goes to
  `dead_letters` (so does an event answered 400 or another 4xx, at once);
- a reply CloudEvent in a 2xx response goes back into the broker (202 responses carry none).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Self

import requests
from cloudevents.conversion import to_binary
from cloudevents.exceptions import GenericException
from cloudevents.http import CloudEvent, from_http
from werkzeug.wrappers import Request, Response

from tests.local_http import LocalServer, Running, json_response

log = logging.getLogger(__name__)

ROUTED = ("ocr.document.requested", "ocr.document.chunk")


@dataclass(frozen=True)
class Delivery:
    """One delivery attempt; `status` None: no HTTP answer (`error` says why)."""

    event_id: str
    type: str
    subscriber: str
    attempt: int
    status: int | None
    error: str = ""
    started: float = 0.0  # time.monotonic() when the delivery began
    seconds: float = 0.0  # until its answer


def retryable(status: int | None) -> bool:
    return status is None or status in (404, 409, 429) or status >= 500


class Broker(Running):
    def __init__(
        self,
        subscribers: Iterable[str] = (),
        *,
        routed: Iterable[str] = ROUTED,
        retry: int = 3,
        backoff_delay: float = 0.05,
        delivery_timeout: float = 600.0,
        queue_size: int = 1000,
        max_event_bytes: int = 10 * 1024 * 1024,
    ) -> None:
        self.routed = frozenset(routed)
        self.retry, self.backoff_delay, self.delivery_timeout = retry, backoff_delay, delivery_timeout
        self.max_event_bytes = max_event_bytes
        self.received: list[CloudEvent] = []
        self.dead_letters: list[CloudEvent] = []
        self.deliveries: list[Delivery] = []
        self._queue: queue.Queue[tuple[CloudEvent, int]] = queue.Queue(queue_size)
        self._changed = threading.Condition()
        self._pending = 0  # routed events not yet delivered, dead-lettered or dropped
        self._timers: set[threading.Timer] = set()
        self._stopping = threading.Event()
        self._dispatchers: list[threading.Thread] = []
        self._server = LocalServer(self._ingress)
        self.url = self._server.url
        self._initial = list(subscribers)

    # --- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> Self:
        self._server.start()
        for url in self._initial:
            self.subscribe(url)
        return self

    def subscribe(self, url: str) -> None:
        """Adds a subscriber (a function process) with its own dispatcher thread."""
        thread = threading.Thread(target=self._dispatch, args=(url,), name=f"broker->{url}", daemon=True)
        self._dispatchers.append(thread)
        thread.start()

    def stop(self) -> None:
        self._stopping.set()
        with self._changed:
            for timer in self._timers:
                timer.cancel()
        self._server.stop()
        for thread in self._dispatchers:
            thread.join(timeout=5)

    # --- what tests read -----------------------------------------------------------------------------

    def wait(self, condition: Callable[[], bool], timeout: float) -> None:
        """Until `condition()` (called under the broker's lock) holds; TimeoutError after `timeout`."""
        with self._changed:
            if not self._changed.wait_for(condition, timeout):
                raise TimeoutError(f"broker: not reached in {timeout} s; deliveries: {self.deliveries[-10:]}")

    def wait_for(self, event_type: str, timeout: float) -> CloudEvent:
        """The first event of `event_type` that the Trigger did not route (a reply, say)."""
        self.wait(lambda: any(e["type"] == event_type for e in self.received), timeout)
        return next(e for e in self.received if e["type"] == event_type)

    def wait_idle(self, timeout: float) -> None:
        """Until every routed event is delivered, dead-lettered or dropped (none queued or waiting)."""
        self.wait(lambda: self._pending == 0, timeout)

    # --- ingress -------------------------------------------------------------------------------------

    @Request.application
    def _ingress(self, request: Request) -> Response:
        if request.method != "POST":
            return json_response(405, {"error": "POST a CloudEvent"})
        request.max_content_length = self.max_event_bytes  # 413 above it
        try:
            event = from_http(dict(request.headers), request.get_data())
        except GenericException as exc:
            return json_response(400, {"error": f"not a CloudEvent: {exc}"})
        if not self.publish(event):
            return json_response(503, {"error": "broker queue full"})
        return Response(status=202)

    def publish(self, event: CloudEvent) -> bool:
        """Routes an event as the Trigger does; False when the queue is full."""
        if event["type"] not in self.routed:
            with self._changed:
                self.received.append(event)
                self._changed.notify_all()
            return True
        with self._changed:
            self._pending += 1
        if self._enqueue(event, 0):
            return True
        self._settle()
        return False

    def _enqueue(self, event: CloudEvent, attempt: int) -> bool:
        try:
            self._queue.put_nowait((event, attempt))
        except queue.Full:
            log.warning("broker queue full: %s %s dropped", event["type"], event["id"])
            return False
        return True

    def _settle(self, dead: CloudEvent | None = None) -> None:
        with self._changed:
            self._pending -= 1
            if dead is not None:
                self.dead_letters.append(dead)
            self._changed.notify_all()

    # --- delivery ------------------------------------------------------------------------------------

    def _dispatch(self, url: str) -> None:
        while not self._stopping.is_set():
            try:
                event, attempt = self._queue.get(timeout=0.1)
            except queue.Empty:
                continue
            self._deliver(url, event, attempt)

    def _deliver(self, url: str, event: CloudEvent, attempt: int) -> None:
        headers, body = to_binary(event)
        status, error, reply = None, "", None
        started = time.monotonic()
        try:
            resp = requests.post(
                url, headers={**headers, "Prefer": "reply"}, data=body, timeout=self.delivery_timeout
            )
            status = resp.status_code
            reply = _reply_of(resp)
        except requests.RequestException as exc:
            error = f"{type(exc).__name__}: {exc}"
        delivery = Delivery(
            event["id"], event["type"], url, attempt, status, error, started, time.monotonic() - started
        )
        log.info("%s", delivery)
        with self._changed:
            self.deliveries.append(delivery)
        if status is not None and 200 <= status < 300:
            if reply is not None and not self._stopping.is_set():
                self.publish(reply)
            self._settle()
        elif retryable(status) and attempt < self.retry and not self._stopping.is_set():
            self._retry_later(event, attempt + 1)
        else:
            self._settle(dead=event)

    def _retry_later(self, event: CloudEvent, attempt: int) -> None:
        def fire() -> None:
            with self._changed:
                self._timers.discard(timer)
            if not self._enqueue(event, attempt):
                self._settle(dead=event)

        timer = threading.Timer(self.backoff_delay * 2 ** (attempt - 1), fire)
        timer.daemon = True
        with self._changed:
            self._timers.add(timer)
        timer.start()


def _reply_of(resp: requests.Response) -> CloudEvent | None:
    """The reply event of a 200 (binary or structured mode), else None."""
    if resp.status_code != 200:
        return None
    structured = resp.headers.get("content-type", "").startswith("application/cloudevents+json")
    if "ce-specversion" not in resp.headers and not structured:
        return None
    try:
        return from_http(dict(resp.headers), resp.content)
    except GenericException as exc:
        log.warning("a 200 with a broken reply event, taken as accepted: %s", exc)
        return None
