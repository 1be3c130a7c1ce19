"""The test broker (tests/broker.py) against tiny subscriber servers in this process."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager

import pytest
import requests
from cloudevents.conversion import to_binary, to_structured
from cloudevents.http import CloudEvent, from_http
from werkzeug.wrappers import Request, Response

from tests.broker import Broker
from tests.local_http import LocalServer

Answer = Callable[[CloudEvent], Response]


class Subscriber:
    """A recipient whose `answer` decides each response; it keeps the events and headers it got
    and the most deliveries it had in flight at once."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.got: list[tuple[CloudEvent, dict[str, str]]] = []
        self.in_flight = self.most_in_flight = 0
        self._lock = threading.Lock()
        self.server = LocalServer(self._app)
        self.url = self.server.url

    @Request.application
    def _app(self, request: Request) -> Response:
        headers = dict(request.headers)
        event = from_http(headers, request.get_data())
        with self._lock:
            self.got.append((event, headers))
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            return self.answer(event)
        finally:
            with self._lock:
                self.in_flight -= 1


@contextmanager
def running(*answers: Answer, **options: float) -> Iterator[tuple[Broker, list[Subscriber]]]:
    subscribers = [Subscriber(a) for a in answers]
    with ExitStack() as stack:
        for s in subscribers:
            stack.enter_context(s.server)
        broker = stack.enter_context(Broker([s.url for s in subscribers], **options))  # type: ignore[arg-type]
        yield broker, subscribers


def event(kind: str = "ocr.document.chunk", **data: object) -> CloudEvent:
    attrs = {"type": kind, "source": "/test", "datacontenttype": "application/json"}
    return CloudEvent(attrs, data or {"job_id": "j1", "chunk": [1, 10]})


def send(broker: Broker, ev: CloudEvent, mode: Callable = to_binary) -> requests.Response:  # type: ignore[type-arg]
    headers, body = mode(ev)
    return requests.post(broker.url, headers=headers, data=body, timeout=10)


def reply(ev: CloudEvent, mode: Callable = to_binary) -> Response:  # type: ignore[type-arg]
    headers, body = mode(ev)
    return Response(body, 200, headers=headers)


def accept(_: CloudEvent) -> Response:
    return Response(status=202)


def statuses(broker: Broker, ev: CloudEvent) -> list[int | None]:
    return [d.status for d in broker.deliveries if d.event_id == ev["id"]]


def test_a_failed_delivery_is_retried_with_backoff_until_it_succeeds() -> None:
    answers = iter([503, 429, 202])
    with running(lambda _: Response(status=next(answers)), retry=3) as (broker, [sub]):
        ev = event()
        assert send(broker, ev).status_code == 202
        broker.wait_idle(timeout=10)
    assert statuses(broker, ev) == [503, 429, 202]
    assert [d.attempt for d in broker.deliveries] == [0, 1, 2]
    assert not broker.dead_letters
    # The same event each time, in binary mode, offering to take a reply.
    for got, headers in sub.got:
        assert (got["id"], got.data) == (ev["id"], ev.data)
        assert headers["Ce-Type"] == "ocr.document.chunk" and headers["Prefer"] == "reply"


def test_after_the_last_retry_the_event_is_a_dead_letter() -> None:
    with running(lambda _: Response(status=500), retry=2) as (broker, _):
        ev = event()
        send(broker, ev)
        broker.wait_idle(timeout=10)
    assert statuses(broker, ev) == [500, 500, 500]
    assert [d["id"] for d in broker.dead_letters] == [ev["id"]]


def test_a_refused_event_is_a_dead_letter_at_once() -> None:
    with running(lambda _: Response(status=400), retry=5) as (broker, _):
        ev = event()
        send(broker, ev)
        broker.wait_idle(timeout=10)
    assert statuses(broker, ev) == [400]
    assert [d["id"] for d in broker.dead_letters] == [ev["id"]]


def test_an_unreachable_subscriber_is_retried_then_dead_lettered() -> None:
    closed = LocalServer(lambda environ, start: [])
    closed.stop()  # its port now refuses connections
    with Broker([closed.url], retry=1) as broker:
        ev = event()
        send(broker, ev)
        broker.wait_idle(timeout=10)
    assert statuses(broker, ev) == [None, None]
    assert "ConnectionError" in broker.deliveries[0].error
    assert [d["id"] for d in broker.dead_letters] == [ev["id"]]


def test_replies_go_back_into_the_broker() -> None:
    """A reply of a routed type is delivered again; one of another type lands in `received`. Replies
    come in binary and structured mode; a 202 carries none."""

    def answer(ev: CloudEvent) -> Response:
        if ev["type"] == "ocr.document.requested":
            return reply(event("ocr.document.chunk", job_id="j1", chunk=[1, 10]))
        done = CloudEvent({"type": "ocr.document.completed", "source": "/fn", "id": "j1"}, {"ok": True})
        return reply(done, to_structured)

    with running(answer) as (broker, [sub]):
        send(broker, event("ocr.document.requested", job_id="j1"))
        completed = broker.wait_for("ocr.document.completed", timeout=10)
        broker.wait_idle(timeout=10)
    assert completed["id"] == "j1" and completed.data == {"ok": True}
    assert [e["type"] for e, _ in sub.got] == ["ocr.document.requested", "ocr.document.chunk"]
    assert [e["type"] for e in broker.received] == ["ocr.document.completed"]


def test_two_subscribers_take_deliveries_in_parallel() -> None:
    """Each answer waits for the other delivery to be in flight too: only parallel delivery passes."""
    both = threading.Barrier(2)

    def answer(_: CloudEvent) -> Response:
        try:
            both.wait(timeout=10)
        except threading.BrokenBarrierError:
            return Response(status=500)
        return Response(status=202)

    with running(answer, answer, retry=0) as (broker, subs):
        events = [event(), event()]
        for ev in events:
            send(broker, ev)
        broker.wait_idle(timeout=20)
    assert [statuses(broker, ev) for ev in events] == [[202], [202]]
    assert {d.subscriber for d in broker.deliveries} == {s.url for s in subs}


def test_a_subscriber_takes_one_delivery_at_a_time() -> None:
    def slow(_: CloudEvent) -> Response:
        time.sleep(0.1)
        return Response(status=202)

    with running(slow) as (broker, [sub]):
        for _ in range(3):
            send(broker, event())
        broker.wait_idle(timeout=20)
    assert len(sub.got) == 3 and sub.most_in_flight == 1


@pytest.mark.parametrize("mode", [to_binary, to_structured], ids=["binary", "structured"])
def test_ingress_takes_both_modes_and_delivers_in_binary_mode(mode: Callable) -> None:  # type: ignore[type-arg]
    with running(accept) as (broker, [sub]):
        ev = event()
        ev["subject"] = "scan.pdf"
        assert send(broker, ev, mode).status_code == 202
        broker.wait_idle(timeout=10)
    ((got, headers),) = sub.got
    assert got.get_attributes() == ev.get_attributes() and got.data == ev.data
    assert headers["Ce-Subject"] == "scan.pdf" and headers["Content-Type"] == "application/json"


def test_ingress_refuses_what_is_no_cloudevent_and_what_does_not_fit() -> None:
    with Broker([], queue_size=1, max_event_bytes=1000) as broker:  # no subscriber: the queue fills
        not_an_event = requests.post(broker.url, json={"s3_uri": "s3://b/k"}, timeout=10)
        assert not_an_event.status_code == 400 and "not a CloudEvent" in not_an_event.json()["error"]
        too_large = send(broker, event(blob="x" * 2000))
        assert too_large.status_code == 413
        assert send(broker, event()).status_code == 202
        full = send(broker, event())
        assert full.status_code == 503 and full.json() == {"error": "broker queue full"}


def test_unrouted_types_are_not_delivered() -> None:
    with running(accept) as (broker, [sub]):
        done = CloudEvent({"type": "ocr.document.failed", "source": "/fn"}, json.loads('{"error": "x"}'))
        send(broker, done)
        assert broker.wait_for("ocr.document.failed", timeout=10)["id"] == done["id"]
    assert not sub.got and not broker.deliveries
